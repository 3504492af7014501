//! A migration against the database's defaults and the application's locks, which are not its
//! own: a `statement_timeout` and a serializable `default_transaction_isolation` set on the
//! database (a backfill batch or an index build cancelled after the whole backfill, batches
//! failing as the writers' serialization pivots), and a row an application transaction holds
//! while a batch reaches it (the batch kept every row it had locked before, and a writer of
//! one waited as long as the application's transaction).

use crate::migration_support;

use migration_support::{seeded, start_text, start_watched};
use viewgate::control::migrate::Progress;

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

/// Progress that, when the backfill begins, runs an application transaction holding row 1500
/// for 3 s and, a second in, a writer of row 1450 (in the same batch, before it) that waits
/// at most a second for its lock.
struct HolderAndWriter {
    conninfo: String,
    running: Vec<std::process::Child>,
}

impl HolderAndWriter {
    fn psql(&self, sql: &str) -> std::process::Child {
        std::process::Command::new("psql")
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
            .expect("psql runs")
    }
}

impl Progress for HolderAndWriter {
    fn step(&mut self, description: &str) {
        if description.starts_with("backfill ") {
            let holder =
                self.psql("BEGIN; SELECT 1 FROM models WHERE id = 1500 FOR UPDATE; SELECT pg_sleep(3); COMMIT");
            let writer = self.psql(
                "SET lock_timeout = '1s'; SELECT pg_sleep(1);
                 UPDATE models SET size = size + 1 WHERE id = 1450",
            );
            self.running = vec![holder, writer];
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
    let mut progress = HolderAndWriter {
        conninfo: database.url(),
        running: Vec::new(),
    };
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
        &mut progress,
    )
    .await
    .expect("the migration runs");
    assert_eq!(outcome.rows_backfilled, 2000);
    let [holder, writer] = <[_; 2]>::try_from(progress.running).expect("both ran");
    let holder = holder.wait_with_output().expect("holder ends");
    let writer = writer.wait_with_output().expect("writer ends");
    assert!(
        holder.status.success(),
        "{}",
        String::from_utf8_lossy(&holder.stderr)
    );
    assert!(
        writer.status.success(),
        "the writer of a row in the blocked batch: {}",
        String::from_utf8_lossy(&writer.stderr)
    );
    assert_eq!(
        database.admin(
            "SELECT count(*) FILTER (WHERE label IS NULL) || ':' || max(label) FILTER (WHERE id = 1500) FROM models"
        ),
        "0:MODEL-1500"
    );
}
