//! A migration's own definitions are there for its checks: a type or sequence the file's
//! `raw_sql` makes, used by an operation after it in the same file (text to an enum; the
//! sequence a new column is numbered by), passes `migrate plan` and `migrate start` and
//! leaves nothing behind when refused or rolled back. Against a real Postgres, migrations run
//! in-process.

use crate::migration_support;
use crate::support;

use migration_support::{at, base_columns, complete_now, rollback_now, seeded, start_text};
use support::{Database, exec, lines};
use viewgate::control::migrate::MigrationFile;
use viewgate::control::migrate::status::plan;

/// `legacy_note` of `models` from text to an enum the same file makes.
const NOTE_TO_ENUM: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "raw_sql"
up = "CREATE TYPE note_state AS ENUM ('new', 'done')"
down = "DROP TYPE note_state"
[[operations]]
op = "alter_column"
table = "models"
column = "legacy_note"
type = "note_state"
up = "legacy_note::note_state"
down = "legacy_note::text"
"#;

fn note_state_exists(database: &Database) -> String {
    database.admin("SELECT to_regtype('note_state') IS NOT NULL")
}

#[tokio::test]
async fn a_column_becomes_an_enum_the_same_file_makes() {
    let database = seeded(3).await;
    database
        .admin("UPDATE models SET legacy_note = CASE id WHEN 1 THEN 'new' WHEN 2 THEN 'done' END");
    let before = base_columns(&database);

    let file = MigrationFile::load(&database.spec_file("0002.toml", NOTE_TO_ENUM)).expect("loads");
    let report = plan(&mut database.client().await, &file)
        .await
        .expect("plans: the type is made for the checks");
    assert!(
        report.to_string().contains("CREATE TYPE note_state"),
        "{report}"
    );
    assert_eq!(note_state_exists(&database), "f", "the plan left nothing");

    start_text(&database, "0002.toml", NOTE_TO_ENUM)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(
        &v1,
        "INSERT INTO models_v1 (name, legacy_note) VALUES ('by v1', 'done')",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO models_v2 (name, legacy_note) VALUES ('by v2', 'new')",
    )
    .await;
    let bogus = v2
        .execute(
            "INSERT INTO models_v2 (name, legacy_note) VALUES ('bogus', 'lost')",
            &[],
        )
        .await
        .expect_err("not a value of the enum");
    assert_eq!(bogus.code().map(|code| code.code()), Some("22P02"));
    let read = "SELECT name || ' ' || coalesce(legacy_note::text, '-') FROM models_vN ORDER BY id";
    let expected = [
        "model-1 new",
        "model-2 done",
        "model-3 -",
        "by v1 done",
        "by v2 new",
    ];
    assert_eq!(lines(&v1, &read.replace("vN", "v1")).await, expected);
    assert_eq!(lines(&v2, &read.replace("vN", "v2")).await, expected);

    rollback_now(&database).await.expect("rolls back");
    assert_eq!(
        note_state_exists(&database),
        "f",
        "the type is dropped after the column that took it"
    );
    assert_eq!(base_columns(&database), before);

    start_text(&database, "0002.toml", NOTE_TO_ENUM)
        .await
        .expect("starts again");
    complete_now(&database).await.expect("completes");
    assert_eq!(
        database.admin("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'legacy_note'"),
        "note_state"
    );
    let v2 = at(&database, "v2").await;
    assert_eq!(
        lines(
            &v2,
            "SELECT legacy_note::text FROM models_v2 WHERE id <= 2 ORDER BY id"
        )
        .await,
        ["new", "done"]
    );
}

#[tokio::test]
async fn a_new_column_is_numbered_by_the_sequence_the_same_file_makes() {
    // docs/migrations.md's way to add a serial column without rewriting the table.
    let database = seeded(3).await;
    let migration = r#"
version = "v2"
from = "v1"
[[operations]]
op = "raw_sql"
up = "CREATE SEQUENCE models_ticket_seq"
down = "DROP SEQUENCE models_ticket_seq"
[[operations]]
op = "add_column"
table = "models"
up = "nextval('models_ticket_seq')"
column = { name = "ticket", type = "bigint", nullable = false, default = "nextval('models_ticket_seq')" }
"#;
    start_text(&database, "0002.toml", migration)
        .await
        .expect("starts");
    let v1 = at(&database, "v1").await;
    let v2 = at(&database, "v2").await;
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('by v1')").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('by v2')").await;
    // A v1 insert takes one number: the column's default, which its sync trigger leaves be
    // since `up` computes the same (it took a second one, and the numbers had gaps).
    assert_eq!(
        lines(&v2, "SELECT ticket::text FROM models_v2 ORDER BY ticket").await,
        ["1", "2", "3", "4", "5"],
        "the backfill's, then each insert's"
    );
    complete_now(&database).await.expect("completes");
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('after')").await;
    assert_eq!(
        lines(
            &v2,
            "SELECT ticket::text FROM models_v2 WHERE name = 'after'"
        )
        .await,
        ["6"]
    );
    assert_eq!(
        database.admin(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'models'::regclass AND attname = 'ticket'"
        ),
        "t"
    );
}

#[tokio::test]
async fn a_raw_sql_that_does_more_than_define_is_not_run_before_the_checks() {
    let database = seeded(3).await;
    let migration = NOTE_TO_ENUM.replace(
        "up = \"CREATE TYPE note_state AS ENUM ('new', 'done')\"",
        "up = \"CREATE TYPE note_state AS ENUM ('new', 'done'); UPDATE models SET size = size + 1\"",
    );
    let refused = start_text(&database, "0002.toml", &migration)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        refused.contains("type \"note_state\" is not a type name"),
        "{refused}"
    );
    assert_eq!(note_state_exists(&database), "f");
    assert_eq!(
        database.admin("SELECT string_agg(size::text, ',' ORDER BY id) FROM models"),
        "1,2,3",
        "its UPDATE did not run"
    );
}
