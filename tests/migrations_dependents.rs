//! The application's objects that read a column or table the contract drops (a view, a
//! generated column, a trigger's WHEN, a policy, another table's foreign key) refuse the
//! migration before any change, and refuse its complete when made after the start: the
//! contract drops without CASCADE, so Postgres would refuse it (2BP01) and the migration,
//! started, could never complete.

use crate::migration_support;
use crate::support;

use migration_support::{at, base_columns, complete_now, seeded, start_text};
use support::{Database, lines};
use viewgate::control::migrate::status::plan;
use viewgate::control::migrate::{MigrateError, MigrationFile};

fn migration(operation: &str) -> String {
    format!("version = \"v2\"\nfrom = \"v1\"\n[[operations]]\n{operation}\n")
}

/// What a refusal names as reading the column or table, asserting that it is one.
fn readers(error: &MigrateError) -> String {
    match error {
        MigrateError::Unsafe { objects, .. } => objects.clone(),
        other => panic!("not refused as unsafe: {other}"),
    }
}

fn migrations_recorded(database: &Database) -> String {
    database.admin("SELECT count(*) FROM viewgate.migrations")
}

/// Starts the migration to v2 with `operation` and asserts that it is refused naming `named`
/// as what reads (or needs) what its contract drops, with nothing of it recorded.
async fn assert_refused_naming(database: &Database, operation: &str, named: &str) {
    let error = start_text(database, "0002.toml", &migration(operation))
        .await
        .expect_err(operation);
    assert_eq!(readers(&error), named, "{operation}");
    assert_eq!(migrations_recorded(database), "0", "{operation}");
}

/// Starts the migration to v2 in `text`, makes v2 the default and completes it.
async fn start_then_complete(database: &Database, text: &str) {
    start_text(database, "0002.toml", text)
        .await
        .expect("starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(database).await.expect("completes");
}

#[tokio::test]
async fn objects_reading_a_column_the_contract_drops_or_replaces_refuse_the_start() {
    let database = seeded(2).await;
    database.admin(
        "CREATE VIEW public.report AS SELECT id, legacy_note FROM models;
         ALTER TABLE models ADD COLUMN doubled bigint GENERATED ALWAYS AS (size * 2) STORED;
         CREATE FUNCTION public.keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
         CREATE TRIGGER named_change BEFORE UPDATE OF name ON models FOR EACH ROW
             EXECUTE FUNCTION public.keep();
         CREATE POLICY small ON models USING (size < 1000)",
    );
    let before = base_columns(&database);
    let cases = [
        (
            r#"op = "drop_column"
table = "models"
column = "legacy_note""#,
            "column legacy_note is read by view report",
        ),
        (
            r#"op = "alter_column"
table = "models"
column = "size"
type = "bigint""#,
            "column size is read by generated column doubled of models, policy small on table models",
        ),
        (
            r#"op = "split_column"
table = "models"
column = "name"
down = "first || ' ' || last"
into = [
    { column = { name = "first", type = "text" }, up = "split_part(name, ' ', 1)" },
    { column = { name = "last", type = "text" }, up = "split_part(name, ' ', 2)" },
]"#,
            "column name is read by trigger named_change on table models",
        ),
    ];
    for (operation, named) in cases {
        assert_refused_naming(&database, operation, named).await;
        assert_eq!(base_columns(&database), before, "{operation}");
    }
    // Once nothing reads the column, the same migration runs to its end.
    database.admin("DROP VIEW public.report");
    start_then_complete(&database, &migration(cases[0].0)).await;
    assert!(!base_columns(&database).contains("legacy_note"));
}

#[tokio::test]
async fn a_table_the_contract_drops_is_refused_while_another_object_reads_it() {
    let database = seeded(2).await;
    database.admin(
        "CREATE TABLE public.old_log (id bigserial PRIMARY KEY, line text);
         CREATE FUNCTION public.keep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
         CREATE TRIGGER own BEFORE UPDATE OF line ON old_log FOR EACH ROW EXECUTE FUNCTION public.keep();
         CREATE VIEW public.recent_lines AS SELECT line FROM old_log;
         CREATE TABLE public.log_marks (id int PRIMARY KEY, log_id bigint REFERENCES old_log (id))",
    );
    database
        .apply_text(
            r#"
[[tables]]
name = "models"
key = ["id"]
[[tables]]
name = "old_log"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note"]
[[versions.tables]]
base = "old_log"
columns = ["id", "line"]
"#,
        )
        .await;
    let drop = "op = \"drop_table\"\ntable = \"old_log\"";
    // The table's own trigger goes with it; the view and the other table's key would not.
    assert_refused_naming(
        &database,
        drop,
        "the table is read by constraint log_marks_log_id_fkey on table log_marks, view recent_lines",
    )
    .await;
    database.admin("DROP VIEW public.recent_lines; DROP TABLE public.log_marks");
    start_then_complete(&database, &migration(drop)).await;
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_class WHERE relname = 'old_log'"),
        "0"
    );
}

