//! Shadow reads against a real Postgres behind `viewgate serve`: v2 shows a planted different
//! value for one row; a shadow run from v1 to v2 finds it and reports it (shape, both row
//! counts, the differing rows), matches what agrees, calls a statement that changes between two
//! runs at the same version non-deterministic, skips writes and volatile calls, and never
//! changes what the v1 client gets. Bad options are refused; the admin API starts, stops and
//! reports; a redacting run keeps no values and ends by itself when its budget is spent.
//! Extended-protocol reads (tokio-postgres, psycopg 3 with text and binary parameters) are
//! shadowed with their parameters; `--match` keeps a run to the statements whose shape
//! matches; the client's search_path (startup or SET) is the shadow's. Shadow statements that
//! take seconds never hold up the client's reads (a functional check, not a speed goal: the
//! speed is measured by `bench/shadow.sh`, docs/benchmarks.md).

mod common;
#[path = "drivers/deps.rs"]
mod deps;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{get, post_json};
use common::versions::EXAMPLE;
use common::{ProxyProcess, run_ok, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};

const TOKEN: &str = "shadow-test-token";
/// v2 differs from v1 in one value (the planted row's model_version) and has one more column.
const SPEC: &str = r#"
[options]
layout = "suffix"

[[tables]]
name = "model_metadata"
schema = "public"
key = ["id"]

[[versions]]
name = "v1"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name", "model_version"]

[[versions]]
name = "v2"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name", "model_type", { name = "model_version", expr = "CASE WHEN model_name = 'planted' THEN 'changed' ELSE model_version END" }]
"#;
const PLANTED: &str = "SELECT id, model_name, model_version FROM model_metadata";
const AGREES: &str = "SELECT count(*) FROM model_metadata WHERE model_version <> ''";
const NONDETERMINISTIC: &str =
    "SELECT id, model_version, statement_timestamp() AS at FROM model_metadata";
const VOLATILE: &str = "SELECT id, random() FROM model_metadata";
const WRITE: &str = "UPDATE model_metadata SET model_version = model_version WHERE false";
/// Long enough for the workers and the once-a-second report (not a speed assertion).
const REPORT_WAIT: Duration = Duration::from_secs(20);
/// An unmanaged table only the schema `app` has: found through the client's search_path.
const LOOKUP: &str = "CREATE SCHEMA app; CREATE TABLE app.lookup (id bigint PRIMARY KEY, label text); \
                      INSERT INTO app.lookup VALUES (1, 'a'), (2, 'b'), (3, 'c')";
/// A read that needs `app` on the search_path.
const THROUGH_SEARCH_PATH: &str = "SELECT m.id, m.model_version, l.label \
                                   FROM model_metadata m JOIN lookup l ON l.id = m.id";
/// v2's model_version goes through a function that sleeps 2 s a row: each shadow statement at
/// v2 runs into the shadow's 5 s statement timeout.
const SLOW_FUNCTION: &str = "CREATE FUNCTION slow_text(t text) RETURNS text LANGUAGE plpgsql STABLE \
                             AS $$ BEGIN PERFORM pg_sleep(2); RETURN t; END $$";
/// Far above a read's own time, far below one shadow statement's (not a speed goal: a read
/// that waited for the shadow would take 5 s or more).
const PROMPT: Duration = Duration::from_secs(2);

struct Setup {
    database: String,
    admin_port: u16,
    process: ProxyProcess,
}

fn viewgate(args: &[&str]) -> std::process::Output {
    Command::new(viewgate_binary()).args(args).output().unwrap()
}

fn report(database: &str) -> serde_json::Value {
    let out = run_ok(Command::new(viewgate_binary()).args([
        "shadow",
        "report",
        "--json",
        "--database",
        database,
    ]));
    serde_json::from_str(&out).unwrap()
}

fn total(report: &serde_json::Value, name: &str) -> u64 {
    report["totals"][name].as_u64().unwrap_or(0)
}

/// The value of the metric line starting with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn start(cluster: &ThrowawayCluster) -> Setup {
    start_with(cluster, SPEC, "SELECT 1")
}

