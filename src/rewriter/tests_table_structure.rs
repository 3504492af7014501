//! DDL on a managed table itself, at a version: what would change its columns, their names or
//! types, or the table's name, schema or existence is refused with the position of the
//! table's name (no version's view would follow it); everything else passes unchanged, and so
//! does the same DDL on any other relation, however named (a name the search_path pins
//! elsewhere written qualified).

use super::*;
use crate::rewriter::refusal::Undefined;
use crate::rewriter::shadowing::Pin;

/// The refusal of `sql` at v2: its 1-based position and message.
#[track_caller]
fn refused(sql: &str, targets: &VersionTargets) -> (Option<usize>, String) {
    match rewrite(sql, targets) {
        Err(error) => (error.position, error.to_string()),
        Ok(outcome) => panic!("{sql} was not refused: {outcome:?}"),
    }
}

/// The 1-based character position of `needle` in `sql`, from byte `from`.
fn at(sql: &str, from: usize, needle: &str) -> Option<usize> {
    let byte = from + sql[from..].find(needle).unwrap();
    Some(sql[..byte].chars().count() + 1)
}

#[test]
fn ddl_changing_a_managed_tables_structure_is_refused_at_the_tables_name() {
    for (sql, name_at, operation) in [
        (
            "ALTER TABLE model_metadata ADD COLUMN x int",
            "model",
            "add_column",
        ),
        (
            "ALTER TABLE public.model_metadata ADD x int",
            "public",
            "add_column",
        ),
        (
            "alter table \"model_metadata\" drop column model_type",
            "\"model",
            "drop_column",
        ),
        (
            "ALTER TABLE IF EXISTS model_metadata DROP model_type CASCADE",
            "model",
            "drop_column",
        ),
        (
            "ALTER TABLE ONLY public . model_metadata ALTER COLUMN model_name TYPE text",
            "public",
            "alter_column",
        ),
        (
            "ALTER TABLE model_metadata ALTER model_name SET DATA TYPE varchar(200) USING model_name::varchar",
            "model",
            "alter_column",
        ),
        // One structural sub-command among others is enough.
        (
            "ALTER TABLE model_metadata ALTER COLUMN model_name SET DEFAULT 'x', ADD COLUMN y int, ADD CONSTRAINT c CHECK (id > 0)",
            "model",
            "add_column",
        ),
        (
            "ALTER TABLE model_metadata RENAME COLUMN model_name TO name",
            "model",
            "rename_column",
        ),
        (
            "ALTER TABLE IF EXISTS ONLY model_metadata RENAME model_name TO name",
            "model",
            "rename_column",
        ),
        // Postgres renames a table's column through ALTER VIEW too, and the table itself
        // through ALTER INDEX.
        (
            "ALTER VIEW model_metadata RENAME COLUMN model_name TO name",
            "model",
            "rename_column",
        ),
        (
            "ALTER TABLE public.model_metadata RENAME TO models",
            "public",
            "rename_table",
        ),
        (
            "ALTER INDEX model_metadata RENAME TO models",
            "model",
            "rename_table",
        ),
        ("DROP TABLE model_metadata", "model", "drop_table"),
        (
            "DROP TABLE IF EXISTS other, public.model_metadata CASCADE",
            "public",
            "drop_table",
        ),
        (
            "DROP TABLE model_metadata_archive, /* c */ \"model_metadata\"",
            "\"model",
            "drop_table",
        ),
        (
            "ALTER TABLE \"Accounts\" ADD COLUMN é int",
            "\"Acc",
            "add_column",
        ),
    ] {
        let (position, message) = refused(sql, &v2());
        assert_eq!(position, at(sql, 0, name_at), "{sql}: {message}");
        assert!(
            message.contains(&format!("operation \"{operation}\"")),
            "{sql}: {message}"
        );
    }
    let sql = "ALTER TABLE model_metadata SET SCHEMA archive";
    let (position, message) = refused(sql, &v2());
    assert_eq!(position, Some(13));
    assert!(
        message.contains("SET SCHEMA on \"model_metadata\"")
            && message.contains("over a direct connection"),
        "{message}"
    );
}

