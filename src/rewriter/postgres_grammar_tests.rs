//! Tests of `postgres_grammar.rs`: which references PostgreSQL's parser reports, and where.

use super::*;

fn targets() -> VersionTargets {
    VersionTargets::seed_example("v1")
}

fn offsets(sql: &str) -> Vec<(usize, Place)> {
    match managed_references(sql, &targets()) {
        Reading::Parsed(found) => found.into_iter().map(|r| (r.offset, r.place)).collect(),
        other => panic!("{sql}: {other:?}"),
    }
}

#[test]
fn finds_references_postgres_reads_and_only_those() {
    let sql = "TABLE model_metadata";
    assert_eq!(offsets(sql), vec![(6, Place::From)]);
    let sql = "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS g, public.model_metadata m";
    assert_eq!(
        offsets(sql),
        vec![(sql.find("public").unwrap(), Place::From)]
    );
    // The new table of SELECT INTO, a locking clause's names and strings are not references.
    let sql = "SELECT * INTO model_metadata FROM t FOR UPDATE OF model_metadata";
    assert_eq!(offsets(sql), vec![]);
    let sql = "SELECT 'model_metadata', model_metadata.id FROM other";
    assert_eq!(offsets(sql), vec![]);
    // A new table's query reads; a view's definition is marked; other DDL is not read.
    let sql = "CREATE TABLE model_metadata AS SELECT * FROM model_metadata";
    assert_eq!(
        offsets(sql),
        vec![(sql.rfind("model").unwrap(), Place::From)]
    );
    let sql = "CREATE VIEW model_metadata AS SELECT * FROM model_metadata";
    assert_eq!(
        offsets(sql),
        vec![(sql.rfind("model").unwrap(), Place::ViewDefinition)]
    );
    let sql = "CREATE MATERIALIZED VIEW model_metadata AS SELECT NULL::model_metadata";
    assert_eq!(
        offsets(sql),
        vec![(sql.rfind("model").unwrap(), Place::ViewDefinition)]
    );
    let sql = "CREATE VIEW v AS SELECT * FROM pg_class";
    assert_eq!(offsets(sql), vec![]);
    let sql = "CREATE TABLE t (LIKE model_metadata)";
    assert_eq!(offsets(sql), vec![(21, Place::Like)]);
}

#[test]
fn ddl_is_read_only_where_it_copies_or_stores_a_shape() {
    // The DDL's own object, a foreign key's table, an index's: the DDL's business.
    for sql in [
        "ALTER TABLE t ADD COLUMN c int REFERENCES model_metadata (id)",
        "ALTER TABLE model_metadata ADD CONSTRAINT c FOREIGN KEY (p) REFERENCES model_metadata",
        "CREATE TABLE model_metadata (id int REFERENCES model_metadata)",
        "CREATE INDEX ON model_metadata (id)",
        "GRANT SELECT ON model_metadata TO PUBLIC",
        "CREATE SCHEMA s CREATE TABLE t (id int REFERENCES public.model_metadata)",
        "CREATE TABLE t (LIKE other.model_metadata, c pg_class)",
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT count(*) FROM tenant.model_metadata $$ LANGUAGE sql",
    ] {
        assert_eq!(offsets(sql), vec![], "{sql}");
    }
    let stored = |sql: &str, name: &str| vec![(sql.find(name).unwrap(), Place::StoredShape)];
    for sql in [
        "CREATE TABLE t (r model_metadata)",
        "CREATE TABLE t () INHERITS (model_metadata)",
        "CREATE TABLE t PARTITION OF model_metadata DEFAULT",
        "CREATE TABLE t OF model_metadata",
        "ALTER TABLE t ADD COLUMN r model_metadata[]",
        "ALTER TABLE t INHERIT model_metadata",
        "CREATE TYPE pair AS (a int, b model_metadata)",
        "CREATE DOMAIN d AS model_metadata",
        "CREATE FUNCTION f(model_metadata) RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
        "CREATE FUNCTION f() RETURNS SETOF model_metadata AS $$ SELECT 1 $$ LANGUAGE sql",
        "CREATE SCHEMA s CREATE TABLE t (r public.model_metadata)",
    ] {
        let name = if sql.contains("public.model") {
            "public"
        } else {
            "model"
        };
        assert_eq!(offsets(sql), stored(sql, name), "{sql}");
    }
    let body = |sql: &str, name: &str| vec![(sql.find(name).unwrap(), Place::FunctionBody)];
    let sql = "CREATE FUNCTION f() RETURNS bigint AS $$ SELECT count(*) FROM model_metadata $$ LANGUAGE sql";
    assert_eq!(offsets(sql), body(sql, "model"));
    let sql = "CREATE PROCEDURE p() BEGIN ATOMIC DELETE FROM model_metadata; END";
    assert_eq!(offsets(sql), body(sql, "model"));
    let sql = "DO $$ BEGIN PERFORM * FROM public.model_metadata; END $$";
    assert_eq!(offsets(sql), body(sql, "model"));
    let sql = "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM model_metadata";
    assert_eq!(
        offsets(sql),
        vec![(sql.find("model").unwrap(), Place::ViewDefinition)]
    );
    // A body with doubled quotes is not verbatim in the text: the refusal points at AS.
    let sql = "DO 'BEGIN RAISE NOTICE ''%'', (SELECT 1 FROM model_metadata); END'";
    assert_eq!(offsets(sql), vec![(3, Place::FunctionBody)]);
}