/// The example's table with three rows, `setup` run, `spec` applied, v1 the default, and
/// `viewgate serve` with an admin port.
fn start_with(cluster: &ThrowawayCluster, spec_text: &str, setup: &str) -> Setup {
    let database = cluster.url(SUPERUSER, "postgres");
    cluster
        .psql(
            "postgres",
            &std::fs::read_to_string(Path::new(EXAMPLE).join("schema.sql")).unwrap(),
        )
        .unwrap();
    cluster
        .psql(
            "postgres",
            "INSERT INTO model_metadata (model_name, model_version) \
             VALUES ('alpha', '1'), ('planted', '2'), ('gamma', '3')",
        )
        .unwrap();
    cluster.psql("postgres", setup).unwrap();
    let spec = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(spec.path(), spec_text).unwrap();
    run_ok(
        Command::new(viewgate_binary())
            .args(["views", "apply", "--database", &database, "--spec"])
            .arg(spec.path()),
    );
    run_ok(Command::new(viewgate_binary()).args([
        "cutover",
        "--to",
        "v1",
        "--database",
        &database,
    ]));
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let process = ProxyProcess::start(
        cluster,
        &[
            ("VIEWGATE_CATALOG", database.as_str()),
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
            ("VIEWGATE_LOG_LEVEL", "warn"),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || {
        get(admin_port, "/readyz", None).0 == 200
    }));
    Setup {
        database,
        admin_port,
        process,
    }
}

async fn client(port: u16) -> tokio_postgres::Client {
    client_with_options(port, None).await
}

