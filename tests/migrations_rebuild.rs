//! A retyped column keeps what covers it: `alter_column` through a new column rebuilds every
//! index, unique and check constraint and foreign key on the old column over the new one, and
//! the contract gives them back their names, constraints, replica identity and clustering, so
//! the table's indexes and constraints read the same in the catalog before the migration and
//! after it (a widened `varchar`'s `varchar_pattern_ops` index too, as Django makes one for
//! each indexed `CharField`). A rollback leaves nothing rebuilt behind. What cannot be rebuilt
//! from the catalog alone is refused before any change. Against a real Postgres, migrations run in-process.

use crate::migration_support;
use crate::support;

use migration_support::{
    BASE, at, base_columns, complete_now, insert_keyed_at_both_versions, one_table_at_v1, retype,
    rollback_now, seeded, start_text,
};
use support::{Database, exec, lines};

/// Every index of `models` and what it is (its definition, its constraint, whether it is the
/// replica identity and the clustered index, whether it is valid), then its checks and
/// foreign keys.
fn indexes(database: &Database) -> String {
    database.admin(
        "SELECT string_agg(pg_get_indexdef(i.indexrelid) || ' | '
                || coalesce(pg_get_constraintdef(k.oid), 'no constraint')
                || ' | ri=' || i.indisreplident || ' clustered=' || i.indisclustered
                || ' valid=' || i.indisvalid, E'\\n' ORDER BY c.relname)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
          WHERE i.indrelid = 'public.models'::regclass",
    ) + "\n"
        + &database.admin(
            "SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid) || ' valid=' || convalidated,
                               E'\\n' ORDER BY conname)
               FROM pg_constraint WHERE conrelid = 'public.models'::regclass AND contype IN ('c', 'f')",
        )
}

