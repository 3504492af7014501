//! Rewriter behaviour, statement by statement: what goes in, exactly what comes out.

use super::{RelationName, Rewrite, VersionTargets, ViewTarget, rewrite};

fn v2() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![
            ViewTarget {
                table: RelationName::new("public", "model_metadata"),
                view: RelationName::new("public", "model_metadata_v2"),
            },
            ViewTarget {
                table: RelationName::new("public", "Accounts"),
                view: RelationName::new("public", "Accounts_v2"),
            },
        ],
    )
}

fn schema_per_version() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("v2", "model_metadata"),
        }],
    )
}

#[track_caller]
fn check(input: &str, expected: &str) {
    match rewrite(input, &v2()).unwrap() {
        Rewrite::Rewritten(output) => assert_eq!(output, expected, "input: {input}"),
        Rewrite::Unchanged => assert_eq!(input, expected, "expected a rewrite of: {input}"),
    }
}

#[test]
fn plain_references_get_the_view_and_keep_their_name_as_alias() {
    check(
        "SELECT id FROM model_metadata WHERE model_metadata.id = 1",
        "SELECT id FROM model_metadata_v2 AS model_metadata WHERE model_metadata.id = 1",
    );
    check(
        "select * from Model_Metadata m join model_metadata AS n on m.id = n.id",
        "select * from model_metadata_v2 m join model_metadata_v2 AS n on m.id = n.id",
    );
    check(
        "SELECT * FROM public.model_metadata",
        "SELECT * FROM public.model_metadata_v2 AS model_metadata",
    );
    check(
        "SELECT * FROM \"model_metadata\" WHERE \"model_metadata\".\"id\" > 0",
        "SELECT * FROM model_metadata_v2 AS \"model_metadata\" WHERE \"model_metadata\".\"id\" > 0",
    );
    check(
        "SELECT * FROM \"Accounts\"",
        "SELECT * FROM \"Accounts_v2\" AS \"Accounts\"",
    );
}

#[test]
fn comments_and_formatting_survive() {
    check(
        "/* app=web */ SELECT id -- the key\nFROM   model_metadata\n\tWHERE id = $1 /* hint */",
        "/* app=web */ SELECT id -- the key\nFROM   model_metadata_v2 AS model_metadata\n\tWHERE id = $1 /* hint */",
    );
    check(
        "SELECT 'é' AS ü, id FROM model_metadata",
        "SELECT 'é' AS ü, id FROM model_metadata_v2 AS model_metadata",
    );
}

#[test]
fn writes_keep_returning_and_on_conflict_working() {
    check(
        "INSERT INTO model_metadata (model_name) VALUES ($1) ON CONFLICT (id) DO UPDATE SET model_name = EXCLUDED.model_name RETURNING model_metadata.*",
        "INSERT INTO model_metadata_v2 AS model_metadata (model_name) VALUES ($1) ON CONFLICT (id) DO UPDATE SET model_name = EXCLUDED.model_name RETURNING model_metadata.*",
    );
    check(
        "UPDATE model_metadata SET model_name = 'x' WHERE model_metadata.id = 3 RETURNING id",
        "UPDATE model_metadata_v2 AS model_metadata SET model_name = 'x' WHERE model_metadata.id = 3 RETURNING id",
    );
    check(
        "DELETE FROM model_metadata USING model_metadata AS other WHERE model_metadata.id = other.id",
        "DELETE FROM model_metadata_v2 AS model_metadata USING model_metadata_v2 AS other WHERE model_metadata.id = other.id",
    );
}

#[test]
fn subqueries_ctes_lateral_set_operations() {
    check(
        "WITH recent AS (SELECT * FROM model_metadata) SELECT * FROM recent WHERE EXISTS (SELECT 1 FROM model_metadata x) UNION SELECT * FROM model_metadata",
        "WITH recent AS (SELECT * FROM model_metadata_v2 AS model_metadata) SELECT * FROM recent WHERE EXISTS (SELECT 1 FROM model_metadata_v2 x) UNION SELECT * FROM model_metadata_v2 AS model_metadata",
    );
    check(
        "SELECT * FROM t, LATERAL (SELECT * FROM model_metadata WHERE id = t.id) s WHERE t.id IN (SELECT id FROM model_metadata)",
        "SELECT * FROM t, LATERAL (SELECT * FROM model_metadata_v2 AS model_metadata WHERE id = t.id) s WHERE t.id IN (SELECT id FROM model_metadata_v2 AS model_metadata)",
    );
}

#[test]
fn a_cte_named_like_a_managed_table_shadows_it() {
    check(
        "WITH model_metadata AS (SELECT 1 AS id) SELECT * FROM model_metadata",
        "WITH model_metadata AS (SELECT 1 AS id) SELECT * FROM model_metadata",
    );
    // A non-recursive CTE's own body still sees the table.
    check(
        "WITH model_metadata AS (SELECT * FROM model_metadata) SELECT * FROM model_metadata",
        "WITH model_metadata AS (SELECT * FROM model_metadata_v2 AS model_metadata) SELECT * FROM model_metadata",
    );
    // A qualified reference is never shadowed.
    check(
        "WITH model_metadata AS (SELECT 1) SELECT * FROM public.model_metadata",
        "WITH model_metadata AS (SELECT 1) SELECT * FROM public.model_metadata_v2 AS model_metadata",
    );
}

