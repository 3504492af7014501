//! A retyped column keeps its indexes: `alter_column` through a new column rebuilds every index
//! and unique constraint on the old column over the new one (concurrently, after the backfill),
//! and the contract gives them back their names, constraints, replica identity and clustering,
//! so the table's indexes read the same in the catalog before the migration and after it. A
//! rollback leaves no rebuilt index behind. What cannot be rebuilt from the catalog alone is
//! refused before any change. Against a real Postgres, migrations run in-process.

#[path = "migrations/support.rs"]
mod migration_support;
#[path = "views/support.rs"]
mod support;

use migration_support::{at, base_columns, complete_now, rollback_now, seeded, start_text};
use support::{Database, exec, lines};

/// Every index of `models` and what it is: its definition, its constraint, whether it is the
/// replica identity and the clustered index, and whether it is valid.
fn indexes(database: &Database) -> String {
    database.admin(
        "SELECT string_agg(pg_get_indexdef(i.indexrelid) || ' | '
                || coalesce(pg_get_constraintdef(k.oid), 'no constraint')
                || ' | ri=' || i.indisreplident || ' clustered=' || i.indisclustered
                || ' valid=' || i.indisvalid, E'\\n' ORDER BY c.relname)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
          WHERE i.indrelid = 'public.models'::regclass",
    )
}

/// Indexes on `size` of every kind the catalog can describe.
const SIZE_INDEXES: &str = "
    ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size);
    CREATE INDEX models_name_size ON models (name COLLATE \"C\" text_pattern_ops, size DESC NULLS LAST)
        INCLUDE (legacy_note) WITH (fillfactor = 70) WHERE name <> '';
    CREATE INDEX models_size_hash ON models USING hash (size);
    CREATE INDEX models_note_size ON models (legacy_note) INCLUDE (size);
    CREATE UNIQUE INDEX models_size_identity ON models (size);
    ALTER TABLE models REPLICA IDENTITY USING INDEX models_size_identity;
    ALTER TABLE models CLUSTER ON models_size_identity;";

const RETYPE_SIZE: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
up = "size::bigint"
down = "size::integer"
"#;

#[tokio::test]
async fn a_retyped_column_keeps_its_indexes_and_unique_constraints() {
    let database = seeded(40).await;
    database.admin(SIZE_INDEXES);
    let before = indexes(&database);

    start_text(&database, "0002.toml", RETYPE_SIZE)
        .await
        .expect("starts: every index on size can be rebuilt");
    let rebuilt = database.admin(
        "SELECT string_agg(c.relname || ' valid=' || i.indisvalid, ', ' ORDER BY c.relname)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = 'public.models'::regclass AND c.relname LIKE '\\_vg\\_%'",
    );
    assert_eq!(
        rebuilt,
        "_vg_v2_models_name_size valid=true, _vg_v2_models_note_size valid=true, \
         _vg_v2_models_size_hash valid=true, _vg_v2_models_size_identity valid=true, \
         _vg_v2_models_size_key valid=true",
        "each index on size has a twin on the new column, built before v2 went live"
    );

    // Both versions write; uniqueness holds on each side while both columns live.
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v1,
        "INSERT INTO models_v1 (name, size) VALUES ('v1-new', 1001)",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, size) VALUES ('v2-new', 1002)",
    )
    .await;
    for (client, sql) in [
        (
            &v1,
            "INSERT INTO models_v1 (name, size) VALUES ('dup', 1002)",
        ),
        (
            &v2,
            "INSERT INTO models_v2 (name, size) VALUES ('dup', 1001)",
        ),
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|code| code.code()),
            Some("23505"),
            "{sql}: {error:?}"
        );
    }
    assert_eq!(
        lines(
            &v2,
            "SELECT size FROM models_v2 WHERE name IN ('v1-new', 'v2-new') ORDER BY size"
        )
        .await,
        ["1001", "1002"]
    );

    complete_now(&database).await.expect("completes");
    assert_eq!(
        indexes(&database),
        before,
        "the same indexes, names, constraints, replica identity and clustering as before"
    );
    assert!(
        base_columns(&database).contains("size:bigint!"),
        "{}",
        base_columns(&database)
    );
    let error = database
        .client()
        .await
        .batch_execute("INSERT INTO models (name, size) VALUES ('after', 1001)")
        .await
        .unwrap_err();
    assert_eq!(
        error.code().map(|code| code.code()),
        Some("23505"),
        "the unique constraint holds after the contract: {error:?}"
    );
}

