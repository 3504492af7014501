//! What a complete or rollback has left to run once its transaction committed (the concurrent
//! index drops): a command whose session ends while a drop waits leaves the index, and before
//! the catalog kept the drop, nothing knew it was owed. Each test ends the command's session
//! while its `DROP INDEX CONCURRENTLY` waits behind a reader's open transaction, then sees
//! `migrate status` name the drop and the next migration command run it.

use std::time::Duration;

use crate::common::{ProxyProcess, http, wait_until};
use crate::migration_support;
use crate::support::Database;

use migration_support::{
    KillAtStep, SPEC, complete_killed_at_step, complete_now, complete_watched, retype,
    rollback_killed_at_step, rollback_now, seeded, start_text,
};
use viewgate::control::migrate::status::status;
use viewgate::control::migrate::{MigrateError, Silent};

/// How long the watcher waits for the drop to queue.
const DROP_QUEUES_WITHIN: Duration = Duration::from_secs(30);

/// The migration to v2 made of `operation`.
fn migration(operation: &str) -> String {
    format!("version = \"v2\"\nfrom = \"v1\"\n[[operations]]\n{operation}\n")
}

fn index_count(database: &Database) -> String {
    database.admin("SELECT count(*) FROM pg_class WHERE relname = 'models_size_idx'")
}