#[test]
fn locking_clauses_and_parser_gaps() {
    check(
        "SELECT * FROM model_metadata WHERE id = 1 FOR UPDATE",
        "SELECT * FROM model_metadata_v2 AS model_metadata WHERE id = 1 FOR UPDATE",
    );
    check(
        "SELECT * FROM model_metadata FOR NO KEY UPDATE OF model_metadata",
        "SELECT * FROM model_metadata_v2 AS model_metadata FOR NO KEY UPDATE OF model_metadata",
    );
    check(
        "SELECT * FROM model_metadata FOR KEY SHARE",
        "SELECT * FROM model_metadata_v2 AS model_metadata FOR KEY SHARE",
    );
    check(
        "SELECT * FROM ONLY model_metadata WHERE id BETWEEN SYMMETRIC 5 AND 1",
        "SELECT * FROM ONLY model_metadata_v2 AS model_metadata WHERE id BETWEEN SYMMETRIC 5 AND 1",
    );
    check("TABLE model_metadata", "TABLE model_metadata_v2");
    check(
        "TABLE public.model_metadata",
        "TABLE public.model_metadata_v2",
    );
}

#[test]
fn multi_statement_strings_rewrite_each_statement() {
    check(
        "BEGIN; SELECT * FROM model_metadata; VACUUM model_metadata; SELECT 1; COMMIT",
        "BEGIN; SELECT * FROM model_metadata_v2 AS model_metadata; VACUUM model_metadata; SELECT 1; COMMIT",
    );
}