/// Indexes and constraints on `size` of every kind the catalog can describe.
const SIZE_INDEXES: &str = "
    CREATE TABLE sizes (size integer PRIMARY KEY);
    INSERT INTO sizes SELECT generate_series(0, 2000) EXCEPT SELECT 1234;
    ALTER TABLE models ADD CONSTRAINT models_size_fkey FOREIGN KEY (size) REFERENCES sizes (size)
        ON DELETE CASCADE;
    ALTER TABLE models ADD CONSTRAINT models_size_check CHECK (size >= 0 AND size <> 1500);
    ALTER TABLE models ADD CONSTRAINT models_size_small CHECK (size < 1900) NOT VALID;
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
async fn a_retyped_column_keeps_its_indexes_and_constraints() {
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
    assert_eq!(
        database.admin(
            "SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), E'\\n' ORDER BY conname)
               FROM pg_constraint WHERE conrelid = 'public.models'::regclass AND conname LIKE '\\_vg\\_%'"
        ),
        "_vg_v2_models_size_check CHECK (((_vg_v2_size >= 0) AND (_vg_v2_size <> 1500)))\n\
         _vg_v2_models_size_fkey FOREIGN KEY (_vg_v2_size) REFERENCES sizes(size) ON DELETE CASCADE\n\
         _vg_v2_models_size_small CHECK ((_vg_v2_size < 1900)) NOT VALID",
        "each check and foreign key has a twin, validated as the old one was"
    );
    // The foreign key's action reaches the rows through either column.
    database.admin("DELETE FROM sizes WHERE size = 40");
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE size = 40"),
        "0"
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
    for (client, sql, code) in [
        (
            &v1,
            "INSERT INTO models_v1 (name, size) VALUES ('dup', 1002)",
            "23505",
        ),
        (
            &v2,
            "INSERT INTO models_v2 (name, size) VALUES ('dup', 1001)",
            "23505",
        ),
        (
            &v1,
            "INSERT INTO models_v1 (name, size) VALUES ('bad', 1500)",
            "23514",
        ),
        (
            &v2,
            "INSERT INTO models_v2 (name, size) VALUES ('bad', 1500)",
            "23514",
        ),
        (
            &v2,
            "INSERT INTO models_v2 (name, size) VALUES ('bad', 1950)",
            "23514",
        ),
        (
            &v1,
            "INSERT INTO models_v1 (name, size) VALUES ('bad', 1234)",
            "23503",
        ),
        (
            &v2,
            "INSERT INTO models_v2 (name, size) VALUES ('bad', 1234)",
            "23503",
        ),
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|code| code.code()),
            Some(code),
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
async fn a_rollback_drops_what_was_rebuilt() {
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

/// Retypes `size` to bigint and `legacy_note` to varchar(200) in one migration.
const RETYPE_SIZE_AND_NOTE: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
[[operations]]
op = "alter_column"
table = "models"
column = "legacy_note"
type = "varchar(200)"
"#;

/// The definition of index `name` of `models`.
fn index_definition(database: &Database, name: &str) -> String {
    database.admin(&format!(
        "SELECT pg_get_indexdef(c.oid) FROM pg_class c
          WHERE c.relname = '{name}' AND c.relnamespace = 'public'::regnamespace"
    ))
}

#[tokio::test]
async fn an_index_over_an_expression_or_a_predicate_of_the_column_is_rebuilt_over_the_new_one() {
    let database = seeded(40).await;
    database.admin(
        "UPDATE models SET legacy_note = 'note-' || id;
         CREATE INDEX models_lower_note ON models (lower(legacy_note));
         CREATE UNIQUE INDEX models_double_size ON models ((size * 2), name) WHERE size > 5;
         CREATE INDEX models_noted ON models (name) WHERE legacy_note IS NOT NULL;",
    );
    let double_size = index_definition(&database, "models_double_size");
    let noted = index_definition(&database, "models_noted");

    start_text(&database, "0002.toml", RETYPE_SIZE_AND_NOTE)
        .await
        .expect("starts: the expressions fit the new types");
    for (name, expected) in [
        (
            "_vg_v2_models_lower_note",
            "CREATE INDEX _vg_v2_models_lower_note ON public.models USING btree (lower((_vg_v2_legacy_note)::text))",
        ),
        (
            "_vg_v2_models_double_size",
            "CREATE UNIQUE INDEX _vg_v2_models_double_size ON public.models USING btree (((_vg_v2_size * 2)), name) WHERE (_vg_v2_size > 5)",
        ),
        (
            "_vg_v2_models_noted",
            "CREATE INDEX _vg_v2_models_noted ON public.models USING btree (name) WHERE (_vg_v2_legacy_note IS NOT NULL)",
        ),
    ] {
        assert_eq!(index_definition(&database, name), expected);
    }
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_vg\\_probe%'"),
        "0",
        "the expand's empty copies went with its transaction"
    );

    // The rebuilt unique index holds on the new column, through either version.
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name, size) VALUES ('twin', 7)").await;
    for (client, sql) in [
        (&v1, "INSERT INTO models_v1 (name, size) VALUES ('twin', 7)"),
        (&v2, "INSERT INTO models_v2 (name, size) VALUES ('twin', 7)"),
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|code| code.code()),
            Some("23505"),
            "{sql}: {error:?}"
        );
    }
    exec(
        &v1,
        "UPDATE models_v1 SET legacy_note = 'Loud' WHERE name = 'twin'",
    )
    .await;
    assert_eq!(
        lines(
            &v2,
            "SELECT name FROM models_v2 WHERE lower(legacy_note) = 'loud'"
        )
        .await,
        ["twin"]
    );

    complete_now(&database).await.expect("completes");
    assert_eq!(
        index_definition(&database, "models_double_size"),
        double_size
    );
    assert_eq!(index_definition(&database, "models_noted"), noted);
    assert_eq!(
        index_definition(&database, "models_lower_note"),
        "CREATE INDEX models_lower_note ON public.models USING btree (lower((legacy_note)::text))"
    );
    // The renamed indexes serve the queries they served before.
    for (query, index) in [
        ("lower(legacy_note) = 'loud'", "models_lower_note"),
        ("size * 2 = 14 AND size > 5", "models_double_size"),
    ] {
        let plan = database.admin(&format!(
            "SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT * FROM models WHERE {query}"
        ));
        assert!(plan.contains(index), "{query}: {plan}");
    }
}

