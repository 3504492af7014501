//! A writer at an older version cannot make a migration's sync triggers hand it another
//! version's values, against a real Postgres: not through a type it makes in its own temporary
//! schema (which Postgres searches first for types), nor through the text of an error a
//! trigger raises, caught where the proxy cannot see it (found by the thirty-eighth red-team
//! pass). Clients here connect directly and set `viewgate.version` as the proxy does.

use crate::migration_support;
use crate::support;

use migration_support::{at, seeded, start_text};
use support::exec;

const ADD_TAG: &str = r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "name::text || '/' || coalesce(legacy_note, '')::text"
column = { name = "tag", type = "text" }
"#;

#[tokio::test]
async fn a_temporary_type_never_stands_in_for_the_triggers_own() {
    let database = seeded(3).await;
    start_text(&database, "0002.toml", ADD_TAG)
        .await
        .expect("the migration runs");
    let v1 = at(&database, "v1").await;
    exec(
        &v1,
        "CREATE TEMP TABLE seen (value text);
         CREATE FUNCTION pg_temp.see(value pg_catalog.text) RETURNS boolean
             LANGUAGE sql AS 'INSERT INTO pg_temp.seen VALUES (value) RETURNING true';
         CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.see(VALUE))",
    )
    .await;
    exec(&v1, "UPDATE models SET name = 'renamed' WHERE id = 1").await;
    let seen = v1
        .query_one("SELECT count(*) FROM pg_temp.seen", &[])
        .await
        .unwrap();
    assert_eq!(
        seen.get::<_, i64>(0),
        0,
        "the trigger cast through the client's type"
    );
    assert_eq!(
        database.admin("SELECT tag FROM models WHERE id = 1"),
        "renamed/",
        "the trigger computed with the catalog's text"
    );
}

#[tokio::test]
async fn a_failing_update_trigger_keeps_the_values_out_of_its_error() {
    let database = seeded(3).await;
    start_text(
        &database,
        "0002.toml",
        r#"
version = "v2"
from = "v1"
[[operations]]
op = "add_column"
table = "models"
up = "nullif(legacy_note, 'n/a')::integer"
column = { name = "note_number", type = "integer" }
"#,
    )
    .await
    .expect("the migration runs");
    // Written as the backfill writes, which no trigger acts on.
    database.admin(
        "SET viewgate.version = 'viewgate_backfill'; UPDATE models SET legacy_note = 'SECRET_NOTE' WHERE id = 2",
    );
    let v1 = at(&database, "v1").await;
    let error = v1
        .simple_query(
            "DO $$ BEGIN UPDATE models SET legacy_note = legacy_note || '' WHERE id = 2;
               EXCEPTION WHEN OTHERS THEN RAISE EXCEPTION 'caught: % (%)', SQLERRM, SQLSTATE; END $$",
        )
        .await
        .unwrap_err();
    let message = format!("{error:?}");
    assert!(
        message.contains("sync trigger failed") && message.contains("22P02"),
        "{message}"
    );
    assert!(!message.contains("SECRET_NOTE"), "{message}");
}