#[test]
fn ddl_on_the_table_itself_passes_through() {
    for sql in [
        "ALTER TABLE model_metadata ADD COLUMN x int",
        "CREATE INDEX ON model_metadata (model_name)",
        "DROP TABLE model_metadata",
        "TRUNCATE model_metadata",
        "VACUUM ANALYZE model_metadata",
        "GRANT SELECT ON model_metadata TO app",
        "CREATE TABLE child (id int REFERENCES model_metadata (id))",
        "DO $$ BEGIN PERFORM 1 FROM model_metadata_v2; END $$",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

#[test]
fn ddl_that_would_keep_the_base_shape_is_rewritten_or_refused() {
    check(
        "CREATE TEMP TABLE scratch (LIKE model_metadata INCLUDING ALL)",
        "CREATE TEMP TABLE scratch (LIKE model_metadata_v2 INCLUDING ALL)",
    );
    check(
        "CREATE TABLE s (LIKE public.model_metadata); SELECT * FROM model_metadata",
        "CREATE TABLE s (LIKE public.model_metadata_v2); SELECT * FROM model_metadata_v2 AS model_metadata",
    );
    for (sql, at) in [
        ("DO $$ BEGIN PERFORM 1 FROM model_metadata; END $$", "model"),
        ("CREATE TABLE t () INHERITS (model_metadata)", "model"),
        (
            "CREATE FUNCTION f() RETURNS SETOF model_metadata LANGUAGE sql AS 'SELECT 1'",
            "model",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN (SELECT count(*) FROM model_metadata); END $f$",
            "model",
        ),
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert_eq!(error.position, Some(sql.find(at).unwrap() + 1), "{sql}");
        assert!(error.reason.contains("model_metadata_v2"), "{sql}: {error}");
    }
    // Too long for the parser to check: refused, never passed through unread.
    let long = format!(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 /* {} */ FROM model_metadata $$",
        "x".repeat(crate::rewriter::postgres_grammar::MAX_CHECKED_DEFINITION_BYTES)
    );
    let error = rewrite(&long, &v2()).unwrap_err();
    assert!(error.reason.contains("longer than"), "{error}");
}

#[test]
fn a_new_table_made_from_a_query_gets_the_version_s_rows() {
    check(
        "CREATE TABLE snapshot AS SELECT * FROM model_metadata",
        "CREATE TABLE snapshot AS SELECT * FROM model_metadata_v2 AS model_metadata",
    );
    check(
        "CREATE TEMP TABLE model_metadata AS SELECT m.* FROM public.model_metadata m WITH NO DATA",
        "CREATE TEMP TABLE model_metadata AS SELECT m.* FROM public.model_metadata_v2 m WITH NO DATA",
    );
    // A form sqlparser does not read is rewritten from PostgreSQL's positions.
    check(
        "CREATE TABLE snapshot AS TABLE model_metadata",
        "CREATE TABLE snapshot AS TABLE model_metadata_v2",
    );
}

#[test]
fn a_view_s_definition_over_a_managed_table_is_refused_and_other_views_pass() {
    for sql in [
        "CREATE VIEW report AS SELECT id, model_name FROM model_metadata",
        "CREATE OR REPLACE VIEW report AS SELECT * FROM other JOIN public.model_metadata m ON true",
        "CREATE MATERIALIZED VIEW report AS SELECT count(*) FROM model_metadata",
        "CREATE VIEW report AS SELECT NULL::model_metadata AS r",
        "CREATE RECURSIVE VIEW report (n) AS SELECT 1 UNION ALL SELECT n FROM report, model_metadata",
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert!(
            error.reason.contains("public.model_metadata_v2")
                && error.reason.contains("direct connection"),
            "{sql}: {error}"
        );
        let position = error.position.unwrap();
        assert!(
            sql[position - 1..]
                .to_ascii_lowercase()
                .contains("model_metadata"),
            "{sql}: {position}"
        );
    }
    for sql in [
        "CREATE VIEW model_metadata_summary AS SELECT 1",
        "CREATE VIEW report AS SELECT * FROM model_metadata_v2",
        "CREATE VIEW model_metadata AS SELECT 1",
        "CREATE VIEW report AS SELECT 'model_metadata' AS name",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

#[test]
fn copy_reads_and_writes_through_the_view() {
    check(
        "COPY model_metadata TO STDOUT WITH (FORMAT csv)",
        "COPY (SELECT * FROM model_metadata_v2) TO STDOUT WITH (FORMAT csv)",
    );
    check(
        "COPY model_metadata (id, model_name) TO STDOUT",
        "COPY (SELECT id, model_name FROM model_metadata_v2) TO STDOUT",
    );
    check(
        "COPY model_metadata (model_name) FROM STDIN",
        "COPY model_metadata_v2 (model_name) FROM STDIN",
    );
}

#[test]
fn regclass_literals_follow_the_version() {
    check(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'model_metadata'::regclass",
        "SELECT attname FROM pg_attribute WHERE attrelid = 'model_metadata_v2'::regclass",
    );
    check(
        "SELECT to_regclass('public.model_metadata')",
        "SELECT to_regclass('public.model_metadata_v2')",
    );
    check(
        "SELECT 'model_metadata'::text",
        "SELECT 'model_metadata'::text",
    );
}

#[test]
fn schema_per_version_layout_always_qualifies() {
    let output = rewrite("SELECT * FROM model_metadata", &schema_per_version()).unwrap();
    assert_eq!(
        output,
        Rewrite::Rewritten("SELECT * FROM v2.model_metadata AS model_metadata".into())
    );
}

#[test]
fn unmanaged_statements_are_untouched() {
    for sql in [
        "SELECT 1",
        "SELECT * FROM model_metadata_archive",
        "SELECT 'model_metadata'",
        "INSERT INTO other (model_metadata) VALUES (1)",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

#[test]
fn statements_only_postgres_can_parse_are_rewritten_from_its_positions() {
    // sqlparser cannot read ROWS FROM; Postgres's parser says where the tables are.
    check(
        "SELECT 1; SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g, model_metadata WHERE g = id",
        "SELECT 1; SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g, model_metadata_v2 AS model_metadata WHERE g = id",
    );
    check(
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g JOIN public . model_metadata m ON true",
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g JOIN public.model_metadata_v2 m ON true",
    );
    // Only an alias is named like the table: nothing to rewrite (this was refused before).
    assert_eq!(
        rewrite(
            "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS model_metadata",
            &v2()
        )
        .unwrap(),
        Rewrite::Unchanged
    );
}

#[test]
fn references_sqlparser_misses_are_rewritten_from_postgres_positions_or_refused() {
    // sqlparser reads `TABLE t` in a set operation without a table reference.
    check(
        "SELECT * FROM model_metadata UNION ALL TABLE model_metadata",
        "SELECT * FROM model_metadata_v2 AS model_metadata UNION ALL TABLE model_metadata_v2",
    );
    // A WITH item does not shadow a DML target in Postgres: these write the table.
    check(
        "WITH model_metadata AS (SELECT 1) UPDATE model_metadata SET model_name = 'x'",
        "WITH model_metadata AS (SELECT 1) UPDATE model_metadata_v2 AS model_metadata SET model_name = 'x'",
    );
    check(
        "WITH model_metadata AS (SELECT 1) DELETE FROM model_metadata",
        "WITH model_metadata AS (SELECT 1) DELETE FROM model_metadata_v2 AS model_metadata",
    );
    // COPY … TO needs a query in place of the name, which only sqlparser's reading gives.
    let sql = "SELECT 1; COPY model_metadata TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)";
    let error = rewrite(sql, &v2()).unwrap_err();
    assert_eq!(
        error.position,
        Some(sql.find("model").unwrap() + 1),
        "{error:?}"
    );
    assert!(error.to_string().contains("version v2"), "{error}");
    // Neither parser reads it: refused, not forwarded.
    let error = rewrite("SELECT 1; SELECT * FROM model_metadata WHERE", &v2()).unwrap_err();
    assert!(error.position.is_some_and(|p| p > 10), "{error:?}");
}

#[test]
fn schema_qualified_column_references_follow_the_alias() {
    // Prisma qualifies every column with schema and table; once the table is aliased, only
    // the alias resolves, so the schema qualifier goes.
    check(
        r#"SELECT "public"."model_metadata"."id", "public"."model_metadata".* FROM "public"."model_metadata" WHERE "public"."model_metadata"."id" = $1"#,
        r#"SELECT "model_metadata"."id", "model_metadata".* FROM public.model_metadata_v2 AS "model_metadata" WHERE "model_metadata"."id" = $1"#,
    );
    check(
        r#"INSERT INTO "public"."model_metadata" ("model_name") VALUES ($1) RETURNING "public"."model_metadata"."id", public . model_metadata . *"#,
        r#"INSERT INTO public.model_metadata_v2 AS "model_metadata" ("model_name") VALUES ($1) RETURNING "model_metadata"."id", model_metadata . *"#,
    );
    check(
        "UPDATE public.model_metadata SET model_name = 'x' WHERE public.model_metadata.id = 1 RETURNING public.model_metadata.id",
        "UPDATE public.model_metadata_v2 AS model_metadata SET model_name = 'x' WHERE model_metadata.id = 1 RETURNING model_metadata.id",
    );
    // Catalog columns qualified the same way are not managed tables.
    check(
        "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class, model_metadata m",
        "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class, model_metadata_v2 m",
    );
}

#[test]
fn the_mention_scan_ignores_case_and_finds_names_anywhere() {
    use super::rewrite::mentions_managed_table;
    for sql in [
        "model_metadata",
        "SELECT * FROM MODEL_METADATA",
        "select 1 /* Model_Metadata */",
        "xmodel_metadatax",
        "mmmodel_metadata",
    ] {
        assert!(mentions_managed_table(sql, &v2()), "{sql}");
    }
    for sql in [
        "",
        "model_metadat",
        "m",
        "SELECT model_meta_data",
        "odel_metadata",
    ] {
        assert!(!mentions_managed_table(sql, &v2()), "{sql}");
    }
}

#[track_caller]
fn check_with_catalog(input: &str, expected: &str) {
    let targets = v2().with_catalog_substitutes("viewgate_catalog_v2");
    match rewrite(input, &targets).unwrap() {
        Rewrite::Rewritten(output) => assert_eq!(output, expected, "input: {input}"),
        Rewrite::Unchanged => assert_eq!(input, expected, "expected a rewrite of: {input}"),
    }
}

#[test]
fn catalog_relations_go_to_the_versions_substitutes() {
    check_with_catalog(
        "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = 'model_metadata'",
        "SELECT c.oid FROM viewgate_catalog_v2.pg_class c WHERE c.relname = 'model_metadata'",
    );
    // Unqualified, upper case, and SQLAlchemy's schema-qualified column references.
    check_with_catalog(
        "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN PG_ATTRIBUTE ON attrelid = pg_class.oid",
        "SELECT pg_class.relname FROM viewgate_catalog_v2.pg_class AS pg_class JOIN viewgate_catalog_v2.pg_attribute AS PG_ATTRIBUTE ON attrelid = pg_class.oid",
    );
    check_with_catalog(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
        "SELECT column_name FROM viewgate_catalog_v2.columns AS columns WHERE table_name = $1",
    );
    // A managed table and a catalog relation in one statement; the regclass literal of the
    // managed table is the view, the catalog's own stays the catalog.
    check_with_catalog(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = 'model_metadata'::regclass AND 'pg_class'::regclass > 0",
        "SELECT a.attname FROM viewgate_catalog_v2.pg_attribute a WHERE a.attrelid = 'model_metadata_v2'::regclass AND 'pg_class'::regclass > 0",
    );
    // Only pg_catalog's relations, and information_schema's only when qualified.
    for unchanged in [
        "SELECT * FROM columns",
        "SELECT * FROM public.pg_class",
        "SELECT * FROM pg_catalog.pg_namespace",
        "SELECT * FROM pg_stat_activity",
        "SELECT * FROM information_schema.schemata",
        "SELECT 'pg_catalog.pg_class'::regclass",
    ] {
        check_with_catalog(unchanged, unchanged);
    }
    // The functions that print or read the base table's names and comments by oid go to the
    // version's substitutes, qualified with pg_catalog or not; others stay.
    check_with_catalog(
        "SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true), col_description(c.oid, 1), Obj_Description(c.oid, 'pg_class'), pg_get_viewdef(c.oid), pg_get_triggerdef(1) FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid",
        "SELECT viewgate_catalog_v2.pg_get_indexdef(i.indexrelid, 0, true), viewgate_catalog_v2.col_description(c.oid, 1), viewgate_catalog_v2.obj_description(c.oid, 'pg_class'), viewgate_catalog_v2.pg_get_viewdef(c.oid), pg_get_triggerdef(1) FROM viewgate_catalog_v2.pg_class c JOIN viewgate_catalog_v2.pg_index i ON i.indrelid = c.oid",
    );
    // The extended statistics' views, unqualified or not.
    check_with_catalog(
        "SELECT attnames FROM pg_stats_ext x JOIN pg_catalog.pg_stats_ext_exprs e USING (statistics_name)",
        "SELECT attnames FROM viewgate_catalog_v2.pg_stats_ext x JOIN viewgate_catalog_v2.pg_stats_ext_exprs e USING (statistics_name)",
    );
    check_with_catalog(
        "SELECT public.col_description(1, 1) FROM model_metadata",
        "SELECT public.col_description(1, 1) FROM model_metadata_v2 AS model_metadata",
    );
    // Without substitutes (a version applied before them), catalog queries stay as written.
    check(
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT * FROM pg_catalog.pg_class",
    );
    check(
        "SELECT pg_get_constraintdef(1) FROM model_metadata",
        "SELECT pg_get_constraintdef(1) FROM model_metadata_v2 AS model_metadata",
    );
}

#[test]
fn with_catalog_substitutes_the_mention_scan_also_looks_for_the_catalog() {
    use super::rewrite::mentions_managed_table;
    let plain = v2();
    let with_catalog = v2().with_catalog_substitutes("viewgate_catalog_v2");
    for sql in [
        "SELECT * FROM pg_catalog.pg_class",
        "select * from PG_INDEXES",
        "SELECT * FROM Information_Schema.tables",
    ] {
        assert!(!mentions_managed_table(sql, &plain), "{sql}");
        assert!(mentions_managed_table(sql, &with_catalog), "{sql}");
    }
    let unrelated = "SELECT * FROM pg_namespace JOIN deployments USING (id)";
    assert!(!mentions_managed_table(unrelated, &with_catalog));
    assert!(mentions_managed_table(
        "SELECT * FROM Model_Metadata",
        &with_catalog
    ));
}

#[test]
fn a_managed_tables_row_type_becomes_the_views() {
    check(
        "SELECT (NULL::model_metadata).*",
        "SELECT (NULL::model_metadata_v2).*",
    );
    check(
        "SELECT * FROM json_populate_recordset(null::\"public\".\"model_metadata\", $1)",
        "SELECT * FROM json_populate_recordset(null::public.model_metadata_v2, $1)",
    );
    check(
        "SELECT CAST(NULL AS model_metadata[]), model_metadata '(1)'",
        "SELECT CAST(NULL AS model_metadata_v2[]), model_metadata_v2 '(1)'",
    );
    // A WITH item does not shadow a type; an unmanaged type stays.
    check(
        "WITH model_metadata AS (SELECT 1) SELECT NULL::model_metadata FROM model_metadata",
        "WITH model_metadata AS (SELECT 1) SELECT NULL::model_metadata_v2 FROM model_metadata",
    );
    check(
        "SELECT NULL::other.model_metadata, '1'::int8",
        "SELECT NULL::other.model_metadata, '1'::int8",
    );
}

/// v3 of `tests/copy_versions.rs`: an auto-updatable view renaming two columns, one with a
/// default of its own, with its recorded mapping.
fn renamed_with_mapping(trigger_backed: bool) -> VersionTargets {
    use std::sync::Arc;

    use crate::model::{MappedColumn, ViewMapping};

    let column = |name: &str, base: &str, default: Option<&str>| MappedColumn {
        name: name.into(),
        base_column: Some(base.into()),
        expression: None,
        type_name: "text".into(),
        default: default.map(str::to_owned),
        base_default: None,
        base_identity_always: false,
    };
    let view = RelationName::new("public", "model_metadata_v3");
    VersionTargets::new(
        "v3",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: view.clone(),
        }],
    )
    .with_base_write(
        view,
        super::targets::BaseWrite {
            base: RelationName::new("public", "model_metadata"),
            mapping: Arc::new(ViewMapping {
                trigger_backed,
                columns: vec![
                    column("id", "id", None),
                    column("name", "model_name", None),
                    column("Version", "model_version", Some("'0.0'::text")),
                ],
                insert: Vec::new(),
                update: Vec::new(),
            }),
        },
    )
}

#[test]
fn copy_from_an_auto_updatable_view_writes_the_base_table_with_mapped_columns() {
    let targets = renamed_with_mapping(false);
    let out = |sql: &str| rewrite(sql, &targets);
    assert_eq!(
        out("COPY model_metadata (id, name, \"Version\") FROM STDIN WITH (FORMAT csv, FORCE_NULL (name), FORCE_NOT_NULL (\"Version\"))"),
        Ok(Rewrite::Rewritten(
            "COPY public.model_metadata (id, model_name, model_version) FROM STDIN WITH (FORMAT csv, FORCE_NULL (model_name), FORCE_NOT_NULL (model_version))".into()
        ))
    );
    // No column list: the view's columns in its order.
    assert_eq!(
        out("copy public.model_metadata from stdin (format binary)"),
        Ok(Rewrite::Rewritten(
            "copy public.model_metadata (id, model_name, model_version) from stdin (format binary)"
                .into()
        ))
    );
    // Leaving out a column with a default of the view's own is refused, with the position.
    let error = out("COPY model_metadata (id, name) FROM STDIN").unwrap_err();
    assert!(error.reason.contains("\"Version\""), "{error}");
    assert_eq!(error.position, Some(6));
    // A column the version does not have.
    let error = out("COPY model_metadata (id, model_name, \"Version\") FROM STDIN").unwrap_err();
    assert!(error.reason.contains("\"model_name\""), "{error}");
    assert_eq!(error.position, Some(26));
    // COPY … TO reads through the view, as before.
    assert_eq!(
        out("COPY model_metadata (id, name) TO STDOUT"),
        Ok(Rewrite::Rewritten(
            "COPY (SELECT id, name FROM model_metadata_v3) TO STDOUT".into()
        ))
    );
    // A trigger-backed view keeps COPY … FROM (its INSTEAD OF trigger runs per row).
    assert_eq!(
        rewrite(
            "COPY model_metadata (id) FROM STDIN",
            &renamed_with_mapping(true)
        ),
        Ok(Rewrite::Rewritten(
            "COPY model_metadata_v3 (id) FROM STDIN".into()
        ))
    );
    // Through the shape cache, the same.
    let cache = super::RewriteCache::default();
    for _ in 0..2 {
        assert_eq!(
            *super::rewrite_cached(
                &cache,
                "COPY model_metadata (name) FROM STDIN (FORMAT csv, DELIMITER ';')",
                &renamed_with_mapping(false)
            ),
            Err(
                out("COPY model_metadata (name) FROM STDIN (FORMAT csv, DELIMITER ';')")
                    .unwrap_err()
            )
        );
        assert_eq!(
            *super::rewrite_cached(&cache, "COPY model_metadata (\"Version\", id) FROM STDIN (FORMAT csv, DELIMITER ';')", &targets),
            Ok(Rewrite::Rewritten("COPY public.model_metadata (model_version, id) FROM STDIN (FORMAT csv, DELIMITER ';')".into()))
        );
    }
}

/// v2 of the seed example with its recorded mapping: `model_type` an expression with a
/// write-back, the rest plain, defaults copied from the base table.
fn seed_v2_with_mapping() -> VersionTargets {
    use std::sync::Arc;

    use crate::model::{MappedColumn, ViewMapping, WriteAssignment};

    let column = |name: &str, expression: Option<&str>, type_name: &str, default: Option<&str>| {
        MappedColumn {
            name: name.into(),
            base_column: expression.is_none().then(|| name.into()),
            expression: expression.map(str::to_owned),
            type_name: type_name.into(),
            default: default.map(str::to_owned),
            base_default: default.map(str::to_owned),
            base_identity_always: false,
        }
    };
    let plain = |name: &str| WriteAssignment {
        base_column: name.into(),
        view_column: Some(name.into()),
        expression: None,
        when_changed: None,
    };
    let names = ["id", "model_name", "model_version"];
    let mut insert: Vec<WriteAssignment> = names.iter().map(|n| plain(n)).collect();
    insert.push(WriteAssignment {
        base_column: "model_type".into(),
        view_column: None,
        expression: Some("NEW.model_type".into()),
        when_changed: None,
    });
    let mut update = insert.clone();
    update[3].when_changed = Some("model_type".into());
    let view = RelationName::new("public", "model_metadata_v2");
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: view.clone(),
        }],
    )
    .with_base_write(
        view,
        super::targets::BaseWrite {
            base: RelationName::new("public", "model_metadata"),
            mapping: Arc::new(ViewMapping {
                trigger_backed: true,
                columns: vec![
                    column(
                        "id",
                        None,
                        "bigint",
                        Some("nextval('model_metadata_id_seq'::regclass)"),
                    ),
                    column("model_name", None, "text", None),
                    column("model_version", None, "text", None),
                    column(
                        "model_type",
                        Some("COALESCE(model_type, 'neural_network')"),
                        "text",
                        None,
                    ),
                ],
                insert,
                update,
            }),
        },
    )
}

#[test]
fn an_upsert_through_a_trigger_backed_view_is_one_upsert_on_the_base_table() {
    let targets = seed_v2_with_mapping();
    let sql = "INSERT INTO model_metadata (id, model_name, model_version) VALUES (1, 'a', DEFAULT) ON CONFLICT (id) DO UPDATE SET model_type = EXCLUDED.model_type WHERE model_metadata.model_version < 'b' RETURNING model_type, *";
    let expected = "INSERT INTO public.model_metadata AS model_metadata (id, model_name, model_version, model_type) \
SELECT new.id, new.model_name, new.model_version, (NEW.model_type) FROM (SELECT \
CAST(viewgate_input.id AS bigint) AS id, CAST(viewgate_input.model_name AS text) AS model_name, \
CAST(viewgate_input.model_version AS text) AS model_version, CAST(NULL AS text) AS model_type FROM ( \
VALUES (CAST(1 AS bigint), CAST('a' AS text), CAST(NULL AS text))) AS viewgate_input (id, model_name, model_version)) AS new \
ON CONFLICT (id) DO UPDATE SET (id, model_name, model_version, model_type) = (SELECT new.id, new.model_name, new.model_version, \
CASE WHEN new.model_type IS DISTINCT FROM old.model_type THEN (NEW.model_type) ELSE model_metadata.model_type END \
FROM (SELECT CAST((COALESCE(excluded.model_type, 'neural_network')) AS text) AS model_type, model_metadata.id AS id, \
model_metadata.model_name AS model_name, model_metadata.model_version AS model_version) AS new, \
(SELECT model_metadata.id AS id, model_metadata.model_name AS model_name, model_metadata.model_version AS model_version, \
(COALESCE(model_metadata.model_type, 'neural_network')) AS model_type) AS old) \
WHERE model_metadata.model_version < 'b' RETURNING (COALESCE(model_metadata.model_type, 'neural_network')) AS model_type, \
model_metadata.id AS id, model_metadata.model_name AS model_name, model_metadata.model_version AS model_version, \
(COALESCE(model_metadata.model_type, 'neural_network')) AS model_type";
    assert_eq!(
        rewrite(sql, &targets),
        Ok(Rewrite::Rewritten(expected.into()))
    );
    // Statements of the same shape with other constants, through the shape cache: the same
    // as the full path.
    let cache = super::RewriteCache::default();
    for (id, name) in [(1, "a"), (22, "it''s"), (333, "$x$")] {
        let text = sql.replace("(1, 'a'", &format!("({id}, '{name}'"));
        assert_eq!(
            *super::rewrite_cached(&cache, &text, &targets),
            rewrite(&text, &targets),
            "{text}"
        );
    }
    assert!(cache.stats().hits >= 2, "{:?}", cache.stats());
    // What cannot be mapped exactly is refused with the position.
    let error = rewrite(
        "INSERT INTO model_metadata (model_type) VALUES ('x') ON CONFLICT (model_type) DO NOTHING",
        &targets,
    )
    .unwrap_err();
    assert!(error.reason.contains("is an expression"), "{error}");
    assert_eq!(error.position, Some(67));
    // The target may not be named like the trigger's rows.
    let error = rewrite(
        "INSERT INTO model_metadata AS old (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        &targets,
    )
    .unwrap_err();
    assert!(error.reason.contains("the target named \"old\""), "{error}");
    // Without ON CONFLICT the insert goes through the view and its trigger, as before.
    assert_eq!(
        rewrite("INSERT INTO model_metadata (id) VALUES (1)", &targets),
        Ok(Rewrite::Rewritten(
            "INSERT INTO model_metadata_v2 AS model_metadata (id) VALUES (1)".into()
        ))
    );
}

#[test]
fn upsert_text_cut_or_mangled_anywhere_never_panics() {
    let targets = seed_v2_with_mapping();
    let sql = "INSERT INTO model_metadata AS m (id, model_name) VALUES (1, DEFAULT), ($1, 'b') ON CONFLICT (id) DO UPDATE SET model_name = EXCLUDED.model_name || m.model_name, model_type = upper(EXCLUDED.model_type) WHERE m.id > 0 RETURNING m.*, model_type, public.model_metadata.id";
    for (end, _) in sql.char_indices() {
        let _ = rewrite(&sql[..end], &targets);
        for insert in ["(", ")", ",", "=", ";", " ON CONFLICT ", " DEFAULT", "'"] {
            let mangled = format!("{}{insert}{}", &sql[..end], &sql[end..]);
            let _ = rewrite(&mangled, &targets);
        }
    }
}

#[test]
fn merge_into_a_version_is_one_merge_on_the_base_table() {
    let v2 = seed_v2_with_mapping();
    let sql = "MERGE INTO model_metadata AS t USING (VALUES (1, 'x', 'k')) AS s (id, name, kind) ON t.id = s.id WHEN MATCHED AND t.model_type = 'neural_network' THEN UPDATE SET model_name = s.name, model_type = s.kind WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id, model_name, model_version, model_type) VALUES (s.id, s.name, DEFAULT, s.kind)";
    let expected = "MERGE INTO public.model_metadata AS t USING (VALUES (1, 'x', 'k')) AS s (id, name, kind) ON t.id = s.id \
WHEN MATCHED AND (COALESCE(t.model_type, 'neural_network')) = 'neural_network' THEN UPDATE SET (id, model_name, model_version, model_type) = \
(SELECT new.id, new.model_name, new.model_version, CASE WHEN new.model_type IS DISTINCT FROM old.model_type THEN (NEW.model_type) ELSE t.model_type END \
FROM (SELECT CAST(s.name AS text) AS model_name, CAST(s.kind AS text) AS model_type, t.id AS id, t.model_version AS model_version) AS new, \
(SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS old) \
WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id, model_name, model_version, model_type) \
VALUES (CAST(s.id AS bigint), CAST(s.name AS text), CAST(NULL AS text), (CAST(s.kind AS text)))";
    assert_eq!(rewrite(sql, &v2), Ok(Rewrite::Rewritten(expected.into())));
    // INSERT DEFAULT VALUES: the trigger's INSERT over the view's defaults; the target
    // without an alias keeps its name as one.
    assert_eq!(
        rewrite("MERGE INTO model_metadata USING (SELECT 5 AS id) s ON model_metadata.id = s.id WHEN NOT MATCHED THEN INSERT DEFAULT VALUES", &v2),
        Ok(Rewrite::Rewritten("MERGE INTO public.model_metadata AS model_metadata USING (SELECT 5 AS id) s ON model_metadata.id = s.id WHEN NOT MATCHED THEN INSERT (id, model_name, model_version, model_type) VALUES (CAST(nextval('model_metadata_id_seq'::regclass) AS bigint), CAST(NULL AS text), CAST(NULL AS text), (CAST(NULL AS text)))".into()))
    );
    // A second UPDATE action: one sub-select per base column (PostgreSQL 15 crashes on a
    // correlated multi-column assignment there).
    assert_eq!(
        rewrite("MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED AND t.id = 1 THEN DELETE WHEN MATCHED AND t.id = 2 THEN UPDATE SET model_name = 'a' WHEN MATCHED THEN UPDATE SET model_type = 'b'", &v2),
        Ok(Rewrite::Rewritten("MERGE INTO public.model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED AND t.id = 1 THEN DELETE \
WHEN MATCHED AND t.id = 2 THEN UPDATE SET (id, model_name, model_version, model_type) = (SELECT new.id, new.model_name, new.model_version, \
CASE WHEN new.model_type IS DISTINCT FROM old.model_type THEN (NEW.model_type) ELSE t.model_type END FROM (SELECT CAST('a' AS text) AS model_name, \
t.id AS id, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS new, (SELECT t.id AS id, \
t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS old) \
WHEN MATCHED THEN UPDATE SET model_type = (SELECT CASE WHEN new.model_type IS DISTINCT FROM old.model_type THEN (NEW.model_type) ELSE t.model_type END \
FROM (SELECT CAST('b' AS text) AS model_type, t.id AS id, t.model_name AS model_name, t.model_version AS model_version) AS new, \
(SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS old), \
id = (SELECT new.id FROM (SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS new, \
(SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS old), \
model_name = (SELECT new.model_name FROM (SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS new, \
(SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS old), \
model_version = (SELECT new.model_version FROM (SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS new, \
(SELECT t.id AS id, t.model_name AS model_name, t.model_version AS model_version, (COALESCE(t.model_type, 'neural_network')) AS model_type) AS old)".into()))
    );

    // An auto-updatable view with renamed columns: base names, the view's own default for
    // an omitted column, the managed table as the source (its view).
    let v3 = renamed_with_mapping(false);
    assert_eq!(
        rewrite("MERGE INTO model_metadata t USING (VALUES (1, 'a')) s (id, n) ON t.id = s.id WHEN MATCHED AND t.\"Version\" = '1' THEN UPDATE SET name = s.n WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.n)", &v3),
        Ok(Rewrite::Rewritten("MERGE INTO public.model_metadata t USING (VALUES (1, 'a')) s (id, n) ON t.id = s.id WHEN MATCHED AND t.model_version = '1' THEN UPDATE SET model_name = s.n WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.n, ('0.0'::text))".into()))
    );
    assert_eq!(
        rewrite("MERGE INTO model_metadata t USING model_metadata s ON t.id = s.id AND s.name = 'x' WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.name, DEFAULT)", &v3),
        Ok(Rewrite::Rewritten("MERGE INTO public.model_metadata t USING model_metadata_v3 s ON t.id = s.id AND s.name = 'x' WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, ('0.0'::text))".into()))
    );
    // Unqualified, `name` is both the target's and the source's: ambiguous, as in Postgres.
    let error = rewrite(
        "MERGE INTO model_metadata t USING model_metadata s ON name = 'x' WHEN MATCHED THEN DELETE",
        &v3,
    )
    .unwrap_err();
    assert!(error.reason.contains("ambiguous"), "{error}");
    // Statements of one shape with other constants, through the shape cache: the same as the
    // full path.
    let cache = super::RewriteCache::default();
    for (id, name) in [(1, "a"), (22, "it''s"), (333, "$x$")] {
        let text = sql.replace("(1, 'x'", &format!("({id}, '{name}'"));
        assert_eq!(
            *super::rewrite_cached(&cache, &text, &v2),
            rewrite(&text, &v2),
            "{text}"
        );
    }
    assert!(cache.stats().hits >= 2, "{:?}", cache.stats());
    // Refusals carry their position.
    let error = rewrite(
        "MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k AND t.model_name = 'x' WHEN MATCHED THEN DELETE",
        &v3,
    )
    .unwrap_err();
    assert!(
        error
            .reason
            .contains("\"model_name\" does not exist at version v3"),
        "{error}"
    );
    assert_eq!(error.position, Some(74));
    // The target may not be named like the trigger's rows.
    let error = rewrite("MERGE INTO model_metadata AS new USING (VALUES (1)) s (k) ON new.id = s.k WHEN MATCHED THEN DELETE", &v2).unwrap_err();
    assert!(error.reason.contains("the target named \"new\""), "{error}");
    // A version without a recorded mapping: MERGE names the view, as before.
    assert_eq!(
        rewrite("MERGE INTO model_metadata t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN DELETE", &self::v2()),
        Ok(Rewrite::Rewritten("MERGE INTO model_metadata_v2 t USING (VALUES (1)) s (k) ON t.id = s.k WHEN MATCHED THEN DELETE".into()))
    );
}

#[test]
fn merge_text_cut_or_mangled_anywhere_never_panics() {
    let targets = seed_v2_with_mapping();
    let sql = "MERGE INTO model_metadata AS m USING (SELECT $1::bigint AS k, 'n' AS n) s ON m.id = s.k WHEN MATCHED AND m.model_type = 'x' THEN UPDATE SET model_name = CASE WHEN s.n = '' THEN m.model_name ELSE s.n END, model_type = upper(s.n) WHEN MATCHED THEN UPDATE SET model_version = DEFAULT WHEN NOT MATCHED THEN INSERT (id, model_type) VALUES (s.k, DEFAULT) WHEN NOT MATCHED THEN INSERT DEFAULT VALUES";
    for (end, _) in sql.char_indices() {
        let _ = rewrite(&sql[..end], &targets);
        for insert in [
            "(", ")", ",", "=", ";", " WHEN ", " DEFAULT", "'", " CASE ", " END ",
        ] {
            let mangled = format!("{}{insert}{}", &sql[..end], &sql[end..]);
            let _ = rewrite(&mangled, &targets);
        }
    }
}

#[test]
fn merge_under_with_explain_prepare_and_only_is_written_to_the_base_table() {
    let v2 = seed_v2_with_mapping();
    for (sql, expected) in [
        (
            "EXPLAIN MERGE INTO model_metadata t USING (VALUES (1)) s (id) ON t.id = s.id WHEN MATCHED THEN DELETE",
            "EXPLAIN MERGE INTO public.model_metadata t USING (VALUES (1)) s (id) ON t.id = s.id WHEN MATCHED THEN DELETE",
        ),
        (
            "PREPARE p (bigint) AS MERGE INTO model_metadata t USING (VALUES ($1)) s (id) ON t.id = s.id WHEN MATCHED THEN DELETE",
            "PREPARE p (bigint) AS MERGE INTO public.model_metadata t USING (VALUES ($1)) s (id) ON t.id = s.id WHEN MATCHED THEN DELETE",
        ),
        (
            "MERGE INTO ONLY model_metadata t USING (VALUES (1)) s (id) ON t.id = s.id WHEN MATCHED THEN DELETE",
            "MERGE INTO ONLY public.model_metadata t USING (VALUES (1)) s (id) ON t.id = s.id WHEN MATCHED THEN DELETE",
        ),
        (
            "WITH model_metadata AS (SELECT 1 AS id) MERGE INTO model_metadata t USING model_metadata x ON t.id = x.id WHEN MATCHED THEN DELETE",
            "WITH model_metadata AS (SELECT 1 AS id) MERGE INTO public.model_metadata t USING model_metadata x ON t.id = x.id WHEN MATCHED THEN DELETE",
        ),
    ] {
        assert_eq!(
            rewrite(sql, &v2),
            Ok(Rewrite::Rewritten(expected.into())),
            "{sql}"
        );
    }
}

#[test]
fn a_name_spelled_with_unicode_escapes_is_refused_not_passed_through() {
    for sql in [
        r#"SELECT * FROM U&"\006Dodel_metadata""#,
        r#"SELECT * FROM public.u&"model\005Fmetadata" m"#,
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert!(error.reason.contains("unusual spelling"), "{sql}: {error}");
    }
    assert_eq!(
        rewrite(r#"SELECT * FROM U&"\0074" t"#, &v2()).unwrap(),
        Rewrite::Unchanged
    );
}

#[test]
fn built_ins_that_read_a_named_relation_are_refused_where_they_may_read_the_base_table() {
    for sql in [
        "SELECT query_to_xml('SELECT * FROM model_metadata', true, false, '')",
        "SELECT table_to_xml('model_metadata', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xmlschema(true, false, '')",
    ] {
        let error = rewrite(sql, &v2()).unwrap_err();
        assert!(error.reason.contains("model_metadata_v2"), "{sql}: {error}");
    }
    for sql in [
        "SELECT query_to_xml('SELECT * FROM model_metadata_v2', true, false, '')",
        "SELECT table_to_xml('model_metadata_v2', true, false, '')",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}