/// A predicate's string with doubled quotes is rebuilt as Postgres wrote it: moving the index's
/// text to the new column's name once wrote back the string's value (`'x' OR '1'='1'`), and
/// the rebuilt partial unique index covered every row.
#[tokio::test]
async fn a_predicates_quoted_string_is_rebuilt_as_written() {
    let database = seeded(4).await;
    database.admin(
        "UPDATE models SET legacy_note = 'twin', name = 'twin' WHERE id IN (1, 2);
         CREATE UNIQUE INDEX models_quoted ON models (name)
          WHERE legacy_note <> 'twin' AND legacy_note <> 'x'' OR ''1''=''1';",
    );
    start_text(&database, "0002.toml", RETYPE_SIZE_AND_NOTE)
        .await
        .expect("starts");
    let rebuilt = index_definition(&database, "_vg_v2_models_quoted");
    assert!(
        rebuilt.contains("<> 'x'' OR ''1''=''1'"),
        "the string as written: {rebuilt}"
    );
    let v2 = at(&database, "v2").await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, legacy_note) VALUES ('twin', 'twin')",
    )
    .await;
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE name = 'twin'"),
        "3",
        "rows the predicate leaves out are not unique"
    );
}

#[tokio::test]
async fn a_rollback_drops_the_indexes_rebuilt_over_expressions() {
    let database = seeded(10).await;
    database.admin(
        "CREATE INDEX models_lower_note ON models (lower(legacy_note));
         CREATE INDEX models_noted ON models (name) WHERE legacy_note IS NOT NULL;",
    );
    let before = indexes(&database);
    start_text(&database, "0002.toml", RETYPE_SIZE_AND_NOTE)
        .await
        .expect("starts");
    assert_ne!(indexes(&database), before, "the rebuilt indexes exist");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(indexes(&database), before, "no rebuilt index is left");
}

#[tokio::test]
async fn an_index_expression_the_new_type_does_not_fit_fails_the_expand_which_changes_nothing() {
    let database = seeded(10).await;
    database.admin("CREATE INDEX models_lower_note ON models (lower(legacy_note));");
    let before = indexes(&database);
    let columns = base_columns(&database);
    let refused = start_text(
        &database,
        "0002.toml",
        &retype(
            "legacy_note",
            "integer",
            "up = \"length(legacy_note)\"\ndown = \"legacy_note::text\"",
        ),
    )
    .await
    .unwrap_err()
    .to_string();
    for expected in [
        "build index models_lower_note over the new version's column(s) for legacy_note on an empty copy of models",
        "function lower(integer) does not exist (SQLSTATE 42883)",
        "nothing was changed",
    ] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_eq!(base_columns(&database), columns, "no column was added");
    assert_eq!(indexes(&database), before, "no index was built");
    assert_eq!(
        database.admin(
            "SELECT (SELECT count(*) FROM viewgate.versions WHERE version = 'v2') + (SELECT count(*) FROM viewgate.migrations)"
        ),
        "0",
        "no version or migration row"
    );
}

/// Splits `column` of `models` into two columns of `sql_type`, `first` and `second`.
fn split_in_two(column: &str, sql_type: &str, first: &str, second: &str) -> String {
    format!(
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "split_column"
table = "models"
column = "{column}"
into = [
  {{ column = {{ name = "first", type = "{sql_type}" }}, up = "{first}" }},
  {{ column = {{ name = "second", type = "{sql_type}" }}, up = "{second}" }},
]
down = "first || second"
"#
    )
}