/// A view made while the migration is live refuses its complete the same way, which changes
/// nothing; dropped, the complete runs.
#[tokio::test]
async fn a_view_made_after_the_start_refuses_the_complete_until_it_goes() {
    let database = seeded(2).await;
    start_text(
        &database,
        "0002.toml",
        &migration("op = \"drop_column\"\ntable = \"models\"\ncolumn = \"legacy_note\""),
    )
    .await
    .expect("starts");
    database.admin("CREATE VIEW public.report AS SELECT id, legacy_note FROM models");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let error = complete_now(&database).await.expect_err("refused");
    assert_eq!(readers(&error), "column legacy_note is read by view report");
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "live"
    );
    let v1 = at(&database, "v1").await;
    assert_eq!(
        lines(&v1, "SELECT count(*) FROM models_v1").await,
        ["2"],
        "v1 still served"
    );
    drop(v1);
    database.admin("DROP VIEW public.report");
    complete_now(&database).await.expect("completes");
    assert!(!base_columns(&database).contains("legacy_note"));
}

/// viewgate's own objects do not count: here the old version's trigger-backed view, whose
/// expression column reads the dropped column (the contract drops the view first).
#[tokio::test]
async fn the_old_versions_own_views_do_not_count() {
    let database = Database::start();
    database.admin(migration_support::BASE);
    database.admin("INSERT INTO models (name, legacy_note) VALUES ('first', 'note')");
    database
        .apply_text(
            r#"
[[tables]]
name = "models"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note", { name = "shouted_note", expr = "upper(legacy_note)" }]
"#,
        )
        .await;
    let text = migration(
        "op = \"drop_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"\n[[operations]]\nop = \"drop_column\"\ntable = \"models\"\ncolumn = \"shouted_note\"",
    );
    start_then_complete(&database, &text).await;
    assert!(!base_columns(&database).contains("legacy_note"));
}

/// An index or unique constraint the contract drops while a constraint owns the index or
/// another table's foreign key references through it: Postgres refuses the drop (2BP01). A
/// `drop_index` runs after the contract commits, and its failure left the index behind a
/// completed migration; a `drop_constraint` failed the contract every time.
#[tokio::test]
async fn an_index_or_key_the_contract_drops_is_refused_while_something_needs_it() {
    let database = seeded(2).await;
    database.admin(
        "ALTER TABLE models ADD CONSTRAINT models_name_key UNIQUE (name);
         CREATE UNIQUE INDEX models_size_idx ON models (size);
         CREATE TABLE public.named (id int PRIMARY KEY,
             model_name text REFERENCES models (name), model_size int REFERENCES models (size))",
    );
    for (operation, named) in [
        (
            "op = \"drop_index\"\nname = \"models_pkey\"",
            "index models_pkey is needed by constraint models_pkey on table models",
        ),
        (
            "op = \"drop_index\"\nname = \"models_size_idx\"",
            "index models_size_idx is needed by constraint named_model_size_fkey on table named",
        ),
        (
            "op = \"drop_constraint\"\ntable = \"models\"\nname = \"models_name_key\"",
            "constraint models_name_key is needed by constraint named_model_name_fkey on table named",
        ),
    ] {
        assert_refused_naming(&database, operation, named).await;
    }
    // The table the index is on, which the operation does not name (it said "table public").
    let error = start_text(
        &database,
        "0002.toml",
        &migration("op = \"drop_index\"\nname = \"models_size_idx\""),
    )
    .await
    .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("table public.models: index models_size_idx is needed by"),
        "{error}"
    );
    database.admin("DROP TABLE public.named");
    start_then_complete(
        &database,
        &migration("op = \"drop_index\"\nname = \"models_size_idx\""),
    )
    .await;
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_class WHERE relname = 'models_size_idx'"),
        "0"
    );
}

