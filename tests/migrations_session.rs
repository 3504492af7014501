//! A migration against the database's defaults and the application's locks, which are not its
//! own: a `statement_timeout` and a serializable `default_transaction_isolation` set on the
//! database (a backfill batch or an index build cancelled after the whole backfill, batches
//! failing as the writers' serialization pivots), a row an application transaction holds
//! while a batch reaches it (the batch kept every row it had locked before, and a writer of
//! one waited as long as the application's transaction), the waits of an index build and a
//! validation (and the contract's index drop), which block no writer, cut by a lock timeout,
//! an autovacuum in the way of the expand's and the contract's lock, and a database printing
//! floats rounded (the backfill reads its cursor back from text).

use crate::migration_support;

use crate::support::Database;
use migration_support::{
    KillAfter, complete_now, one_table_at_v1, seeded, seeded_on, start_killed, start_text,
    start_watched,
};
use viewgate::control::migrate::{MigrationFile, Progress};
use viewgate::pg_cluster::ClusterOptions;

/// The migration's session runs at read committed and with no statement, idle-session (or,
/// from 17, transaction) timeout, whatever the database says: each row records its backfill's
/// isolation, a batch that takes longer than the database's statement timeout completes, and
/// the pauses between batches outlast its idle-session timeout.
#[tokio::test]
async fn the_database_defaults_do_not_reach_the_migration() {
    let database = seeded(3).await;
    database.admin(
        "ALTER DATABASE postgres SET statement_timeout = '100ms';
         ALTER DATABASE postgres SET idle_session_timeout = '200ms';
         ALTER DATABASE postgres SET default_transaction_isolation = 'serializable';
         DO $$ BEGIN
             IF current_setting('server_version_num')::int >= 170000 THEN
                 ALTER DATABASE postgres SET transaction_timeout = '200ms';
             END IF;
         END $$",
    );
    let outcome = start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[settings]
batch_size = 1
batch_delay_ms = 400
[[operations]]
op = "add_column"
table = "models"
column = { name = "isolation", type = "text" }
up = "current_setting('transaction_isolation')"
[[operations]]
op = "add_column"
table = "models"
column = { name = "slow", type = "text" }
up = "(SELECT 'slept' FROM pg_sleep(0.3))"
"#,
    )
    .await
    .expect("the migration runs");
    assert_eq!(outcome.rows_backfilled, 3);
    assert_eq!(
        database.admin("SELECT string_agg(DISTINCT isolation || ':' || slow, ',') FROM models"),
        "read committed:slept"
    );
    assert_eq!(
        database.admin("SHOW default_transaction_isolation"),
        "serializable",
        "the database keeps its defaults for everyone else"
    );
}

/// Progress that, when the first step starting with `at` begins, runs each of `sessions` in
/// a psql session of its own, as the application's, and gives them a moment to take their
/// locks.
struct Beside {
    conninfo: String,
    at: &'static str,
    sessions: Vec<&'static str>,
    running: Vec<std::process::Child>,
}