/// Starts `migration`, which must be refused saying `expected` and add no column.
async fn assert_refused(database: &Database, migration: &str, expected: &str) {
    let columns = base_columns(database);
    let refused = start_text(database, "0002.toml", migration)
        .await
        .unwrap_err()
        .to_string();
    for expected in [expected, "table public.models", "nothing was changed"] {
        assert!(refused.contains(expected), "{expected:?} in {refused}");
    }
    assert_eq!(base_columns(database), columns, "no column was added");
}

#[tokio::test]
async fn an_index_the_catalog_cannot_rebuild_is_refused_before_any_change() {
    let database = seeded(10).await;
    database.admin(
        "CREATE INDEX models_pattern ON models (name text_pattern_ops);
         ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size);",
    );
    let before = indexes(&database);
    for (migration, expected) in [
        (
            retype(
                "name",
                "integer",
                "up = \"length(name)\"\ndown = \"name::text\"",
            ),
            "column name is covered by index models_pattern: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: it uses operator class pg_catalog.text_pattern_ops, which does not take the column's new type integer",
        ),
        (
            retype("size", "bigint", "unique = true"),
            "column size is covered by index models_size_key: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: the operation's `unique = true` makes the new column unique a second time",
        ),
        (
            split_in_two(
                "size",
                "text",
                "left(size::text, 1)",
                "substr(size::text, 2)",
            ),
            "column size is covered by index models_size_key: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: operation 1 (split_column) replaces it with several columns or merges it into one",
        ),
    ] {
        assert_refused(&database, &migration, expected).await;
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

/// Django's `CharField(max_length=100, unique=True)`: a unique constraint and the
/// `varchar_pattern_ops` index Django adds for LIKE, on `models.name` as `varchar(100)`,
/// with v1 over it and no rows.
async fn django_char_field() -> Database {
    let database = Database::start();
    database.admin(&format!(
        "{};
         ALTER TABLE models ADD CONSTRAINT models_name_key UNIQUE (name);
         CREATE INDEX models_name_like ON models (name varchar_pattern_ops);
         INSERT INTO models (name, size) SELECT 'model-' || n, n FROM generate_series(1, 10) AS n",
        BASE.replace("name text NOT NULL", "name varchar(100) NOT NULL")
            .trim_end_matches(';')
    ));
    one_table_at_v1(
        &database,
        "models",
        "id",
        &["id", "name", "size", "legacy_note"],
    )
    .await;
    database
}

/// Widening a Django `CharField` (`varchar(100)` to `varchar(150)`) was refused: its `_like`
/// index's operator class, `varchar_pattern_ops`, is not the default, and the type changed.
/// The class takes `text`, which a `varchar` of any length is binary-coercible to, so the
/// index is rebuilt with it over the new column: both versions write and read through the
/// migration (the unique constraint holding on each side), the contract leaves the same
/// indexes and constraints under their names, the pattern index serves `LIKE 'abc%'`, and a
/// rollback leaves the table as it was.
#[tokio::test]
async fn a_widened_varchar_keeps_its_pattern_ops_index() {
    let widen = retype("name", "varchar(150)", "");
    let database = django_char_field().await;
    let before = indexes(&database);
    start_text(&database, "0002.toml", &widen)
        .await
        .expect("starts: varchar_pattern_ops takes varchar(150)");
    assert!(
        index_definition(&database, "_vg_v2_models_name_like")
            .contains("(_vg_v2_name varchar_pattern_ops)"),
        "{}",
        index_definition(&database, "_vg_v2_models_name_like")
    );
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('abc-v1')").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('abc-v2')").await;
    for (client, view) in [(&v1, "models_v1"), (&v2, "models_v2")] {
        assert_eq!(
            lines(
                client,
                &format!("SELECT name FROM {view} WHERE name LIKE 'abc%' ORDER BY name")
            )
            .await,
            ["abc-v1", "abc-v2"]
        );
    }
    for (client, sql) in [
        (&v1, "INSERT INTO models_v1 (name) VALUES ('abc-v2')"),
        (&v2, "INSERT INTO models_v2 (name) VALUES ('abc-v1')"),
    ] {
        let error = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|code| code.code()),
            Some("23505"),
            "{sql}: {error:?}"
        );
    }

    complete_now(&database).await.expect("completes");
    assert_eq!(
        indexes(&database),
        before,
        "the same indexes and constraints, by name"
    );
    assert!(
        base_columns(&database).contains("name:character varying(150)!"),
        "{}",
        base_columns(&database)
    );
    assert!(
        index_definition(&database, "models_name_like").contains("(name varchar_pattern_ops)"),
        "{}",
        index_definition(&database, "models_name_like")
    );
    // Under the C locale the unique index serves a prefix too: without it (for this
    // transaction only) the plan must take the pattern index, not scan.
    let client = database.client().await;
    exec(
        &client,
        "BEGIN; SET LOCAL enable_seqscan = off; ALTER TABLE models DROP CONSTRAINT models_name_key",
    )
    .await;
    let plan = lines(
        &client,
        "EXPLAIN SELECT id FROM models WHERE name LIKE 'abc%'",
    )
    .await
    .join("\n");
    exec(&client, "ROLLBACK").await;
    assert!(plan.contains("using models_name_like"), "{plan}");

    let database = django_char_field().await;
    let columns = base_columns(&database);
    start_text(&database, "0002.toml", &widen)
        .await
        .expect("starts");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(indexes(&database), before, "no rebuilt index is left");
    assert_eq!(base_columns(&database), columns);
}

