//! A backfill's WAL and the replication slots nobody reads: with `max_slot_wal_keep_size`
//! unlimited, an inactive slot keeps every segment the backfill writes, and a disk that fills
//! stops the database. Such a migration is refused before any change, unless the file says the
//! disk has room; a migration that backfills nothing, or a bound on what slots keep, is no
//! reason to refuse.

use crate::migration_support;

use migration_support::{
    KillAfter, base_columns, rollback_now, seeded, start_killed, start_text, wait_until,
};
use viewgate::control::migrate::MigrationFile;

/// Adds a column filled from another, with `settings` (a `[settings]` body).
fn backfilling(settings: &str) -> String {
    format!(
        "version = \"v2\"\nfrom = \"v1\"\n[settings]\n{settings}\n[[operations]]\nop = \"add_column\"\n\
         table = \"models\"\nup = \"upper(name)\"\ncolumn = {{ name = \"label\", type = \"text\" }}\n"
    )
}

#[tokio::test]
async fn an_inactive_slot_keeping_wal_without_bound_refuses_a_backfill_before_any_change() {
    let database = seeded(100).await;
    database.admin("SELECT pg_create_physical_replication_slot('gone_standby', true)");
    let columns = base_columns(&database);

    let refused = start_text(&database, "0002.toml", &backfilling(""))
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        refused.contains("table public.models (")
            && refused.contains("replication slot gone_standby (physical, inactive, keeping ")
            && refused.contains("a disk that fills stops the database"),
        "{refused}"
    );
    assert_eq!(base_columns(&database), columns, "no column was added");
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations"),
        "0"
    );

    // Nothing to backfill: nothing to refuse.
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"add_column\"\ntable = \"models\"\n\
         column = { name = \"label\", type = \"text\" }\n",
    )
    .await
    .expect("a column without a backfill starts");
    rollback_now(&database).await.expect("rolls back");

    // The file says the disk has room.
    start_text(
        &database,
        "0002.toml",
        &backfilling("inactive_slots_ok = true"),
    )
    .await
    .expect("starts when told the disk has room");
    rollback_now(&database).await.expect("rolls back");

    // A bound on what slots keep: past it Postgres gives up the slot, not the disk.
    database.admin("ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'");
    database.admin("SELECT pg_reload_conf()");
    wait_until("the bound is in force", || {
        database.admin("SHOW max_slot_wal_keep_size") == "1GB"
    });
    start_text(&database, "0002.toml", &backfilling(""))
        .await
        .expect("starts under a bound");
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE label = upper(name)"),
        "100"
    );
}

/// A killed backfill resumed beside an inactive slot made since is refused the same way, and
/// stays where it stopped; with the slot gone, it goes on from there.
#[tokio::test]
async fn a_resumed_backfill_is_refused_beside_an_inactive_slot_made_since() {
    let database = seeded(1000).await;
    let text = backfilling("batch_size = 100");
    let file = MigrationFile::load(&database.spec_file("0002.toml", &text)).expect("loads");
    start_killed(&database, &file, &mut KillAfter(300)).await;
    let backfilled =
        || database.admin("SELECT backfill -> 'public.models' ->> 'rows' FROM viewgate.migrations");
    assert_eq!(backfilled(), "300");

    database.admin("SELECT pg_create_physical_replication_slot('gone_standby', true)");
    let refused = start_text(&database, "0002.toml", &text)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        refused.contains("replication slot gone_standby (physical, inactive"),
        "{refused}"
    );
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations"),
        "backfilling"
    );
    assert_eq!(backfilled(), "300", "not a row more");

    database.admin("SELECT pg_drop_replication_slot('gone_standby')");
    let resumed = start_text(&database, "0002.toml", &text)
        .await
        .expect("resumes");
    assert_eq!(resumed.how, "resumed");
    assert_eq!(
        database.admin("SELECT count(*) FROM models WHERE label = upper(name)"),
        "1000"
    );
}