impl Beside {
    fn new(database: &Database, at: &'static str, sessions: &[&'static str]) -> Self {
        Beside {
            conninfo: database.url(),
            at,
            sessions: sessions.to_vec(),
            running: Vec::new(),
        }
    }

    /// Waits for every session and asserts each succeeded.
    fn assert_all_succeeded(self) {
        assert_eq!(
            self.running.len(),
            self.sessions.len(),
            "the step was reached"
        );
        for (child, sql) in self.running.into_iter().zip(&self.sessions) {
            let output = child.wait_with_output().expect("psql ends");
            assert!(
                output.status.success(),
                "{sql}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Progress for Beside {
    fn step(&mut self, description: &str) {
        if description.starts_with(self.at) && self.running.is_empty() {
            for sql in &self.sessions {
                let child = std::process::Command::new("psql")
                    .args([
                        &self.conninfo,
                        "-X",
                        "-q",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-c",
                        sql,
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("psql runs");
                self.running.push(child);
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
}

/// A batch reaching a row an application transaction holds waits for it at most the
/// migration's `lock_timeout`, then lets go of every row it locked and tries again after a
/// backoff: a writer of another row of the batch is not kept waiting (it failed its 1 s lock
/// timeout before), and the batch fills the row once the transaction ends.
#[tokio::test]
async fn a_batch_behind_a_held_row_lets_the_other_rows_go() {
    let database = seeded(2000).await;
    let mut beside = Beside::new(
        &database,
        "backfill ",
        &[
            "BEGIN; SELECT 1 FROM models WHERE id = 1500 FOR UPDATE; SELECT pg_sleep(3); COMMIT",
            "SET lock_timeout = '1s'; SELECT pg_sleep(1);
             UPDATE models SET size = size + 1 WHERE id = 1450",
        ],
    );
    let outcome = start_watched(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[settings]
batch_size = 100
batch_delay_ms = 50
yield_to_writers = false
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
"#,
        &mut beside,
    )
    .await
    .expect("the migration runs");
    assert_eq!(outcome.rows_backfilled, 2000);
    beside.assert_all_succeeded();
    assert_eq!(
        database.admin(
            "SELECT count(*) FILTER (WHERE label IS NULL) || ':' || max(label) FILTER (WHERE id = 1500) FROM models"
        ),
        "0:MODEL-1500"
    );
}

/// Statements that wait without blocking the application's reads and writes wait as long as
/// they need: a concurrent index build waits for every transaction older than its snapshot
/// (a report holding one for 3 s), a validation for the lock autovacuum holds right after a
/// backfill (taken here by hand). Under the lock timeout each attempt timed out until they
/// ran out, and the migration failed after its whole backfill.
#[tokio::test]
async fn an_index_build_and_a_validation_wait_for_what_blocks_no_writer() {
    let migration = r#"version = "v2"
from = "v1"
[settings]
max_attempts = 3
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
[[operations]]
op = "create_index"
name = "models_label"
table = "models"
columns = ["label"]
"#;
    for (step, holder) in [
        (
            "build index models_label",
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM models; SELECT pg_sleep(3); COMMIT",
        ),
        (
            "validate ",
            "BEGIN; LOCK TABLE models IN SHARE UPDATE EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT",
        ),
    ] {
        let database = seeded(100).await;
        let mut beside = Beside::new(&database, step, &[holder]);
        start_watched(&database, "0002.toml", migration, &mut beside)
            .await
            .unwrap_or_else(|error| panic!("{step}: {error}"));
        beside.assert_all_succeeded();
        assert_eq!(
            database.admin(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'models_label'::regclass"
            ),
            "t"
        );
    }
}

/// Waits (up to a minute) until an autovacuum worker holds a lock on `models`.
async fn autovacuum_on_models(database: &Database) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while database.admin(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
          WHERE a.backend_type = 'autovacuum worker' AND l.relation = 'models'::regclass",
    ) == "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "autovacuum came to models"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An autovacuum holding the table (as one does for minutes on a large table, and right after
/// a backfill) was in the way of the expand's and the contract's lock: Postgres cancels it
/// only for a lock waited on for `deadlock_timeout`, longer than a migration waits, so each
/// attempt timed out until they ran out. Each attempt after the first cancels it (a superuser
/// here) and waits for it to let go. The autovacuum is made slow by the table's own cost
/// settings, and comes every second.
#[tokio::test]
async fn an_autovacuum_in_the_way_of_the_expand_and_the_contract_is_cancelled() {
    let database = seeded_on(
        &ClusterOptions {
            settings: vec!["autovacuum_naptime = 1".into()],
            ..ClusterOptions::default()
        },
        20000,
    )
    .await;
    database.admin(
        "ALTER TABLE models SET (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);
         UPDATE models SET size = size + 1",
    );
    autovacuum_on_models(&database).await;
    start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[settings]
max_attempts = 6
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
"#,
    )
    .await
    .expect("the expand cancels the autovacuum in its way");

    database.admin("UPDATE models SET size = size + 1");
    autovacuum_on_models(&database).await;
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database)
        .await
        .expect("the contract cancels the autovacuum in its way");
}

/// `migrate complete`'s `DROP INDEX CONCURRENTLY` (after the contract) waits for every
/// transaction that holds the table, which blocks no writer; under a database's own
/// `lock_timeout` it failed behind a report, the migration complete and the index left.
#[tokio::test]
async fn the_contracts_index_drop_waits_for_a_report() {
    let database = seeded(100).await;
    database.admin(
        "CREATE INDEX models_size ON models (size);
         ALTER DATABASE postgres SET lock_timeout = '10ms'",
    );
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"drop_index\"\nname = \"models_size\"",
    )
    .await
    .expect("starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    let mut report = Beside::new(
        &database,
        "",
        &["BEGIN; SELECT count(*) FROM models; SELECT pg_sleep(2); COMMIT"],
    );
    report.step(""); // every step starts with "": the report begins before the complete
    complete_now(&database)
        .await
        .expect("completes, the index dropped");
    report.assert_all_succeeded();
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_class WHERE relname = 'models_size'"),
        "0"
    );
}

/// The backfill's cursor and high-water mark are keys printed as text and read back, in the
/// migration's session: a database's `extra_float_digits = 0` printed a float key to 15
/// digits, and keys that differ only past them all came back as the smallest (seen: the
/// high-water mark read back as 1, and nine of the ten rows left unfilled, the migration
/// reported done). The migration's session prints every float in full, whatever the
/// database's (or the role's) output settings; a day-first `DateStyle` and the SQL-standard
/// interval style beside it change nothing either.
#[tokio::test]
async fn float_keys_are_read_back_exactly_whatever_the_output_settings() {
    let database = Database::start();
    database.admin(
        "CREATE TABLE public.readings (at float8 PRIMARY KEY, value integer NOT NULL);
         INSERT INTO readings
             SELECT 1::float8 + n * 2.220446049250313e-16::float8, n FROM generate_series(0, 9) AS n;
         ALTER DATABASE postgres SET extra_float_digits = 0;
         ALTER DATABASE postgres SET DateStyle = 'SQL, DMY';
         ALTER DATABASE postgres SET IntervalStyle = 'sql_standard'",
    );
    assert_eq!(
        database
            .admin("SELECT count(DISTINCT at) || ':' || count(DISTINCT at::text) FROM readings"),
        "10:1",
        "the keys are distinct, and print alike under the database's settings"
    );
    one_table_at_v1(&database, "readings", "at", &["at", "value"]).await;
    let outcome = start_text(
        &database,
        "0002.toml",
        r#"version = "v2"
from = "v1"
[settings]
batch_size = 3
[[operations]]
op = "add_column"
table = "readings"
column = { name = "doubled", type = "integer" }
up = "value * 2"
"#,
    )
    .await
    .expect("the migration runs");
    assert_eq!(outcome.rows_backfilled, 10);
    assert_eq!(
        database.admin(
            "SELECT count(*) FILTER (WHERE doubled IS DISTINCT FROM value * 2) FROM readings"
        ),
        "0"
    );
}

/// The backfill's cursor is a key printed as text in one run and read back in the next: a
/// date printed under a day-first `DateStyle` (`11/02/2025`) and read back after the
/// database's style became month-first is the second of November, and a resumed backfill
/// started there, the rows between left unfilled. The migration's session prints dates in
/// ISO, which reads back the same under any style.
#[tokio::test]
async fn a_resumed_backfill_reads_its_date_cursor_back_whatever_the_date_style_became() {
    let database = Database::start();
    database.admin(
        "CREATE TABLE public.days (day date PRIMARY KEY, value integer NOT NULL);
         INSERT INTO days SELECT DATE '2024-04-18' + n, n FROM generate_series(0, 999) AS n;
         ALTER DATABASE postgres SET DateStyle = 'SQL, DMY'",
    );
    one_table_at_v1(&database, "days", "day", &["day", "value"]).await;
    let text = r#"version = "v2"
from = "v1"
[settings]
batch_size = 100
[[operations]]
op = "add_column"
table = "days"
column = { name = "doubled", type = "integer" }
up = "value * 2"
"#;
    let file = MigrationFile::load(&database.spec_file("0002.toml", text)).expect("loads");
    start_killed(&database, &file, &mut KillAfter(300)).await;
    // The three batches done end on 2025-02-11.
    database.admin("ALTER DATABASE postgres SET DateStyle = 'SQL, MDY'");
    let outcome = start_text(&database, "0002.toml", text)
        .await
        .expect("resumes");
    assert_eq!(outcome.how, "resumed");
    assert_eq!(
        database
            .admin("SELECT count(*) FILTER (WHERE doubled IS DISTINCT FROM value * 2) FROM days"),
        "0",
        "every row is filled"
    );
}

/// When every attempt of the expand, or of the contract, times out on its lock, the error
/// names the sessions that held the table: here a report idle in its transaction.
#[tokio::test]
async fn a_lock_given_up_on_names_who_held_the_table() {
    let database = seeded(20).await;
    let text = r#"version = "v2"
from = "v1"
[settings]
max_attempts = 2
lock_timeout_ms = 20
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text" }
up = "upper(name)"
"#;
    let report = database.client().await;
    let hold = async || {
        report
            .batch_execute(
                "SET application_name = 'nightly_report'; BEGIN; SELECT count(*) FROM models",
            )
            .await
            .expect("the report reads");
    };
    let pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let named = format!(
        "held as the last attempt gave up by pid {pid} (nightly_report, user postgres, idle in transaction, in a transaction for "
    );
    hold().await;
    let refused = start_text(&database, "0002.toml", text)
        .await
        .expect_err("the report holds the table")
        .to_string();
    for expected in [
        "gave up after 2 attempts",
        named.as_str(),
        "AccessShareLock on public.models): SET application_name = 'nightly_report'; BEGIN; SELECT count(*) FROM models",
    ] {
        assert!(refused.contains(expected), "{expected} in: {refused}");
    }
    // While the attempts go on, each retry warns who holds the table now: an operator can end
    // the report before the command gives up.
    let cli = std::process::Command::new(crate::common::viewgate_binary())
        .arg("migrate")
        .arg("start")
        .arg(database.spec_file("0002.toml", text))
        .args(["--database", &database.url()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success(), "{stderr}");
    let warned =
        format!("held now by pid {pid} (nightly_report, user postgres, idle in transaction");
    assert!(
        stderr.contains("the last attempt waited for a lock on the migration's tables")
            && stderr.contains(&warned),
        "{warned} in: {stderr}"
    );
    report.batch_execute("COMMIT").await.expect("commits");
    start_text(&database, "0002.toml", text)
        .await
        .expect("starts once the report is done");

    hold().await;
    let refused = complete_now(&database)
        .await
        .expect_err("the report holds the table")
        .to_string();
    assert!(refused.contains(&named), "{named} in: {refused}");
    report.batch_execute("COMMIT").await.expect("commits");
    complete_now(&database).await.expect("completes");
}