#[tokio::test]
async fn a_check_restated_by_the_operation_or_a_split_foreign_key_is_refused() {
    let database = seeded(10).await;
    database.admin(
        "CREATE TABLE notes (note text PRIMARY KEY);
         ALTER TABLE models ADD CONSTRAINT models_size_check CHECK (size >= 0);
         ALTER TABLE models ADD CONSTRAINT models_note_fkey FOREIGN KEY (legacy_note) REFERENCES notes (note);",
    );
    for (migration, expected) in [
        (
            retype("size", "bigint", "check = \"size >= 1\""),
            "column size is covered by check models_size_check: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: the operation's `check` would stand beside it",
        ),
        (
            split_in_two(
                "legacy_note",
                "text",
                "left(legacy_note, 1)",
                "substr(legacy_note, 2)",
            ),
            "column legacy_note is covered by foreign key models_note_fkey: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: operation 1 (split_column) replaces it with several columns",
        ),
    ] {
        assert_refused(&database, &migration, expected).await;
    }
}

#[tokio::test]
async fn a_deferrable_unique_constraint_is_refused() {
    let database = seeded(10).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size) DEFERRABLE INITIALLY DEFERRED",
    );
    assert_refused(
        &database,
        RETYPE_SIZE,
        "column size is covered by index models_size_key: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: it belongs to the deferrable unique constraint models_size_key",
    )
    .await;
}

#[tokio::test]
async fn what_the_migration_drops_goes_and_a_renamed_table_keeps_the_rest() {
    let database = seeded(10).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size);
         CREATE INDEX models_size_note ON models (size, legacy_note);
         CREATE UNIQUE INDEX models_size_name ON models (size, name);
         CREATE INDEX models_size_idx ON models (size DESC);",
    );
    start_text(
        &database,
        "0002.toml",
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "alter_column"
table = "models"
column = "size"
type = "bigint"
[[operations]]
op = "drop_constraint"
table = "models"
name = "models_size_key"
[[operations]]
op = "drop_index"
name = "models_size_name"
[[operations]]
op = "drop_column"
table = "models"
column = "legacy_note"
[[operations]]
op = "rename_table"
from = "models"
to = "items"
"#,
    )
    .await
    .expect("starts");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin(
            "SELECT string_agg(pg_get_indexdef(indexrelid), E'\\n' ORDER BY indexrelid::regclass::text)
               FROM pg_index WHERE indrelid = 'public.items'::regclass"
        ),
        "CREATE UNIQUE INDEX models_pkey ON public.items USING btree (id)\n\
         CREATE INDEX models_size_idx ON public.items USING btree (size DESC)",
        "the dropped constraint, index and column took theirs along; the rest is rebuilt on the renamed table"
    );
}

