//! The replica identity a contract would take away: Postgres drops the index a table's
//! replica identity rests on with a column it covers, or by a drop of the index or its
//! constraint, without a word, and every UPDATE and DELETE of a published table fails from
//! then on (55000). Refused before any change, and at complete; with another identity chosen,
//! the same migration runs and the published table stays writable.

use crate::migration_support;

use migration_support::{at, base_columns, complete_now, seeded_publisher, start_text};
use viewgate::control::migrate::MigrateError;

/// The migration to v2 with `settings` (a `[settings]` body) and `operation`.
fn migration(settings: &str, operation: &str) -> String {
    format!(
        "version = \"v2\"\nfrom = \"v1\"\n[settings]\n{settings}\n[[operations]]\n{operation}\n"
    )
}

/// What a refusal names, asserting that it is one.
fn refused(error: MigrateError) -> String {
    match error {
        MigrateError::Unsafe { objects, .. } => objects,
        other => panic!("not refused as unsafe: {other}"),
    }
}

#[tokio::test]
async fn the_index_a_replica_identity_rests_on_is_not_dropped_by_the_contract() {
    let database = seeded_publisher(10).await;
    database.admin(
        "UPDATE models SET legacy_note = 'note-' || id;
         ALTER TABLE models ALTER COLUMN legacy_note SET NOT NULL;
         CREATE UNIQUE INDEX models_note ON models (legacy_note);
         ALTER TABLE models REPLICA IDENTITY USING INDEX models_note;
         CREATE PUBLICATION models_out FOR TABLE models",
    );
    let before = base_columns(&database);
    let drop_column = "op = \"drop_column\"\ntable = \"models\"\ncolumn = \"legacy_note\"\ndown = \"'note-' || id\"";
    // The publication would stream the dropped column to subscribers: they are ready here.
    let settings = "subscribers_ready = true";
    let chosen = "index models_note is its replica identity (REPLICA IDENTITY USING INDEX)";
    for operation in [drop_column, "op = \"drop_index\"\nname = \"models_note\""] {
        let error = start_text(&database, "0002.toml", &migration(settings, operation))
            .await
            .expect_err(operation);
        assert_eq!(refused(error), chosen, "{operation}");
        assert_eq!(base_columns(&database), before, "{operation}");
    }

    // The primary key is the identity of a table without a chosen one, here published.
    database.admin("ALTER TABLE models REPLICA IDENTITY DEFAULT");
    let error = start_text(
        &database,
        "0002.toml",
        &migration(
            "",
            "op = \"drop_constraint\"\ntable = \"models\"\nname = \"models_pkey\"",
        ),
    )
    .await
    .expect_err("the published table's key");
    assert!(
        refused(error).starts_with("index models_pkey, its primary key, is its replica identity"),
    );

    // FULL needs no index; the index chosen again after the start refuses the complete.
    database.admin("ALTER TABLE models REPLICA IDENTITY FULL");
    let text = migration(settings, drop_column);
    start_text(&database, "0002.toml", &text)
        .await
        .expect("starts under FULL");
    database.admin("ALTER TABLE models REPLICA IDENTITY USING INDEX models_note");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let error = complete_now(&database).await.expect_err("refused again");
    assert_eq!(refused(error), chosen);
    database.admin("ALTER TABLE models REPLICA IDENTITY FULL");
    complete_now(&database).await.expect("completes");
    assert!(!base_columns(&database).contains("legacy_note"));
    let v2 = at(&database, "v2").await;
    let updated = v2
        .execute("UPDATE models_v2 SET size = size + 1", &[])
        .await
        .expect("the published table takes updates");
    assert_eq!(updated, 10);
}