#[test]
fn the_refusal_says_what_would_break_and_what_to_do_instead() {
    let (_, message) = refused("ALTER TABLE model_metadata ADD COLUMN x int", &v2());
    assert_eq!(
        message,
        "viewgate cannot rewrite this statement for version v2: ALTER TABLE … ADD COLUMN on \"model_metadata\", a table viewgate manages, would add the column to its base table under every version, and no version's view would show it (at version \"v2\" the table is read through its view, public.model_metadata_v2, which lists its columns: the next query naming the new column fails with 42703); change a managed table with a migration (viewgate migrate start, operation \"add_column\"; viewgate migrate convert writes one from an ORM's SQL), or run this DDL over a direct connection to Postgres"
    );
    let (_, message) = refused("DROP TABLE model_metadata CASCADE", &v2());
    assert!(
        message.contains("DROP TABLE on \"model_metadata\"")
            && message.contains("every version's view with it"),
        "{message}"
    );
    // The table as the version names it, quoted as the other refusals quote it.
    let (_, message) = refused("ALTER TABLE \"Accounts\" RENAME TO x", &v2());
    assert!(message.contains("RENAME TO on \"Accounts\""), "{message}");
}

#[test]
fn in_a_string_of_statements_the_refusal_points_at_the_ddl() {
    let sql = "SELECT * FROM model_metadata; ALTER TABLE model_metadata ADD COLUMN x int; SELECT 1";
    let (position, message) = refused(sql, &v2());
    assert_eq!(
        position,
        at(sql, sql.find(';').unwrap(), "model"),
        "{message}"
    );
    let sql = "CREATE TABLE model_metadata_archive (id int); DROP TABLE model_metadata_archive, model_metadata";
    let (position, _) = refused(sql, &v2());
    assert_eq!(position, Some(sql.rfind("model").unwrap() + 1));
    // A name Postgres's parser reads only decoded: the statement's start where it has no
    // position of its own.
    let sql = "SELECT 1; DROP TABLE U&\"model\\005fmetadata\"";
    let (position, _) = refused(sql, &v2());
    assert!(
        position.is_some_and(|p| (10..=at(sql, 0, "U&").unwrap()).contains(&p)),
        "{position:?}"
    );
    let sql = "ALTER TABLE U&\"model\\005fmetadata\" ADD COLUMN x int";
    assert_eq!(refused(sql, &v2()).0, Some(13));
}