#[tokio::test]
async fn an_identity_made_nullable_or_a_collation_under_a_new_type_is_refused() {
    let database = seeded(10).await;
    database.admin(
        "CREATE UNIQUE INDEX models_size_identity ON models (size);
         ALTER TABLE models REPLICA IDENTITY USING INDEX models_size_identity;
         CREATE INDEX models_note_c ON models (legacy_note COLLATE \"C\");",
    );
    for (migration, expected) in [
        (
            retype(
                "size",
                "bigint",
                "nullable = true\ndown = \"coalesce(size, 0)\"",
            ),
            "column size is covered by index models_size_identity: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: it is the table's replica identity, which needs NOT NULL columns",
        ),
        (
            retype("legacy_note", "integer", "up = \"length(legacy_note)\""),
            "column legacy_note is covered by index models_note_c: the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: it sorts the column by collation pg_catalog.\"C\" and the column's type changes",
        ),
    ] {
        assert_refused(&database, &migration, expected).await;
    }
}

#[tokio::test]
async fn complete_follows_what_changed_on_the_table_while_live() {
    let database = seeded(10).await;
    database.admin("ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size)");
    let before = indexes(&database);
    start_text(&database, "0002.toml", RETYPE_SIZE)
        .await
        .expect("starts");

    // Indexes made on the old column after the start: the contract would drop them
    // unrebuilt. The one refusal names each (one a run before, the Node walk).
    database.admin("CREATE INDEX models_size_late ON models (size)");
    database.admin("CREATE INDEX models_size_later ON models (size, id)");
    let refused = complete_now(&database).await.unwrap_err().to_string();
    for late in ["models_size_late", "models_size_later"] {
        assert!(
            refused.contains(&format!("{late} covers column size of public.models, which the contract drops, and was made after the migration started")),
            "{refused}"
        );
    }
    database.admin("DROP INDEX models_size_late");
    database.admin("DROP INDEX models_size_later");

    // A rebuilt twin dropped: its steps would fail.
    database.admin("DROP INDEX _vg_v2_models_size_key");
    let refused = complete_now(&database).await.unwrap_err().to_string();
    assert!(
        refused.contains("_vg_v2_models_size_key, the rebuilt models_size_key on the new column of public.models, is missing or invalid"),
        "{refused}"
    );
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(
        indexes(&database),
        before,
        "nothing of the migration is left"
    );

    // The old constraint dropped: its twin would bring it back.
    start_text(&database, "0002.toml", RETYPE_SIZE)
        .await
        .expect("starts again");
    database.admin("ALTER TABLE models DROP CONSTRAINT models_size_key");
    let refused = complete_now(&database).await.unwrap_err().to_string();
    assert!(
        refused.contains("models_size_key on column size of public.models was dropped while the migration was live"),
        "{refused}"
    );
    database.admin("ALTER TABLE models ADD CONSTRAINT models_size_key UNIQUE (size)");
    complete_now(&database)
        .await
        .expect("completes once the table matches the rebuild again");
    assert_eq!(indexes(&database), before);
}

#[tokio::test]
async fn a_retyped_serial_column_keeps_its_sequence() {
    let database = seeded(5).await;
    database.admin("ALTER TABLE models ADD COLUMN ticket serial");
    database
        .apply_text(
            &migration_support::SPEC.replace("\"legacy_note\"]", "\"legacy_note\", \"ticket\"]"),
        )
        .await;
    start_text(
        &database,
        "0002.toml",
        &retype("ticket", "bigint", "up = \"ticket::bigint\""),
    )
    .await
    .expect("starts");
    complete_now(&database).await.expect("completes");
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        lines(&v2, "SELECT ticket FROM models_v2 WHERE name = 'after'").await,
        ["6"]
    );
}