#[test]
fn ddl_changing_a_managed_tables_structure_is_placed_at_its_name() {
    let change = |sql: &str, name: &str, change| {
        assert_eq!(
            offsets(sql),
            vec![(sql.find(name).unwrap(), Place::TableStructure(change))],
            "{sql}"
        );
    };
    change(
        "ALTER TABLE model_metadata ALTER id SET DEFAULT 1, DROP COLUMN c",
        "model",
        TableChange::DropColumn,
    );
    change(
        "ALTER TABLE public.model_metadata RENAME c TO d",
        "public",
        TableChange::RenameColumn,
    );
    change(
        "ALTER TABLE model_metadata SET SCHEMA s",
        "model",
        TableChange::SetSchema,
    );
    change(
        "DROP TABLE t, \"model_metadata\"",
        "\"model",
        TableChange::DropTable,
    );
    // The table's own structure only: a constraint's or trigger's new name is not one.
    assert_eq!(
        offsets("ALTER TABLE model_metadata RENAME CONSTRAINT c TO d"),
        vec![]
    );
}

#[test]
fn with_items_shadow_reads_but_not_targets() {
    let sql = "WITH model_metadata AS (SELECT * FROM model_metadata) SELECT * FROM model_metadata";
    assert_eq!(
        offsets(sql),
        vec![(sql.find("FROM m").unwrap() + 5, Place::From)]
    );
    let sql = "WITH RECURSIVE model_metadata AS (SELECT 1 UNION ALL SELECT 1 FROM model_metadata) SELECT 1";
    assert_eq!(offsets(sql), vec![]);
    let sql = "WITH model_metadata AS (SELECT 1) UPDATE model_metadata SET id = 1";
    assert_eq!(
        offsets(sql),
        vec![(sql.find("UPDATE m").unwrap() + 7, Place::Target)]
    );
    let sql = "COPY model_metadata TO STDOUT; COPY model_metadata FROM STDIN";
    assert_eq!(
        offsets(sql),
        vec![
            (5, Place::CopyTo),
            (sql.rfind("model").unwrap(), Place::CopyFrom)
        ]
    );
}

#[test]
fn rejected_and_unavailable_are_told_apart() {
    assert!(matches!(
        managed_references("SELEC * FROM model_metadata", &targets()),
        Reading::Rejected(_)
    ));
    // Too deep for the decoder, or for Postgres's parser stack: never a crash, and never
    // a reading that could miss a reference.
    for depth in [200, 1_000] {
        let deep = format!(
            "SELECT * FROM {}model_metadata{}",
            "(SELECT * FROM ".repeat(depth),
            ") s".repeat(depth)
        );
        assert!(
            !matches!(managed_references(&deep, &targets()), Reading::Parsed(_)),
            "{depth}"
        );
    }
    // The worst nesting per byte that fits the limit: a left-deep operator chain.
    let chain = format!("SELECT * FROM model_metadata WHERE {}1", "1+".repeat(8_000));
    assert!(chain.len() <= MAX_CHECKED_BYTES);
    let reading = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || managed_references(&chain, &targets()))
        .unwrap()
        .join()
        .unwrap();
    assert!(matches!(reading, Reading::Unavailable(_)), "{reading:?}");
    let long = format!(
        "SELECT * FROM model_metadata /* {} */",
        "x".repeat(MAX_CHECKED_BYTES)
    );
    assert_eq!(managed_references(&long, &targets()), Reading::TooLong);
}

#[test]
fn row_types_are_references_and_no_with_item_shadows_them() {
    let sql = "WITH model_metadata AS (SELECT 1) SELECT NULL::model_metadata, CAST(NULL AS public.model_metadata[]), NULL::int";
    assert_eq!(
        offsets(sql),
        vec![
            (sql.find("::model").unwrap() + 2, Place::RowType),
            (sql.find("public").unwrap(), Place::RowType),
        ]
    );
    let sql = "PREPARE p (model_metadata) AS SELECT $1";
    assert_eq!(offsets(sql), vec![(11, Place::RowType)]);
    assert_eq!(offsets("SELECT NULL::other.model_metadata"), vec![]);
}

#[test]
fn name_extents() {
    let sql = "FROM public . \"Model\"\"x\" m";
    let (whole, last) = name_extent(sql, 5).unwrap();
    assert_eq!(&sql[whole], "public . \"Model\"\"x\"");
    assert_eq!(&sql[last], "\"Model\"\"x\"");
    assert_eq!(name_extent("FROM (x)", 5), None);
    let keyword =
        |sql: &str, at| after_table_keyword(sql, &crate::rewriter::splice::Tokens::of(sql), at);
    assert!(keyword("TABLE ONLY t", 11));
    assert!(keyword("x UNION table t", 14));
    assert!(!keyword("SELECT * FROM mytable t", 22));
}

#[test]
fn built_ins_reading_a_named_relation_are_references() {
    let at = |sql: &str, text: &str| vec![(sql.find(text).unwrap(), Place::QueryText)];
    let sql = "SELECT query_to_xml('select * from model_metadata', true, false, '')";
    assert_eq!(offsets(sql), at(sql, "model_metadata"));
    let sql = "SELECT pg_catalog.table_to_xml('model_metadata'::regclass, true, false, '')";
    assert_eq!(offsets(sql), at(sql, "model_metadata"));
    let sql = "SELECT x FROM (SELECT database_to_xml(true, false, '') x) s";
    assert_eq!(offsets(sql), at(sql, "database_to_xml"));
    let sql = "SELECT schema_to_xml($1, true, false, '')";
    assert_eq!(offsets(sql), at(sql, "schema_to_xml"));
    for sql in [
        "SELECT query_to_xml('select * from model_metadata_v1', true, false, '')",
        "SELECT schema_to_xml('audit', true, false, '')",
        "SELECT myschema.query_to_xml($1)",
    ] {
        assert_eq!(offsets(sql), vec![], "{sql}");
    }
}