/// Runs `command` while a reader holds `models` in an open transaction, ends the command's
/// session once its `DROP INDEX CONCURRENTLY` waits for that reader, and returns the
/// command's error; then lets the reader go.
async fn end_session_during_drop<T: std::fmt::Debug>(
    database: &Database,
    command: impl Future<Output = Result<T, MigrateError>>,
) -> MigrateError {
    let reader = database.client().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM models")
        .await
        .expect("the reader's transaction begins");
    let watcher = database.client().await;
    let watch = async {
        let deadline = std::time::Instant::now() + DROP_QUEUES_WITHIN;
        loop {
            let ended = watcher
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE query LIKE 'DROP INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .expect("pg_stat_activity is read");
            if !ended.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the drop never waited for the reader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (outcome, ()) = tokio::join!(command, watch);
    reader
        .batch_execute("COMMIT")
        .await
        .expect("the reader commits");
    outcome.expect_err("the command's session was ended during the drop")
}

/// The admin API's token of the proxy [`metrics_of_a_proxy`] starts.
const TOKEN: &str = "left-to-run-token";

/// `/metrics` of a proxy started on `database`'s catalog, once it reports what is left to run.
fn metrics_of_a_proxy(database: &Database) -> String {
    let catalog = database.url();
    let _proxy = ProxyProcess::start(
        &database.cluster,
        &[
            ("VIEWGATE_CATALOG", &catalog),
            ("VIEWGATE_ADMIN_LISTEN", "127.0.0.1:0"),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    let mut admin_port = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            admin_port = database
                .admin("SELECT coalesce(max(admin_listen), '') FROM viewgate.proxies")
                .rsplit(':')
                .next()
                .and_then(|port| port.parse::<u16>().ok());
            admin_port.is_some()
        }),
        "the proxy's heartbeat names its admin address"
    );
    let mut metrics = String::new();
    wait_until(Duration::from_secs(10), || {
        metrics = http::get(admin_port.unwrap_or_default(), "/metrics", Some(TOKEN)).1;
        metrics.contains("viewgate_migration_left_to_run{")
    });
    metrics
}

#[tokio::test]
async fn a_rollback_ended_before_its_index_drop_leaves_the_drop_to_the_next_command() {
    let database = seeded(20).await;
    let create_index = "op = \"create_index\"\nname = \"models_size_idx\"\ntable = \"models\"\ncolumns = [\"size\"]";
    start_text(&database, "0002.toml", &migration(create_index))
        .await
        .expect("the migration starts");
    assert_eq!(index_count(&database), "1");

    let error = end_session_during_drop(&database, rollback_now(&database)).await;
    let message = error.to_string();
    assert!(
        message.contains("the migration is rolled back")
            && message.contains("`viewgate migrate status` lists it"),
        "{message}"
    );
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations WHERE version = 'v2'"),
        "rolled_back"
    );
    assert_eq!(index_count(&database), "1", "the drop did not run");
    let report = status(&database.client().await)
        .await
        .expect("status reads");
    assert_eq!(report.left_to_run.len(), 1, "{report:?}");
    let shown = report.to_string();
    assert!(
        shown.contains("left to run after the rollback of the migration to v2")
            && shown.contains(r#"DROP INDEX CONCURRENTLY IF EXISTS "public"."models_size_idx""#),
        "{shown}"
    );

    // A proxy on the catalog says so in /metrics, read with its heartbeat.
    let metrics = metrics_of_a_proxy(&database);
    assert!(
        metrics.contains("viewgate_migration_left_to_run{version=\"v2\",after=\"rollback\"} 1"),
        "{metrics}"
    );

    // Any migration command runs it first; this one then finds nothing of its own to do.
    let error = complete_now(&database)
        .await
        .expect_err("nothing to complete");
    assert!(error.to_string().contains("no live migration"), "{error}");
    assert_eq!(index_count(&database), "0");
    let report = status(&database.client().await)
        .await
        .expect("status reads");
    assert!(report.left_to_run.is_empty(), "{report:?}");
}

/// The next migration, to v3, after the one to v2: a column added.
const V3: &str = "version = \"v3\"\nfrom = \"v2\"\n[[operations]]\nop = \"add_column\"\ntable = \"models\"\n[operations.column]\nname = \"score\"\ntype = \"integer\"\n";

/// A migration to v2 dropping index `models_size_idx`, started, then completed with the
/// session ended during its drop; the complete's error.
async fn complete_ended_during_drop() -> (Database, MigrateError) {
    let database = seeded(20).await;
    database.admin("CREATE INDEX models_size_idx ON models (size)");
    start_text(
        &database,
        "0002.toml",
        &migration("op = \"drop_index\"\nname = \"models_size_idx\""),
    )
    .await
    .expect("the migration starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let error = end_session_during_drop(&database, complete_now(&database)).await;
    (database, error)
}

#[tokio::test]
async fn a_complete_ended_before_its_index_drop_leaves_the_drop_to_the_next_command() {
    let (database, error) = complete_ended_during_drop().await;
    assert!(
        error
            .to_string()
            .contains("the migration is complete (v1 retired), and this is left (drop"),
        "{error}"
    );
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations WHERE version = 'v2'"),
        "completed"
    );
    assert_eq!(index_count(&database), "1", "the drop did not run");
    let shown = status(&database.client().await)
        .await
        .expect("status reads")
        .to_string();
    assert!(
        shown.contains("left to run after the complete of the migration to v2"),
        "{shown}"
    );

    // A new migration's start runs it before its own expand.
    start_text(&database, "0003.toml", V3)
        .await
        .expect("the next migration starts");
    assert_eq!(index_count(&database), "0");
    let report = status(&database.client().await)
        .await
        .expect("status reads");
    assert!(report.left_to_run.is_empty(), "{report:?}");
}

/// A drop that cannot run refuses the next command before it changes anything, naming what
/// left it; once the cause is gone, the same command runs it and goes on.
#[tokio::test]
async fn a_left_drop_that_fails_again_refuses_the_next_command_before_it_changes_anything() {
    let (database, _) = complete_ended_during_drop().await;

    // The index (left invalid by the drop's first step) made again, now a constraint's:
    // Postgres refuses its drop (2BP01).
    database.admin(
        "DROP INDEX models_size_idx;
         CREATE UNIQUE INDEX models_size_idx ON models (size);
         ALTER TABLE models ADD CONSTRAINT models_size_idx UNIQUE USING INDEX models_size_idx",
    );
    let before = migration_support::base_columns(&database);
    let error = start_text(&database, "0003.toml", V3)
        .await
        .expect_err("refused while the left drop fails");
    let message = error.to_string();
    assert!(
        message.contains("left by the complete of the migration to v2")
            && message.contains("nothing of this command was done"),
        "{message}"
    );
    assert_eq!(migration_support::base_columns(&database), before);
    assert_eq!(
        database.admin("SELECT count(*) FROM viewgate.migrations WHERE version = 'v3'"),
        "0"
    );

    database.admin(
        "ALTER TABLE models DROP CONSTRAINT models_size_idx;
         CREATE INDEX models_size_idx ON models (size)",
    );
    start_text(&database, "0003.toml", V3)
        .await
        .expect("the next migration starts once the drop can run");
    assert_eq!(index_count(&database), "0");
}

/// The contract's renames change what the version's catalog substitutes name (`size` is
/// `_vg_v2_size` until then): they are remade once it has committed, outside the window in
/// which it holds the table's lock, and kept as left to run until done, so a run killed first
/// leaves them to the next migration command.
#[tokio::test]
async fn the_catalog_substitutes_a_contract_renames_are_remade_after_it_even_when_killed() {
    let database = seeded(10).await;
    start_text(&database, "0002.toml", &retype("size", "bigint", ""))
        .await
        .expect("the migration starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_killed_at_step(&database, KillAtStep("remake the catalog substitutes")).await;
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations WHERE version = 'v2'"),
        "completed"
    );
    let shown = status(&database.client().await)
        .await
        .expect("status reads")
        .to_string();
    assert!(
        shown.contains("remake the catalog substitutes of version v2: its SQL (`viewgate migrate status --json` shows it)"),
        "{shown}"
    );

    let outcome = complete_watched(&database, Some("v2"), &mut Silent)
        .await
        .expect("what was left runs first");
    assert!(outcome.already_done);
    assert_eq!(
        database.admin(
            "SELECT data_type || ' ' || is_nullable FROM viewgate_catalog_v2.columns
              WHERE table_name = 'models' AND column_name = 'size'"
        ),
        "bigint NO"
    );
    assert_eq!(
        database.admin("SELECT left_to_run::text FROM viewgate.migrations WHERE version = 'v2'"),
        "[]"
    );
}

/// Nothing reads a retired version's catalog substitutes: they are dropped once the contract
/// has committed, not under the table's lock, and kept as left to run until done.
#[tokio::test]
async fn a_retired_versions_catalog_substitutes_are_dropped_after_the_contract_even_when_killed() {
    let database = seeded(10).await;
    start_text(&database, "0002.toml", &retype("size", "bigint", ""))
        .await
        .expect("the migration starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let v1_substitutes = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace WHERE nspname = 'viewgate_catalog_v1'";
    assert_eq!(database.admin(v1_substitutes), "1");
    complete_killed_at_step(
        &database,
        KillAtStep("drop the catalog substitutes of retired version v1"),
    )
    .await;
    assert_eq!(
        database.admin("SELECT state FROM viewgate.versions WHERE version = 'v1'"),
        "retired"
    );
    assert_eq!(
        database.admin(v1_substitutes),
        "1",
        "killed before the drop"
    );

    let outcome = complete_watched(&database, Some("v2"), &mut Silent)
        .await
        .expect("what was left runs first");
    assert!(outcome.already_done);
    assert_eq!(database.admin(v1_substitutes), "0");
    assert_eq!(
        database.admin("SELECT left_to_run::text FROM viewgate.migrations WHERE version = 'v2'"),
        "[]"
    );
}

/// A retired version applied anew before the drop of its old substitutes ran (the complete
/// killed first) keeps its new ones: the drop left to run looks at the catalog when it runs.
#[tokio::test]
async fn a_retired_version_applied_anew_keeps_its_substitutes_from_the_drop_left_to_run() {
    let database = seeded(10).await;
    start_text(&database, "0002.toml", &retype("size", "bigint", ""))
        .await
        .expect("the migration starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_killed_at_step(
        &database,
        KillAtStep("drop the catalog substitutes of retired version v1"),
    )
    .await;
    database.apply_text(SPEC).await;
    assert_eq!(
        database.admin("SELECT state FROM viewgate.versions WHERE version = 'v1'"),
        "active"
    );

    complete_watched(&database, Some("v2"), &mut Silent)
        .await
        .expect("what was left runs first");
    assert_eq!(
        database.admin(
            "SELECT pg_catalog.count(*) FROM viewgate_catalog_v1.columns WHERE table_name = 'models'"
        ),
        "4",
        "v1's new substitutes show its four columns"
    );
    assert_eq!(
        database.admin("SELECT left_to_run::text FROM viewgate.migrations WHERE version = 'v2'"),
        "[]"
    );
}

/// A rollback drops its version's catalog substitutes after its commit, not under the table's
/// lock; killed first, it leaves the drop to the next migration command.
#[tokio::test]
async fn a_rolled_back_versions_catalog_substitutes_are_dropped_after_the_rollback_even_when_killed()
 {
    let database = seeded(10).await;
    start_text(&database, "0002.toml", &retype("size", "bigint", ""))
        .await
        .expect("the migration starts");
    let v2_substitutes = "SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace WHERE nspname = 'viewgate_catalog_v2'";
    assert_eq!(database.admin(v2_substitutes), "1");
    rollback_killed_at_step(
        &database,
        KillAtStep("drop the catalog substitutes of rolled-back version v2"),
    )
    .await;
    assert_eq!(
        database.admin("SELECT phase FROM viewgate.migrations WHERE version = 'v2'"),
        "rolled_back"
    );
    assert_eq!(
        database.admin(v2_substitutes),
        "1",
        "killed before the drop"
    );

    let error = complete_now(&database)
        .await
        .expect_err("nothing to complete");
    assert!(error.to_string().contains("no live migration"), "{error}");
    assert_eq!(database.admin(v2_substitutes), "0");
    assert_eq!(
        database.admin("SELECT left_to_run::text FROM viewgate.migrations WHERE version = 'v2'"),
        "[]"
    );
}