/// `models` with an `integer` serial key, 20 rows, v1 applied.
async fn serial_keyed() -> Database {
    let database = Database::start();
    database.admin(&migration_support::BASE.replace("bigserial", "serial"));
    database.apply_text(migration_support::SPEC).await;
    database.admin(
        "INSERT INTO models (name, size) SELECT 'model-' || n, n FROM generate_series(1, 20) AS n",
    );
    database
}

/// The migration that gives a table room to grow: its serial key from `integer` to `bigint`.
#[tokio::test]
async fn a_retyped_primary_key_stays_the_key_and_its_sequence_widens() {
    let database = serial_keyed().await;
    let before = indexes(&database);
    let sequence_type = || {
        database.admin(
            "SELECT seqtypid::regtype FROM pg_sequence
              WHERE seqrelid = pg_get_serial_sequence('models', 'id')::regclass",
        )
    };
    let migration = retype(
        "id",
        "bigint",
        "up = \"id::bigint\"\ndown = \"id::integer\"",
    );

    start_text(&database, "0002.toml", &migration)
        .await
        .expect("starts: the primary key is rebuilt on the new column");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(indexes(&database), before, "no rebuilt key is left");
    assert_eq!(sequence_type(), "integer");

    start_text(&database, "0002.toml", &migration)
        .await
        .expect("starts again");
    assert_eq!(
        database.admin(
            "SELECT string_agg(pg_get_indexdef(i.indexrelid) || ' valid=' || i.indisvalid, ', ')
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = 'public.models'::regclass AND c.relname LIKE '\\_vg\\_%'"
        ),
        "CREATE UNIQUE INDEX _vg_v2_models_pkey ON public.models USING btree (_vg_v2_id) valid=true",
        "the key has a unique twin on the new column, built before v2 went live"
    );
    let last_number = || database.admin("SELECT last_value FROM models_id_seq");
    assert_eq!(last_number(), "20");
    let (v1, v2) = insert_keyed_at_both_versions(&database).await;
    assert_eq!(
        last_number(),
        "22",
        "one number a row at either version: the new column has no default of its own while live"
    );
    for (client, table) in [(&v1, "models_v1"), (&v2, "models_v2")] {
        let duplicate = client
            .execute(
                &format!("INSERT INTO {table} (id, name) VALUES (1, 'dup')"),
                &[],
            )
            .await
            .expect_err("a duplicate key is refused at both versions");
        assert_eq!(
            duplicate.code().map(|code| code.code()),
            Some("23505"),
            "{duplicate}"
        );
    }
    exec(
        &v2,
        "INSERT INTO models_v2 (id, name) VALUES (1, 'upserted')
         ON CONFLICT (id) DO UPDATE SET name = excluded.name",
    )
    .await;
    assert_eq!(
        lines(&v1, "SELECT name FROM models_v1 WHERE id = 1").await,
        ["upserted"],
        "v2 upserts on its key"
    );

    complete_now(&database).await.expect("completes");
    assert_eq!(
        indexes(&database),
        before,
        "the primary key reads as before"
    );
    assert_eq!(
        base_columns(&database),
        "name:text!,size:integer!,legacy_note:text,id:bigint!",
        "the new column took the old one's place (last, physically; v2 lists it first)"
    );
    assert_eq!(
        sequence_type(),
        "bigint",
        "the sequence counts past integer"
    );
    database.admin("SELECT setval(pg_get_serial_sequence('models', 'id'), 3000000000)");
    let v2 = at(&database, "v2").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('past-int')").await;
    assert_eq!(
        lines(&v2, "SELECT id FROM models_v2 WHERE name = 'past-int'").await,
        ["3000000001"]
    );
}