/// A client whose startup packet carries `options` (e.g. `-c search_path=…`).
async fn client_with_options(port: u16, options: Option<&str>) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .dbname("postgres");
    if let Some(options) = options {
        config.options(options);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The text rows a simple query returns.
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Waits until /metrics says a shadow run is (or is not) in progress on the proxy.
fn wait_running(admin_port: u16, running: bool) {
    let expected = if running { 1.0 } else { 0.0 };
    assert!(
        wait_until(REPORT_WAIT, || {
            sample(
                &get(admin_port, "/metrics", Some(TOKEN)).1,
                "viewgate_shadow_running",
            ) == Some(expected)
        }),
        "the proxy did not see the shadow run {}",
        if running { "start" } else { "end" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_difference_is_found_and_reported_without_touching_the_client() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let setup = start(&cluster);
    let database = setup.database.as_str();
    let admin_port = setup.admin_port;

    // Bad input: refused, nothing started.
    for (args, expected) in [
        (
            &["--from", "v1", "--to", "v2", "--rate", "0"][..],
            "above 0",
        ),
        (
            &["--from", "v1", "--to", "v2", "--rate", "2"][..],
            "at most 1",
        ),
        (
            &[
                "--from", "v1", "--to", "v2", "--rate", "0.5", "--budget", "0",
            ][..],
            "budget",
        ),
        (
            &["--from", "v1", "--to", "v1", "--rate", "0.5"][..],
            "two versions",
        ),
        (
            &["--from", "v1", "--to", "v9", "--rate", "0.5"][..],
            "v9 is not an active version",
        ),
    ] {
        let mut full = vec!["shadow", "start"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--database", database]);
        let output = viewgate(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let body = r#"{"from": "v1", "to": "v2", "rate": 1.5}"#;
    assert_eq!(post_json(admin_port, "/shadow/start", None, body).0, 401);
    let (code, reply) = post_json(admin_port, "/shadow/start", Some(TOKEN), body);
    assert_eq!(code, 400, "{reply}");
    assert!(reply.contains("at most 1"), "{reply}");
    let (code, reply) = post_json(admin_port, "/shadow/stop", Some(TOKEN), "{}");
    assert_eq!(code, 404, "nothing to stop: {reply}");
    let output = viewgate(&["shadow", "report", "--database", database]);
    assert!(!output.status.success(), "no run yet, no report");

    let out = run_ok(Command::new(viewgate_binary()).args([
        "shadow",
        "start",
        "--from",
        "v1",
        "--to",
        "v2",
        "--rate",
        "1",
        "--database",
        database,
    ]));
    assert!(out.contains("shadow run 1"), "{out}");
    let output = viewgate(&[
        "shadow",
        "start",
        "--from",
        "v1",
        "--to",
        "v2",
        "--rate",
        "1",
        "--database",
        database,
    ]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("already running"),
        "one run at a time"
    );
    wait_running(admin_port, true);

    let session = client(setup.process.port).await;
    let planted = rows(&session, PLANTED).await;
    assert_eq!(
        planted,
        vec![
            vec!["1".to_owned(), "alpha".into(), "1".into()],
            vec!["2".to_owned(), "planted".into(), "2".into()],
            vec!["3".to_owned(), "gamma".into(), "3".into()],
        ],
        "the v1 client gets v1's values"
    );
    assert_eq!(rows(&session, AGREES).await, vec![vec!["3".to_owned()]]);
    assert_eq!(rows(&session, NONDETERMINISTIC).await.len(), 3);
    assert_eq!(rows(&session, VOLATILE).await.len(), 3);
    session.batch_execute(WRITE).await.unwrap();

    let deadline = Instant::now() + REPORT_WAIT;
    let found = loop {
        let found = report(database);
        if total(&found, "diff") >= 1
            && total(&found, "matched") >= 1
            && total(&found, "nondeterministic") >= 1
            && total(&found, "skipped") >= 1
        {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "not all outcomes reported: {found}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        total(&found, "sampled"),
        4,
        "the UPDATE is never sampled: {found}"
    );
    assert_eq!(total(&found, "diff"), 1, "{found}");
    assert_eq!(total(&found, "skipped"), 1, "random() is volatile: {found}");
    assert_eq!(total(&found, "dropped"), 0, "{found}");
    let diffs = found["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{found}");
    let diff = &diffs[0];
    assert_eq!(diff["kind"], "diff");
    assert_eq!(
        diff["shape"],
        "SELECT id, model_name, model_version FROM model_metadata"
    );
    assert_eq!(
        (diff["from_rows"].as_i64(), diff["to_rows"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        diff["detail"]["only_from"],
        serde_json::json!([["2", "planted", "2"]])
    );
    assert_eq!(
        diff["detail"]["only_to"],
        serde_json::json!([["2", "planted", "changed"]])
    );
    let text =
        run_ok(Command::new(viewgate_binary()).args(["shadow", "report", "--database", database]));
    assert!(text.contains("1 differ, 1 non-deterministic"), "{text}");
    assert!(
        text.contains("diff x1  rows 3 -> 3  SELECT id, model_name"),
        "{text}"
    );

    let metrics = get(admin_port, "/metrics", Some(TOKEN)).1;
    assert_eq!(
        sample(&metrics, "viewgate_shadow_outcomes_total{outcome=\"diff\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "viewgate_shadow_sampled_total"), Some(4.0));

    // The admin API stops and reports.
    let (code, reply) = post_json(admin_port, "/shadow/stop", Some(TOKEN), "{}");
    assert_eq!(code, 200, "{reply}");
    wait_running(admin_port, false);
    let (code, reply) = get(admin_port, "/shadow/report", Some(TOKEN));
    assert_eq!(code, 200, "{reply}");
    let stopped: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(stopped["state"], "stopped");
    rows(&session, PLANTED).await;

    // A redacting run through the admin API, with a budget of 2 comparisons.
    let (code, reply) = post_json(
        admin_port,
        "/shadow/start",
        Some(TOKEN),
        r#"{"from": "v1", "to": "v2", "rate": 1, "budget": 2, "redact": true}"#,
    );
    assert_eq!(code, 200, "{reply}");
    wait_running(admin_port, true);
    let deadline = Instant::now() + REPORT_WAIT;
    let exhausted = loop {
        rows(&session, PLANTED).await;
        let now = report(database);
        if now["state"] == "exhausted" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the budget never ended the run: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        exhausted["reason"]
            .as_str()
            .unwrap()
            .starts_with("budget spent"),
        "{exhausted}"
    );
    let detail = exhausted["diffs"][0]["detail"].to_string();
    assert!(
        detail.contains("sha256:") && !detail.contains("changed") && !detail.contains("planted"),
        "{detail}"
    );
    wait_running(admin_port, false);
    let history = cluster
        .psql(
            "postgres",
            "SELECT string_agg(coalesce(error, 'start'), ' | ' ORDER BY id) FROM viewgate.apply_history WHERE action = 'shadow'",
        )
        .unwrap();
    assert!(
        history
            .starts_with("start | shadow run stopped | start | shadow run 2 ended: budget spent: "),
        "{history}"
    );
}

/// The rows of an extended-protocol query (tokio-postgres: a named statement, binary
/// parameters), as (id, name, version).
async fn extended_rows(
    client: &tokio_postgres::Client,
    sql: &str,
    parameter: i64,
) -> Vec<(i64, String, String)> {
    let mut rows: Vec<_> = client
        .query(sql, &[&parameter])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    rows.sort();
    rows
}

fn v1_rows() -> Vec<(i64, String, String)> {
    vec![
        (1, "alpha".into(), "1".into()),
        (2, "planted".into(), "2".into()),
        (3, "gamma".into(), "3".into()),
    ]
}

fn shadow_start(database: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "shadow",
        "start",
        "--from",
        "v1",
        "--to",
        "v2",
        "--rate",
        "1",
        "--database",
        database,
    ];
    args.extend_from_slice(extra);
    run_ok(Command::new(viewgate_binary()).args(&args))
}

fn shadow_stop(database: &str, admin_port: u16) {
    run_ok(Command::new(viewgate_binary()).args(["shadow", "stop", "--database", database]));
    wait_running(admin_port, false);
}

/// Polls the report until `done` holds (or fails after [`REPORT_WAIT`]).
async fn report_until(
    database: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        let now = report(database);
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the report never got there: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The differences of kind `diff` by shape.
fn diff_shapes(report: &serde_json::Value) -> Vec<String> {
    let mut shapes: Vec<String> = report["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|diff| diff["kind"] == "diff")
        .map(|diff| diff["shape"].as_str().unwrap().to_owned())
        .collect();
    shapes.sort();
    shapes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_reads_match_patterns_and_the_clients_search_path() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let setup = start_with(&cluster, SPEC, LOOKUP);
    let database = setup.database.as_str();
    let admin_port = setup.admin_port;

    // A bad pattern: a clear error, nothing started (CLI and admin API).
    let output = viewgate(&[
        "shadow",
        "start",
        "--from",
        "v1",
        "--to",
        "v2",
        "--rate",
        "1",
        "--match",
        "**",
        "--database",
        database,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("matches every statement"),
        "{stderr}"
    );
    let (code, reply) = post_json(
        admin_port,
        "/shadow/start",
        Some(TOKEN),
        r#"{"from": "v1", "to": "v2", "rate": 1, "match": "a\u0001"}"#,
    );
    assert_eq!(code, 400, "{reply}");
    assert!(reply.contains("control character"), "{reply}");
    assert!(
        !viewgate(&["shadow", "report", "--database", database])
            .status
            .success(),
        "no run was started"
    );

    // Run 1: only statements whose shape has "model_version from model_metadata where"
    // (case-insensitive), from tokio-postgres (binary parameter) and psycopg 3 (text and
    // binary parameters); a count with a parameter and a simple query do not match.
    let out = shadow_start(
        database,
        &["--match", "model_version  from model_metadata WHERE"],
    );
    assert!(out.contains("matching"), "{out}");
    wait_running(admin_port, true);
    let session = client(setup.process.port).await;
    let extended = "SELECT id, model_name, model_version FROM model_metadata WHERE id >= $1";
    assert_eq!(extended_rows(&session, extended, 1).await, v1_rows());
    let count: i64 = session
        .query_one(
            "SELECT count(*) FROM model_metadata WHERE model_name <> $1::text",
            &[&"none"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
    assert_eq!(rows(&session, PLANTED).await.len(), 3);
    let dsn = format!(
        "host=127.0.0.1 port={} user={SUPERUSER} dbname=postgres",
        setup.process.port
    );
    let stdout = deps::run_python("shadow_reads.py", &[dsn]);
    deps::assert_checked(
        &stdout,
        &["text parameter reads v1", "binary parameter reads v1"],
    );
    let found = report_until(database, |now| total(now, "diff") >= 3).await;
    assert_eq!(found["match"], "model_version from model_metadata WHERE");
    assert_eq!(
        total(&found, "sampled"),
        3,
        "only the matching statements: {found}"
    );
    assert_eq!(total(&found, "diff"), 3, "{found}");
    assert_eq!(
        diff_shapes(&found),
        vec![
            "SELECT id, model_name, model_version FROM model_metadata WHERE id >= $1".to_owned(),
            "SELECT id, model_name, model_version FROM model_metadata WHERE model_name <> $1"
                .to_owned(),
        ],
        "tokio-postgres's and psycopg's binary reads share a shape: {found}"
    );
    for diff in found["diffs"].as_array().unwrap() {
        assert_eq!(
            diff["detail"]["only_to"],
            serde_json::json!([["2", "planted", "changed"]]),
            "{diff}"
        );
    }
    let text =
        run_ok(Command::new(viewgate_binary()).args(["shadow", "report", "--database", database]));
    assert!(
        text.contains("match \"model_version from model_metadata WHERE\""),
        "{text}"
    );
    shadow_stop(database, admin_port);

    // Run 2: the client's search_path, from its startup packet (a simple query) and from a SET
    // (an extended-protocol query); `lookup` is only in `app`.
    shadow_start(database, &[]);
    wait_running(admin_port, true);
    let startup = client_with_options(setup.process.port, Some("-c search_path=app,public")).await;
    assert_eq!(rows(&startup, THROUGH_SEARCH_PATH).await.len(), 3);
    let set = client(setup.process.port).await;
    set.batch_execute("SET search_path TO app, public")
        .await
        .unwrap();
    let bound = set
        .query(&format!("{THROUGH_SEARCH_PATH} WHERE m.id >= $1"), &[&1i64])
        .await
        .unwrap();
    assert_eq!(bound.len(), 3);
    let found = report_until(database, |now| total(now, "diff") >= 2).await;
    assert_eq!(total(&found, "sampled"), 2, "{found}");
    assert_eq!(
        (total(&found, "error"), total(&found, "skipped")),
        (0, 0),
        "both resolved `lookup` through the client's search_path: {found}"
    );
    for diff in found["diffs"].as_array().unwrap() {
        assert_eq!(diff["kind"], "diff", "{diff}");
        assert_eq!(
            diff["detail"]["only_to"],
            serde_json::json!([["2", "changed", "b"]]),
            "{diff}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_shadow_statements_never_hold_up_the_client() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let slow_spec = SPEC.replace(
        "CASE WHEN model_name = 'planted' THEN 'changed' ELSE model_version END",
        "slow_text(model_version)",
    );
    let setup = start_with(&cluster, &slow_spec, SLOW_FUNCTION);
    let database = setup.database.as_str();
    shadow_start(database, &["--budget", "1000"]);
    wait_running(setup.admin_port, true);
    let session = client(setup.process.port).await;
    let extended = "SELECT id, model_name, model_version FROM model_metadata WHERE id >= $1";
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(rows(&session, PLANTED).await.len(), 3);
        assert_eq!(extended_rows(&session, extended, 1).await, v1_rows());
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < PROMPT,
        "a client's reads waited for the shadow: {slowest:?}"
    );
    // Meanwhile the shadow statements ran into their timeout at v2, and say so.
    let found = report_until(database, |now| total(now, "timeout") >= 2).await;
    assert_eq!(
        total(&found, "sampled") + total(&found, "dropped"),
        20,
        "{found}"
    );
    assert!(
        found["diffs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|diff| diff["kind"] == "timeout" && diff["detail"]["sqlstate"] == "57014"),
        "{found}"
    );
    shadow_stop(database, setup.admin_port);
}
