//! `viewgate cutover --to v2`, then `--rollback`, while pgbench writes through the managed
//! table (issue 5): no transaction may fail, the table must hold exactly the rows pgbench was
//! told were committed, and no transaction may see two versions.
//!
//! The fixture is a ledger whose v2 renames a column and adds one (`written_by`) with a view
//! default of `'v2'`; the base default is `'v1'`. Both views are auto-updatable, so every row
//! records which version's view wrote it. Each transaction inserts two rows keyed by the
//! pgbench client and a per-client counter, reading each back through the managed table
//! (a division by zero fails the transaction if a row is missing). Afterwards:
//! - pgbench's per-transaction log says, per client, how many transactions committed; the
//!   table holds exactly two rows for each of them (counter values 1..=n, no gaps, no extras);
//! - both rows of a transaction share one `xmin` and one `written_by`: one version per
//!   transaction;
//! - in simple and extended mode every client wrote v1, then v2, then v1 again (it moved at
//!   a transaction boundary, once each way); in prepared mode every row is v1, because the
//!   statements were prepared under v1 and keep that version.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::versions::psql;
use common::{TestProxy, run_ok, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER};

const CLIENTS: usize = 8;
const THREADS: usize = 2;
/// Long enough for a v1 phase, the cutover, two seconds at v2, the rollback and a v1 phase
/// after it, on a loaded machine.
const DURATION_SECS: u64 = 10;
const ROWS_PER_TRANSACTION: usize = 2;
/// How long default sessions run at v2 before the rollback.
const HOLD_V2: Duration = Duration::from_secs(2);
/// How long a proxy may take to apply a catalog change, and pgbench to get every client going.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);
const START_LIMIT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE public.ledger (
    id         bigserial PRIMARY KEY,
    client_id  integer NOT NULL,
    seq        bigint NOT NULL,
    part       integer NOT NULL,
    note       text NOT NULL DEFAULT 'note',
    -- Builds before v2 do not know this column; v2's view sets its own default.
    written_by text NOT NULL DEFAULT 'v1',
    UNIQUE (client_id, seq, part)
)";

const SPEC: &str = r#"
[[tables]]
name = "ledger"

[[versions]]
name = "v1"
[[versions.tables]]
base = "ledger"
columns = ["id", "client_id", "seq", "part", "note"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "ledger"
columns = [
    "id", "client_id", "seq", "part",
    { name = "remark", from = "note" },
    { name = "written_by", default = "'v2'" },
]
"#;

/// One transaction: two rows, each read back through the managed table. Only columns both
/// versions have, so it runs at either. `n` is a per-client counter (set to 0 with `-D`).
const SCRIPT: &str = "\
\\set n :n + 1
BEGIN;
INSERT INTO ledger (client_id, seq, part) VALUES (:client_id, :n, 1);
SELECT 1 / (count(*) = 1)::int FROM ledger WHERE client_id = :client_id AND seq = :n;
INSERT INTO ledger (client_id, seq, part) VALUES (:client_id, :n, 2);
SELECT 1 / (count(*) = 2)::int FROM ledger WHERE client_id = :client_id AND seq = :n;
COMMIT;
";

/// A proxy over a cluster with the ledger fixture applied and `v1` as the default version.
fn ledger_proxy() -> TestProxy {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
    });
    proxy.admin(SCHEMA);
    let spec = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(spec.path(), SPEC).unwrap();
    run_ok(Command::new(viewgate_binary()).args([
        "views",
        "apply",
        "--spec",
        &spec.path().display().to_string(),
        "--database",
        &proxy.cluster.url(SUPERUSER, "postgres"),
    ]));
    proxy.admin("UPDATE viewgate.settings SET default_version = 'v1'; NOTIFY viewgate_control");
    wait_for_default(&proxy, "v1");
    proxy
}

/// Waits until a new default session runs at `version`: the proxy has applied the change.
fn wait_for_default(proxy: &TestProxy, version: &str) {
    assert!(
        wait_until(PROPAGATION_LIMIT, || {
            psql(proxy, None, "SHOW viewgate.version").is_ok_and(|out| out == version)
        }),
        "the proxy did not make {version} the default in time"
    );
}

fn cutover(proxy: &TestProxy, args: &[&str]) -> String {
    run_ok(
        Command::new(viewgate_binary())
            .arg("cutover")
            .args(args)
            .args(["--database", &proxy.cluster.url(SUPERUSER, "postgres")]),
    )
}

fn start_pgbench(proxy: &TestProxy, mode: &str, dir: &Path) -> Child {
    let script = dir.join("ledger.sql");
    std::fs::write(&script, SCRIPT).unwrap();
    Command::new(proxy.cluster.bin("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &proxy.port().to_string()])
        .args(["-U", SUPERUSER, "-n", "-M", mode])
        .args(["-c", &CLIENTS.to_string(), "-j", &THREADS.to_string()])
        .args(["-T", &DURATION_SECS.to_string(), "-D", "n=0"])
        .arg("-f")
        .arg(&script)
        .arg("--log")
        .arg(format!("--log-prefix={}", dir.join("tx").display()))
        .arg("postgres")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgbench starts")
}

/// Committed transactions per client, from pgbench's per-transaction logs (one file per
/// thread). A line's third field is the latency, or `failed` / `skipped`.
fn committed_per_client(dir: &Path) -> BTreeMap<usize, usize> {
    let mut committed = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_log = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("tx."));
        if !is_log {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected pgbench log line: {line}");
            if fields[2].parse::<u64>().is_ok() {
                *committed.entry(fields[0].parse().unwrap()).or_default() += 1;
            }
        }
    }
    committed
}