/// A sequence the contract drops with its column (a serial's, owned by it) or its table, while
/// another table's default or a view calls it: Postgres refuses the drop (2BP01), and the
/// migration, seen started without this check, failed its complete every time.
#[tokio::test]
async fn a_sequence_the_contract_drops_is_refused_while_something_else_calls_it() {
    let database = migration_support::with_serial_ticket().await;
    database.admin(
        "INSERT INTO models (name) VALUES ('first');
         CREATE TABLE public.queue (n integer DEFAULT nextval('models_ticket_seq'));
         CREATE VIEW public.next_ticket AS SELECT nextval('models_ticket_seq')",
    );
    let drop_column = "op = \"drop_column\"\ntable = \"models\"\ncolumn = \"ticket\"";
    let before = base_columns(&database);
    assert_refused_naming(
        &database,
        drop_column,
        "column ticket's sequence models_ticket_seq is called by default value for column n of table queue, view next_ticket",
    )
    .await;
    assert_eq!(base_columns(&database), before);
    // The table's own sequences go with it: its id's too.
    database.admin("CREATE VIEW public.next_id AS SELECT nextval('models_id_seq')");
    assert_refused_naming(
        &database,
        "op = \"drop_table\"\ntable = \"models\"",
        "the table's sequence models_id_seq is called by view next_id",
    )
    .await;
    // A column's own default does not count, nor another sequence's callers.
    database.admin("DROP VIEW public.next_ticket");
    database.admin("ALTER SEQUENCE models_ticket_seq OWNED BY NONE");
    start_then_complete(&database, &migration(drop_column)).await;
    assert!(!base_columns(&database).contains("ticket"));
    database.admin("INSERT INTO queue DEFAULT VALUES");
    assert_eq!(
        database.admin("SELECT n FROM queue"),
        "2",
        "the sequence counts on"
    );
}

/// A rollback Postgres refuses (here: a view of the application's reads the column the expand
/// added) changes nothing: the new version keeps its unique index, which the rollback dropped
/// first until 2026-12-05, leaving v2 live without it while the error said nothing changed.
#[tokio::test]
async fn a_rollback_that_fails_leaves_the_new_version_whole() {
    let database = seeded(5).await;
    start_text(
        &database,
        "0002.toml",
        &migration(
            "op = \"add_column\"\ntable = \"models\"\nup = \"'c' || id\"\n\
             column = { name = \"code\", type = \"text\", unique = true }",
        ),
    )
    .await
    .expect("starts");
    database.admin("CREATE VIEW public.codes AS SELECT code FROM models");
    let indexes = || {
        database.admin(
            "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index
              WHERE indrelid = 'models'::regclass",
        )
    };
    assert_eq!(indexes(), "models_pkey,models_code_key");

    let refused = migration_support::rollback_now(&database)
        .await
        .expect_err("Postgres refuses the drop")
        .to_string();
    assert!(
        refused.contains("view codes depends on column code of table models")
            && refused.contains("nothing was changed"),
        "{refused}"
    );
    assert_eq!(indexes(), "models_pkey,models_code_key", "the index stays");
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "live"
    );
    let v2 = at(&database, "v2").await;
    let duplicate = v2
        .execute(
            "INSERT INTO models_v2 (name, code) VALUES ('again', 'c1')",
            &[],
        )
        .await
        .expect_err("v2's code stays unique");
    assert_eq!(duplicate.code().map(|code| code.code()), Some("23505"));
    drop(v2);

    database.admin("DROP VIEW public.codes");
    migration_support::rollback_now(&database)
        .await
        .expect("rolls back");
    assert_eq!(indexes(), "models_pkey");
    assert!(!base_columns(&database).contains("code"));
}

/// `migrate plan` names what Postgres drops by itself with a dropped column: a composite index
/// over it goes whole, and a check of it; an index of other columns stays. The contract then
/// runs and drops them so.
#[tokio::test]
async fn the_plan_names_what_goes_with_a_dropped_column() {
    let database = seeded(2).await;
    database.admin(
        "CREATE INDEX models_name_note ON models (name, legacy_note);
         CREATE INDEX models_size ON models (size);
         ALTER TABLE models ADD CONSTRAINT note_short CHECK (length(legacy_note) < 100)",
    );
    let text = migration("op = \"drop_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"");
    let file = MigrationFile::load(&database.spec_file("0002.toml", &text)).expect("loads");
    let mut client = database.client().await;
    let report = plan(&mut client, &file).await.expect("plans");
    assert_eq!(
        report.taken_along,
        [
            "constraint note_short on table models (with column legacy_note)",
            "index models_name_note (with column legacy_note)"
        ]
    );
    assert!(
        report.to_string().contains(
            "-- and Postgres drops with the dropped columns, by itself: constraint note_short"
        ),
        "{report}"
    );
    // A check reads the column too, but goes with it: no reason to refuse (until 2026-12-05
    // it was refused as a reader).
    drop(client);
    start_then_complete(&database, &text).await;
    assert_eq!(
        database.admin(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
              WHERE relname IN ('models_name_note', 'models_size')"
        ),
        "models_size"
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_constraint WHERE conname = 'note_short'"),
        "0"
    );
}
