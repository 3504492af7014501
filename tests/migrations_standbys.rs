//! The backfill and the standbys: a streaming standby that falls further behind than the
//! migration allows (`max_replica_lag_ms`) makes the backfill wait, saying so, until it has
//! caught up; a real standby made from a copy of the test's cluster, its replay paused and
//! resumed. A logical subscriber that stops confirming is not waited for, and a standby is
//! seen only with the privilege to read its position.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use crate::migration_support;
use crate::support::Database;

use common::viewgate_binary;
use migration_support::{seeded, seeded_publisher, start_watched, wait_until};
use viewgate::control::migrate::Progress;
use viewgate::control::migrate::standbys::StandbyWatch;
use viewgate::control::migrate::state::Pacing;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

/// A backfill of 5,000 rows in batches of 100 with a pause between them: a few seconds long,
/// waiting for a standby more than a second behind.
const LABELLED: &str = r#"version = "v2"
from = "v1"
[settings]
batch_size = 100
batch_delay_ms = 50
yield_to_writers = false
max_replica_lag_ms = 1000
[[operations]]
op = "add_column"
table = "models"
column = { name = "label", type = "text", nullable = false }
up = "upper(name)"
"#;

/// Collects what the backfill says while it waits for a standby.
#[derive(Default)]
struct Waits(Vec<String>);

impl Progress for Waits {
    fn step(&mut self, _description: &str) {}
    fn backfill(&mut self, _table: &str, _rows: u64, _estimate: u64, _rate: f64) {}
    fn pacing(&mut self, _table: &str, pacing: &Pacing) {
        self.0.extend(pacing.waiting_for_standby.clone());
    }
}