#[tokio::test]
async fn a_rollback_drops_the_rebuilt_indexes() {
    let database = seeded(10).await;
    database.admin(SIZE_INDEXES);
    let before = indexes(&database);
    start_text(&database, "0002.toml", RETYPE_SIZE)
        .await
        .expect("starts");
    assert_ne!(indexes(&database), before, "the rebuilt indexes exist");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(indexes(&database), before, "no rebuilt index is left");
}

/// Changes the type of `column` of `models`.
fn retype(column: &str, sql_type: &str, extra: &str) -> String {
    format!(
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "{column}"
type = "{sql_type}"
{extra}
"#
    )
}

#[tokio::test]
async fn an_index_the_catalog_cannot_rebuild_is_refused_before_any_change() {
    let database = seeded(10).await;
    database.admin(
        "CREATE INDEX models_lower_note ON models (lower(legacy_note));
         CREATE INDEX models_pattern ON models (name text_pattern_ops);
         ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size);",
    );
    let columns = base_columns(&database);
    let before = indexes(&database);
    for (migration, expected) in [
        (
            retype("legacy_note", "varchar(200)", ""),
            "column legacy_note is covered by index models_lower_note: the old column is dropped at `migrate complete` with its indexes, and this one cannot be rebuilt on the new column: an expression or the predicate of the index names it",
        ),
        (
            retype("name", "varchar(200)", ""),
            "column name is covered by index models_pattern: the old column is dropped at `migrate complete` with its indexes, and this one cannot be rebuilt on the new column: it uses operator class pg_catalog.text_pattern_ops and the column's type changes",
        ),
        (
            retype("size", "bigint", "unique = true"),
            "column size is covered by index models_size_key: the old column is dropped at `migrate complete` with its indexes, and this one cannot be rebuilt on the new column: the operation's `unique = true` makes the new column unique a second time",
        ),
        (
            r#"
version = "v2"
from = "v1"
[[operations]]
op = "split_column"
table = "models"
column = "size"
into = [
  { column = { name = "low", type = "integer" }, up = "size % 10" },
  { column = { name = "high", type = "integer" }, up = "size / 10" },
]
down = "high * 10 + low"
"#
            .to_owned(),
            "column size is covered by index models_size_key: the old column is dropped at `migrate complete` with its indexes, and this one cannot be rebuilt on the new column: operation 1 (split_column) replaces it with several columns or merges it into one",
        ),
    ] {
        let refused = start_text(&database, "0002.toml", &migration)
            .await
            .unwrap_err()
            .to_string();
        for expected in [expected, "table public.models", "nothing was changed"] {
            assert!(refused.contains(expected), "{expected:?} in {refused}");
        }
        assert_eq!(base_columns(&database), columns, "no column was added");
        assert_eq!(indexes(&database), before, "no index was built");
    }

    // The same type keeps a non-default operator class.
    start_text(
        &database,
        "0002.toml",
        &retype(
            "name",
            "text",
            "nullable = true\ndown = \"coalesce(name, '')\"",
        ),
    )
    .await
    .expect("a column keeping its type keeps its operator class");
    complete_now(&database).await.expect("completes");
    assert!(
        database
            .admin("SELECT pg_get_indexdef('models_pattern'::regclass)")
            .contains("(name text_pattern_ops)"),
        "rebuilt with its operator class"
    );
}

#[tokio::test]
async fn a_deferrable_unique_constraint_is_refused() {
    let database = seeded(10).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size) DEFERRABLE INITIALLY DEFERRED",
    );
    let columns = base_columns(&database);
    let refused = start_text(&database, "0002.toml", RETYPE_SIZE)
        .await
        .unwrap_err()
        .to_string();
    for expected in [
        "column size is covered by index models_size_key",
        "it belongs to the deferrable unique constraint models_size_key",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_eq!(base_columns(&database), columns, "no column was added");
}
