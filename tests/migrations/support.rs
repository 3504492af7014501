//! Shared helpers of the migration tests: a seeded table and its v1 spec, clients at a version,
//! and the migrate commands run in-process.
#![allow(dead_code)]

use tokio_postgres::Client;
use viewgate::control::migrate::complete::{CompleteOutcome, complete};
use viewgate::control::migrate::rollback::{RollbackOutcome, rollback};
use viewgate::control::migrate::start::{StartOutcome, start};
use viewgate::control::migrate::status::{PlanReport, plan};
use viewgate::control::migrate::{MigrateError, MigrationFile, Progress, Silent};
use viewgate::control::templates::Templates;
use viewgate::pg_cluster::{ClusterOptions, ThrowawayCluster};

use super::support::{Database, exec, lines};

pub const BASE: &str = "CREATE TABLE public.models (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    size integer NOT NULL DEFAULT 0,
    legacy_note text
);";

pub const SPEC: &str = r#"
[[tables]]
name = "models"
key = ["id"]

[[versions]]
name = "v1"
[[versions.tables]]
base = "models"
columns = ["id", "name", "size", "legacy_note"]
"#;

pub async fn seeded(rows: usize) -> Database {
    seeded_on(&ClusterOptions::default(), rows).await
}

/// [`seeded`] on a cluster started with `options` (settings of its own).
pub async fn seeded_on(options: &ClusterOptions, rows: usize) -> Database {
    let database = Database {
        cluster: ThrowawayCluster::start(options).expect("cluster starts"),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    database.admin(BASE);
    database.apply_text(SPEC).await;
    database.admin(&format!(
        "INSERT INTO models (name, size) SELECT 'model-' || n, n FROM generate_series(1, {rows}) AS n"
    ));
    database
}

/// [`seeded`] on a cluster whose WAL carries logical decoding, so that it can publish.
pub async fn seeded_publisher(rows: usize) -> Database {
    seeded_on(
        &ClusterOptions {
            settings: vec!["wal_level = logical".into()],
            ..Default::default()
        },
        rows,
    )
    .await
}

/// Applies a spec whose one managed table `table`, keyed by `key`, has `columns` at v1.
pub async fn one_table_at_v1(database: &Database, table: &str, key: &str, columns: &[&str]) {
    let columns: Vec<String> = columns.iter().map(|column| format!("{column:?}")).collect();
    database
        .apply_text(&format!(
            "[[tables]]\nname = {table:?}\nkey = [{key:?}]\n\n[[versions]]\nname = \"v1\"\n\
             [[versions.tables]]\nbase = {table:?}\ncolumns = [{}]\n",
            columns.join(", ")
        ))
        .await;
}

/// [`BASE`] with a `ticket serial` column too (its sequence `models_ticket_seq`), all of it
/// at v1, no rows.
pub async fn with_serial_ticket() -> Database {
    let database = Database::start();
    database.admin(&BASE.replace("legacy_note text", "legacy_note text,\n    ticket serial"));
    one_table_at_v1(
        &database,
        "models",
        "id",
        &["id", "name", "size", "legacy_note", "ticket"],
    )
    .await;
    database
}

/// A client at `version`, as the proxy would make it.
/// What `migrate plan` shows for a migration file holding `text`.
pub async fn planned(database: &Database, text: &str) -> PlanReport {
    let file = MigrationFile::load(&database.spec_file("plan.toml", text)).expect("loads");
    plan(&mut database.client().await, &file)
        .await
        .expect("plans")
}

/// The SQL of each of the contract's steps in `report`.
pub fn contract_sql(report: &PlanReport) -> Vec<&str> {
    report
        .plan
        .complete
        .iter()
        .map(|step| step.sql.as_str())
        .collect()
}

pub async fn at(database: &Database, version: &str) -> Client {
    let client = database.client().await;
    exec(&client, &format!("SET viewgate.version = '{version}'")).await;
    client
}

pub async fn start_text(
    database: &Database,
    name: &str,
    text: &str,
) -> Result<StartOutcome, MigrateError> {
    start_watched(database, name, text, &mut Silent).await
}

/// `migrate start` of the migration `text` (written to file `name`), reporting to `progress`.
pub async fn start_watched(
    database: &Database,
    name: &str,
    text: &str,
    progress: &mut impl Progress,
) -> Result<StartOutcome, MigrateError> {
    let path = database.spec_file(name, text);
    let file = MigrationFile::load(&path)?;
    let mut client = database.client().await;
    let file_pace = (&file, &Default::default());
    start(&mut client, file_pace, &Templates::built_in(), progress).await
}

pub async fn complete_now(database: &Database) -> Result<(), MigrateError> {
    complete_watched(database, None, &mut Silent)
        .await
        .map(|_| ())
}

/// Runs `migrate complete` of `named` (or of the oldest live migration) on a session of its
/// own, telling `progress`.
pub async fn complete_watched(
    database: &Database,
    named: Option<&str>,
    progress: &mut impl Progress,
) -> Result<CompleteOutcome, MigrateError> {
    let mut client = database.client().await;
    complete(&mut client, &Templates::built_in(), named, progress).await
}

pub async fn rollback_now(database: &Database) -> Result<RollbackOutcome, MigrateError> {
    rollback_watched(database, &mut Silent).await
}

/// Runs `migrate rollback` of the newest live migration on a session of its own, telling
/// `progress`.
pub async fn rollback_watched(
    database: &Database,
    progress: &mut impl Progress,
) -> Result<RollbackOutcome, MigrateError> {
    let mut client = database.client().await;
    rollback(&mut client, &Templates::built_in(), None, progress).await
}

pub fn base_columns(database: &Database) -> String {
    database.admin(
        "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN '!' ELSE '' END, ',' ORDER BY attnum)
         FROM pg_attribute WHERE attrelid = 'public.models'::regclass AND attnum > 0 AND NOT attisdropped",
    )
}

pub fn triggers(database: &Database) -> String {
    database.admin("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.models'::regclass AND NOT tgisinternal")
}

/// A migration to v2 that changes the type of `column` of `models` (a new column, swapped in
/// at complete), with `extra` lines for the operation (`up = …`, `nullable = …`).
pub fn retype(column: &str, sql_type: &str, extra: &str) -> String {
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

/// A progress that kills `migrate start` (a panic) once the backfill has committed this many
/// rows, as a process killed between batches.
pub struct KillAfter(pub u64);

impl Progress for KillAfter {
    fn step(&mut self, _description: &str) {}
    fn backfill(&mut self, _table: &str, rows: u64, _estimate: u64, _rate: f64) {
        assert!(rows < self.0, "killed mid-backfill");
    }
}

/// Runs `migrate start` of `file` on a session of its own until `kill` kills it, then ends
/// what the killed process's session held (its advisory locks).
pub async fn start_killed(database: &Database, file: &MigrationFile, kill: &mut KillAfter) {
    let mut client = database.client().await;
    let templates = Templates::built_in();
    let killed = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(start(
        &mut client,
        (file, &Default::default()),
        &templates,
        kill,
    )))
    .await;
    client
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .expect("locks released");
    assert!(killed.is_err(), "the run was killed");
}

/// A progress that kills `migrate start` (a panic) when it announces a step whose description
/// contains the text, as a process killed as that step begins.
pub struct KillAtStep(pub &'static str);

impl Progress for KillAtStep {
    fn step(&mut self, description: &str) {
        assert!(!description.contains(self.0), "killed at {description}");
    }
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
}

/// Runs `migrate start` of `text` until `kill` kills it, then ends every other session.
pub async fn start_killed_at_step(
    database: &Database,
    name: &str,
    text: &str,
    mut kill: KillAtStep,
) {
    killed_then_ended(database, start_watched(database, name, text, &mut kill)).await;
}

/// Runs `migrate rollback` until `kill` kills it, then ends every other session.
pub async fn rollback_killed_at_step(database: &Database, mut kill: KillAtStep) {
    killed_then_ended(database, rollback_watched(database, &mut kill)).await;
}

/// Runs `migrate complete` until `kill` kills it, then ends every other session.
pub async fn complete_killed_at_step(database: &Database, mut kill: KillAtStep) {
    killed_then_ended(database, complete_watched(database, None, &mut kill)).await;
}

/// Awaits `command` until a [`KillAtStep`] kills it (a panic), then ends every other session
/// (what the killed process's held: its advisory locks).
async fn killed_then_ended<T>(database: &Database, command: impl Future<Output = T>) {
    let killed = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(command)).await;
    assert!(killed.is_err(), "the run was killed");
    database.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'");
}

/// Waits (30 s at most) until `done`, checked every 50 ms.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Inserts a row through v1 and one through v2 of `models`, neither giving its key, and checks
/// that each has one key, read alike at both versions; returns the two clients.
pub async fn insert_keyed_at_both_versions(database: &Database) -> (Client, Client) {
    let v1 = at(database, "v1").await;
    let v2 = at(database, "v2").await;
    exec(&v1, "INSERT INTO models_v1 (name) VALUES ('v1-new')").await;
    exec(&v2, "INSERT INTO models_v2 (name) VALUES ('v2-new')").await;
    for name in ["v1-new", "v2-new"] {
        let read = format!("SELECT id FROM models_v1 WHERE name = '{name}'");
        assert_eq!(
            lines(&v1, &read).await,
            lines(&v2, &read.replace("_v1", "_v2")).await,
            "{name} has one key, read alike at both versions"
        );
    }
    (v1, v2)
}