/// The value after `prefix` on the line of `out` that starts with it.
fn reported<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("pgbench did not report {prefix:?}:\n{out}"))
        .trim()
}

/// The three runs take turns: each is a load test, and together they would starve each other
/// (and the timing of the cutover) on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_mode(mode: &str) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let proxy = ledger_proxy();
    let logs = tempfile::tempdir().unwrap();
    let mut pgbench = start_pgbench(&proxy, mode, logs.path());

    // Every client has committed at v1 (in prepared mode: has prepared its statements).
    let all_started = wait_until(START_LIMIT, || {
        proxy.admin("SELECT count(DISTINCT client_id) FROM ledger") == CLIENTS.to_string()
    });
    assert!(all_started, "not every pgbench client got going");
    let out = cutover(&proxy, &["--to", "v2"]);
    assert!(out.contains("default version: v1 -> v2"), "{out}");
    wait_for_default(&proxy, "v2");
    std::thread::sleep(HOLD_V2);
    let out = cutover(&proxy, &["--rollback"]);
    assert!(out.contains("default version: v2 -> v1"), "{out}");
    wait_for_default(&proxy, "v1");
    assert!(
        pgbench.try_wait().unwrap().is_none(),
        "pgbench ended before the rollback took effect; the run says nothing about it"
    );

    let output = pgbench.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pgbench failed:\n{out}\n{err}");
    assert_eq!(reported(&out, "query mode:"), mode, "{out}");
    let failed = reported(&out, "number of failed transactions:");
    assert!(
        failed.starts_with("0 "),
        "failed transactions: {failed}\n{err}"
    );
    let processed: usize = reported(&out, "number of transactions actually processed:")
        .parse()
        .unwrap();

    // Exactly the rows of the committed transactions: per client, counters 1..=n, two rows each.
    let committed = committed_per_client(logs.path());
    assert_eq!(committed.len(), CLIENTS, "{committed:?}");
    assert_eq!(committed.values().sum::<usize>(), processed);
    assert_eq!(
        proxy.admin("SELECT count(*) FROM ledger"),
        (processed * ROWS_PER_TRANSACTION).to_string()
    );
    let expected: Vec<String> = committed
        .iter()
        .map(|(client, n)| format!("{client}|{}|{n}|{n}", n * ROWS_PER_TRANSACTION))
        .collect();
    assert_eq!(
        proxy.admin(
            "SELECT client_id, count(*), max(seq), count(DISTINCT seq) FROM ledger \
             GROUP BY client_id ORDER BY client_id"
        ),
        expected.join("\n")
    );

    // One version per transaction: both rows in one Postgres transaction, by one view.
    assert_eq!(
        proxy.admin(
            "SELECT count(*) FROM (SELECT FROM ledger GROUP BY client_id, seq \
             HAVING count(DISTINCT written_by) > 1 OR count(DISTINCT xmin::text) > 1) mixed"
        ),
        "0",
        "a transaction saw two versions"
    );

    // The versions each client wrote at, in order, repeats collapsed.
    let phases = proxy.admin(
        "SELECT string_agg(written_by, '>' ORDER BY seq) FROM \
         (SELECT client_id, seq, written_by, \
          lag(written_by) OVER (PARTITION BY client_id ORDER BY seq) AS before \
          FROM ledger WHERE part = 1) t \
         WHERE before IS DISTINCT FROM written_by GROUP BY client_id ORDER BY client_id",
    );
    let expected_phases = if mode == "prepared" { "v1" } else { "v1>v2>v1" };
    assert_eq!(
        phases,
        [expected_phases; CLIENTS].join("\n"),
        "the versions each client wrote at (in {mode} mode)"
    );
    assert_eq!(
        proxy.admin(
            "SELECT string_agg(action || array_to_string(versions, '>', '?'), ' ' ORDER BY id) \
             FROM viewgate.apply_history WHERE action IN ('cutover', 'rollback')"
        ),
        "cutoverv1>v2 rollbackv2>v1"
    );
    eprintln!(
        "{mode}: {processed} transactions ({} at v2), 0 failed",
        proxy.admin("SELECT count(*) FROM ledger WHERE part = 1 AND written_by = 'v2'")
    );
}

#[test]
fn cutover_and_rollback_under_pgbench_simple_protocol() {
    run_mode("simple");
}

#[test]
fn cutover_and_rollback_under_pgbench_extended_protocol() {
    run_mode("extended");
}

/// Prepared statements keep the version they were parsed under: every row is v1.
#[test]
fn cutover_and_rollback_under_pgbench_prepared_statements() {
    run_mode("prepared");
}