/// `models` seeded with `rows` rows on a primary, and a streaming standby of it whose replay
/// is paused.
async fn primary_and_paused_standby(rows: usize) -> (Database, ThrowawayCluster) {
    let mut database = seeded(rows).await;
    let standby = ThrowawayCluster::standby_of(&mut database.cluster).expect("the standby starts");
    wait_until("the standby streams", || {
        database.admin("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1"
    });
    standby
        .psql("postgres", "SELECT pg_wal_replay_pause()")
        .expect("replay pauses");
    (database, standby)
}

/// A standby whose replay stops while the backfill runs falls behind; the backfill waits
/// once it is more than `max_replica_lag_ms` behind (`migrate status` says so meanwhile), and
/// goes on once it has caught up. Every row is filled, on the standby too.
#[tokio::test]
async fn the_backfill_waits_for_a_standby_that_falls_behind() {
    let (database, standby) = primary_and_paused_standby(5000).await;

    let primary = database.cluster.admin_conninfo("postgres");
    let url = database.cluster.url(SUPERUSER, "postgres");
    let psql = database.cluster.bin("psql");
    let standby_conninfo = standby.admin_conninfo("postgres");
    let during = std::thread::spawn(move || {
        let run = |conninfo: &str, sql: &str| {
            let output = Command::new(&psql)
                .args(["-X", "-q", "-A", "-t", "-d", conninfo, "-c", sql])
                .output()
                .expect("psql runs");
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut status = String::new();
        while !status.contains("waiting for standby") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            status = run(&primary, "SELECT backfill::text FROM viewgate.migrations");
        }
        let told = Command::new(viewgate_binary())
            .args(["migrate", "status", "--database", &url])
            .output()
            .expect("viewgate runs");
        run(&standby_conninfo, "SELECT pg_wal_replay_resume()");
        (status, String::from_utf8_lossy(&told.stdout).into_owned())
    });
    let mut waits = Waits::default();
    let outcome = start_watched(&database, "0002.toml", LABELLED, &mut waits)
        .await
        .expect("the migration runs");
    let (status, told) = during.join().expect("the checker ends");
    assert!(
        status.contains("waiting for standby walreceiver (local socket)"),
        "the checkpoint says what the backfill waits for: {status}"
    );
    assert!(
        told.contains("v1 -> v2: backfilling, run by the session of pid ")
            && told.contains("; waiting for standby walreceiver (local socket), "),
        "migrate status says the backfill runs, and what it waits for: {told}"
    );
    assert_eq!(outcome.rows_backfilled, 5000);
    let first = waits
        .0
        .first()
        .expect("the backfill waited for the standby");
    // Allowed the file's 1.0 s, and more by the lag Postgres reported for the standby when the
    // backfill first saw it (a loaded machine's standby may be 0.2 s behind by then).
    let allowed: f64 = first
        .strip_suffix(" s: the migration file's `max_replica_lag_ms`)")
        .and_then(|head| head.rsplit_once("s behind (over "))
        .and_then(|(_, allowed)| allowed.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(
        first.starts_with("waiting for standby walreceiver (local socket), ")
            && (1.0..2.0).contains(&allowed),
        "{first}"
    );

    // The throwaway clusters commit asynchronously (`synchronous_commit = off`): the last
    // batch's commit may not be written yet when the primary's write position is read, so the
    // standby is waited for until it has the rows themselves (it had 4,900 once, on 17).
    wait_until("the standby has every row filled", || {
        standby
            .psql(
                "postgres",
                "SELECT count(*) FILTER (WHERE label = upper(name)) FROM models",
            )
            .expect("the standby reads")
            == "5000"
    });
}

/// A logical consumer's position advances only as it confirms, which a CDC connector idle on
/// the tables it reads may not do for minutes: a subscriber whose apply worker stops
/// (SIGSTOP, while its walsender streams on) does not make the backfill wait.
#[tokio::test]
async fn a_logical_subscriber_that_stops_confirming_is_not_waited_for() {
    let database = seeded_publisher(5000).await;
    database.admin(
        "CREATE TABLE public.audit (id integer PRIMARY KEY);
         CREATE PUBLICATION audit FOR TABLE audit",
    );
    let subscriber = ThrowawayCluster::start(&ClusterOptions::default()).expect("cluster starts");
    let on_subscriber = |sql: &str| subscriber.psql("postgres", sql).expect("subscriber SQL");
    on_subscriber("CREATE TABLE public.audit (id integer PRIMARY KEY)");
    on_subscriber(&format!(
        "CREATE SUBSCRIPTION audit CONNECTION '{}' PUBLICATION audit",
        database.cluster.admin_conninfo("postgres")
    ));
    wait_until("the subscriber streams", || {
        database.admin(
            "SELECT count(*) FROM pg_stat_replication
              WHERE application_name = 'audit' AND state = 'streaming' AND replay_lsn IS NOT NULL",
        ) == "1"
            && on_subscriber("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")
                == "0"
    });
    let apply_worker = on_subscriber(
        "SELECT pid FROM pg_stat_subscription WHERE subname = 'audit' AND relid IS NULL",
    );
    let signal = |name: &str| {
        Command::new("kill")
            .args([name, &apply_worker])
            .status()
            .expect("kill runs");
    };
    signal("-STOP");
    let mut waits = Waits::default();
    let outcome = start_watched(&database, "0002.toml", LABELLED, &mut waits).await;
    signal("-CONT");
    assert_eq!(outcome.expect("the migration runs").rows_backfilled, 5000);
    assert_eq!(waits.0, Vec::<String>::new(), "the backfill never waited");
}

/// Reading a standby's position takes `pg_read_all_stats` (or a superuser): without it
/// `pg_stat_replication` shows the walsender with its figures NULL, and the backfill cannot
/// wait for what it cannot see (it says so in the log); with it, the same standby, its replay
/// paused, is seen falling behind.
#[tokio::test]
async fn a_standby_is_seen_only_with_the_privilege_to_read_its_position() {
    let (database, standby) = primary_and_paused_standby(10).await;
    database.admin("CREATE ROLE watcher LOGIN");
    let behind_as_watcher = async || {
        let (client, connection) = tokio_postgres::connect(
            &database.cluster.url("watcher", "postgres"),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connects as watcher");
        tokio::spawn(connection);
        let mut watch = StandbyWatch::new(Duration::from_millis(300));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            database.admin("INSERT INTO models (name) SELECT 'more' FROM generate_series(1, 100)");
            if let Some(behind) = watch.behind(&client, true).await {
                return Some(behind);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    };
    assert_eq!(
        behind_as_watcher().await,
        None,
        "nothing seen without the privilege"
    );
    // Caught up again before it is watched anew: a standby already behind when first seen is
    // allowed that much more.
    standby
        .psql("postgres", "SELECT pg_wal_replay_resume()")
        .expect("replay resumes");
    // The clusters commit asynchronously: one commit made synchronously writes out every WAL
    // record before it, so the primary's write position then covers all that was committed.
    database.admin("SET synchronous_commit = on; SELECT pg_current_xact_id()");
    wait_until("the standby has caught up", || {
        database.admin(
            "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn()",
        ) == "1"
    });
    standby
        .psql("postgres", "SELECT pg_wal_replay_pause()")
        .expect("replay pauses");
    database.admin("GRANT pg_read_all_stats TO watcher");
    let behind = behind_as_watcher()
        .await
        .expect("the paused standby is seen falling behind");
    assert!(behind.lag > Duration::from_millis(300), "{behind:?}");
}