#[test]
fn other_ddl_on_a_managed_table_passes_through_unchanged() {
    for sql in [
        "CREATE INDEX ON model_metadata (model_name)",
        "CREATE UNIQUE INDEX CONCURRENTLY i ON public.model_metadata (id)",
        "DROP INDEX model_metadata_pkey",
        "ALTER TABLE model_metadata ADD CONSTRAINT c CHECK (id > 0)",
        "ALTER TABLE model_metadata ADD PRIMARY KEY (id), DROP CONSTRAINT c",
        "ALTER TABLE model_metadata ALTER COLUMN model_name SET DEFAULT 'x'",
        "ALTER TABLE model_metadata ALTER model_name DROP DEFAULT, ALTER model_name SET NOT NULL",
        "ALTER TABLE ONLY model_metadata ALTER COLUMN model_name DROP NOT NULL",
        "ALTER TABLE model_metadata ALTER COLUMN id SET STATISTICS 100",
        "ALTER TABLE model_metadata RENAME CONSTRAINT c TO d",
        "ALTER TABLE model_metadata ENABLE ROW LEVEL SECURITY, REPLICA IDENTITY FULL",
        "ALTER TABLE model_metadata OWNER TO app",
        "CREATE TRIGGER t AFTER INSERT ON model_metadata FOR EACH ROW EXECUTE FUNCTION f()",
        "ALTER TRIGGER t ON model_metadata RENAME TO u",
        "DROP TRIGGER t ON model_metadata",
        "TRUNCATE model_metadata",
        "VACUUM ANALYZE model_metadata",
        "GRANT SELECT ON model_metadata TO app",
        "COMMENT ON TABLE model_metadata IS 'models'",
        "COMMENT ON COLUMN model_metadata.model_name IS 'its name'",
        "CREATE TABLE child (id int REFERENCES model_metadata (id))",
        "ALTER TABLE child ADD COLUMN m int REFERENCES model_metadata (id)",
        "DO $$ BEGIN PERFORM 1 FROM model_metadata_v2; END $$",
        // Forms that name the table but not as a relation Postgres would restructure.
        "DROP VIEW model_metadata",
        "ALTER TABLE model_metadata_archive RENAME TO model_metadata_old",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

#[test]
fn the_same_ddl_on_any_other_relation_passes_through_unchanged() {
    for sql in [
        "ALTER TABLE customers ADD COLUMN x int",
        "ALTER TABLE model_metadata_archive ADD COLUMN x int, DROP COLUMN y",
        "ALTER TABLE other.model_metadata ALTER COLUMN x TYPE text",
        "ALTER TABLE pg_temp.model_metadata RENAME COLUMN x TO y",
        "ALTER TABLE accounts ADD COLUMN x int",
        "ALTER TABLE model_metadata_v2 RENAME COLUMN x TO y",
        "DROP TABLE other.model_metadata, model_metadata_archive",
        "ALTER TABLE other.model_metadata SET SCHEMA public",
    ] {
        assert_eq!(rewrite(sql, &v2()).unwrap(), Rewrite::Unchanged, "{sql}");
    }
}

/// A temporary table (or another schema's) the search_path finds first is the relation an
/// unqualified name means: its DDL passes, with the name qualified by the pin's schema, so
/// that a pin the router no longer believes rightly (the temporary table renamed) fails
/// there rather than reaching the managed table. The managed table qualified is still the
/// managed table.
#[test]
fn a_name_pinned_elsewhere_is_that_relation_and_written_qualified() {
    let pinned = v2().with_pins(&[(
        "model_metadata".into(),
        Pin {
            schema: "pg_temp".into(),
        },
    )]);
    for (sql, expected) in [
        (
            "ALTER TABLE model_metadata ADD COLUMN x int",
            "ALTER TABLE pg_temp.model_metadata ADD COLUMN x int",
        ),
        (
            "ALTER TABLE IF EXISTS \"model_metadata\" RENAME TO scratch",
            "ALTER TABLE IF EXISTS pg_temp.model_metadata RENAME TO scratch",
        ),
        (
            "DROP TABLE t, model_metadata",
            "DROP TABLE t, pg_temp.model_metadata",
        ),
    ] {
        assert_eq!(
            rewrite(sql, &pinned).unwrap(),
            Rewrite::Rewritten(expected.to_owned()),
            "{sql}"
        );
    }
    let sql = "CREATE INDEX ON model_metadata (x)";
    assert_eq!(rewrite(sql, &pinned).unwrap(), Rewrite::Unchanged);
    let sql = "ALTER TABLE public.model_metadata ADD COLUMN x int";
    assert_eq!(refused(sql, &pinned).0, Some(13));
    // A pinned name the text spells so that its place cannot be found is not guessed at.
    let sql = "DROP TABLE U&\"model\\005fmetadata\"";
    refused(sql, &pinned);
}

/// A managed table by a name the version does not give it (the base table's own, at a version
/// that renames the table) is refused as it is in a query: the version has no such table.
#[test]
fn a_managed_table_by_another_versions_name_is_a_relation_the_version_does_not_have() {
    let targets = v2().with_hidden_tables(vec![RelationName::new("public", "models")]);
    for sql in [
        "ALTER TABLE models ADD COLUMN x int",
        "DROP TABLE public.models",
    ] {
        let error = rewrite(sql, &targets).unwrap_err();
        assert!(
            matches!(error.undefined, Some(Undefined::Relation(_))),
            "{sql}: {error}"
        );
    }
    assert_eq!(
        rewrite("CREATE INDEX ON models (id)", &targets).unwrap(),
        Rewrite::Unchanged
    );
}