/// A view that computes a column is written through triggers that find rows by the key: with
/// the key column replaced they would have none, so such a retype is refused, clearly.
#[tokio::test]
async fn a_key_retype_under_write_triggers_is_refused_before_any_change() {
    let database = seeded(5).await;
    database
        .apply_text(&migration_support::SPEC.replace(
            "\"legacy_note\"]",
            "{ name = \"legacy_note\", expr = \"coalesce(legacy_note, '')\", write = { legacy_note = \"NEW.legacy_note\" } }]",
        ))
        .await;
    let columns = base_columns(&database);
    let refused = start_text(&database, "0002.toml", &retype("id", "numeric", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(
            "column id is in the key by which the write triggers of version v2's view find rows"
        ),
        "{refused}"
    );
    assert_eq!(base_columns(&database), columns, "no column was added");
}

/// Another table's foreign key into a retyped key is made again into the new column once its
/// index is built, and takes the old one's place at complete; a rollback drops it.
#[tokio::test]
async fn a_retyped_key_keeps_the_foreign_keys_into_it() {
    let database = serial_keyed().await;
    database.admin(
        "CREATE TABLE parts (id serial PRIMARY KEY,
                             model integer NOT NULL REFERENCES models (id) ON DELETE CASCADE);
         INSERT INTO parts (model) SELECT n FROM generate_series(1, 20) AS n;",
    );
    let foreign_keys = || {
        database.admin(
            "SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid) || ' valid=' || convalidated,
                               E'\\n' ORDER BY conname)
               FROM pg_constraint WHERE conrelid = 'public.parts'::regclass AND contype = 'f'",
        )
    };
    let before = foreign_keys();
    assert_eq!(
        before,
        "parts_model_fkey FOREIGN KEY (model) REFERENCES models(id) ON DELETE CASCADE valid=true"
    );
    let migration = retype(
        "id",
        "bigint",
        "up = \"id::bigint\"\ndown = \"id::integer\"",
    );

    start_text(&database, "0002.toml", &migration)
        .await
        .expect("starts: the foreign key into the key is rebuilt");
    rollback_now(&database).await.expect("rolls back");
    assert_eq!(foreign_keys(), before, "no rebuilt foreign key is left");

    start_text(&database, "0002.toml", &migration)
        .await
        .expect("starts again");
    assert_eq!(
        foreign_keys(),
        "_vg_v2_parts_model_fkey FOREIGN KEY (model) REFERENCES models(_vg_v2_id) ON DELETE CASCADE valid=true\n\
         parts_model_fkey FOREIGN KEY (model) REFERENCES models(id) ON DELETE CASCADE valid=true",
        "a twin into the new column, validated before v2 went live"
    );
    let v2 = at(&database, "v2").await;
    let orphan = database
        .client()
        .await
        .execute("INSERT INTO parts (model) VALUES (999)", &[])
        .await
        .expect_err("a part of no model is refused");
    assert_eq!(orphan.code().map(|code| code.code()), Some("23503"));
    exec(&v2, "DELETE FROM models_v2 WHERE id = 3").await;
    assert_eq!(
        database.admin("SELECT count(*) FROM parts WHERE model = 3"),
        "0",
        "the delete cascades"
    );

    complete_now(&database).await.expect("completes");
    assert_eq!(
        foreign_keys(),
        before,
        "the foreign key reads as before, into the new column"
    );
    let orphan = database
        .client()
        .await
        .execute("INSERT INTO parts (model) VALUES (999)", &[])
        .await
        .expect_err("still refused");
    assert_eq!(orphan.code().map(|code| code.code()), Some("23503"));
}
