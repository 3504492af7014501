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
//! speed is measured by `bench/shadow.sh`, docs/benchmarks.md). The re-run has the client's
//! rights, never the catalog user's: it runs as the client's login role, is not run when the
//! catalog role cannot take that role or is a superuser and the client is not (client code can
//! `RESET ROLE`), and a result over the byte cap is counted too large (red-team pass 20b);
//! with `shadow_catalog` a role reset by client code has no rights to use.

use crate::common;
use crate::deps;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{admin_ready, get, post_json};
use common::versions::EXAMPLE;
use common::{ProxyProcess, run_ok, viewgate_binary, wait_until};
use viewgate::model::shadow_run::SHADOW_OUTCOMES;
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
/// One read to sqlparser (`#-` and a string from `$$` to the end), three statements to
/// Postgres (`#` and a comment): the last one would outlive the shadow's transaction. No
/// `'` (a quote before a comment is never re-run, `mention::comment_after_quote`).
const SMUGGLED_STATEMENTS: &str = "SELECT (SELECT count(*) FROM model_metadata) #-- $$\n 2 AS n; \
                                   COMMIT; SELECT set_config($n$application_name$n$, $v$escaped$v$, false) -- $$";
/// One statement to both, calling a volatile function only Postgres sees; the planted row
/// would differ if the shadow ran it.
const SMUGGLED_CALL: &str = "SELECT m.model_version AS smuggled FROM model_metadata m WHERE m.id #-- $$\n \
                             pg_try_advisory_lock(616165)::int IS NOT NULL -- $$";
/// A volatile call in a query text tablefunc's `crosstab` runs; the planted row would differ
/// if the shadow ran it.
const TABLEFUNC_CALL: &str = "SELECT m.model_version AS tabled, c.v FROM model_metadata m, \
    crosstab($q$SELECT $a$r$a$::text, $b$c$b$::text, pg_try_advisory_xact_lock(616166)::text$q$) \
    AS c(r text, v text)";
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
    start_as(cluster, spec_text, setup, "SELECT 1", SUPERUSER)
}

/// As `start_with`, then `granted` run (after the apply), and the proxy's catalog user
/// `catalog_user` (the commands still run as the superuser).
fn start_as(
    cluster: &ThrowawayCluster,
    spec_text: &str,
    setup: &str,
    granted: &str,
    catalog_user: &str,
) -> Setup {
    let database = cluster.url(SUPERUSER, "postgres");
    let catalog = cluster.url(catalog_user, "postgres");
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
    cluster.psql("postgres", granted).unwrap();
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let process = ProxyProcess::start(
        cluster,
        &[
            ("VIEWGATE_CATALOG", catalog.as_str()),
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
            ("VIEWGATE_LOG_LEVEL", "warn"),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || admin_ready(
        admin_port
    )));
    Setup {
        database,
        admin_port,
        process,
    }
}

async fn client(port: u16) -> tokio_postgres::Client {
    client_with_options(port, None).await
}

/// A client logged in as `user` (trust authentication).
async fn client_as(port: u16, user: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
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

/// Roles for the rights tests, run before the apply: the application's role `app`, a role
/// `outsider` the catalog role is no member of, a schema `app` owns (it can write functions),
/// and a table only the catalog role may read. `viewgate` (NOINHERIT) may take `app`'s role,
/// not use its rights.
const ROLES: &str = "CREATE EXTENSION tablefunc; \
    CREATE ROLE viewgate LOGIN NOINHERIT; CREATE ROLE app LOGIN; \
    CREATE ROLE outsider LOGIN; GRANT app TO viewgate; \
    GRANT USAGE ON SCHEMA public TO app, outsider; \
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO app, outsider; \
    GRANT SELECT ON public.model_metadata TO app, outsider; \
    CREATE SCHEMA own AUTHORIZATION app; \
    CREATE TABLE public.private (secret text); INSERT INTO public.private VALUES ('TOPSECRET'); \
    REVOKE ALL ON public.private FROM app, outsider";
/// The catalog role's rights after the apply: the catalog, and every table (it owns the
/// generated views in a real deployment), `private` included.
const CATALOG_ROLE: &str = "GRANT USAGE ON SCHEMA viewgate TO viewgate; \
    GRANT ALL ON ALL TABLES IN SCHEMA viewgate TO viewgate; \
    GRANT ALL ON ALL SEQUENCES IN SCHEMA viewgate TO viewgate; \
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO viewgate";
/// Who runs the shadow statement: the planted row's difference carries it.
const WHO: &str = "SELECT m.id, m.model_version, current_user AS who FROM model_metadata m";
/// A table the client may not read (S2).
const PRIVATE: &str =
    "SELECT m.id, m.model_version, (SELECT max(secret) FROM private) AS s FROM model_metadata m";
/// Far over `MAX_SHADOW_RESULT_BYTES` (16 MiB) in three rows: 17 characters × 1.5 M.
const BIG: &str =
    "SELECT m.id, m.model_version, repeat(m.model_name, 1500000) AS big FROM model_metadata m";
/// Seen by the outsider, whose role the catalog role cannot take.
const OUTSIDER: &str = "SELECT m.id, m.model_version, 'o' AS o FROM model_metadata m";
/// Functions `app` wrote (over a direct connection): an IMMUTABLE wrapper over a VOLATILE function that leaves the role
/// it is run with (`RESET ROLE`, allowed in any invoker code) and says who it then is.
const ESCAPE: &str = "CREATE FUNCTION own.x() RETURNS text LANGUAGE plpgsql VOLATILE \
    AS $$ BEGIN RESET ROLE; RETURN current_user::text; END $$; \
    CREATE FUNCTION own.w() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT own.x() $$";
const ESCAPING: &str = "SELECT own.w() AS who, m.id, m.model_version FROM model_metadata m";
/// The shadow workers' own role: a member of the client's role, with no rights of its own.
const SHADOW_ROLE: &str =
    "CREATE ROLE viewgate_shadow LOGIN NOINHERIT; GRANT app TO viewgate_shadow";
/// As `ESCAPE`, reading what the role it resets to may read.
const PEEK: &str = "CREATE FUNCTION own.peek() RETURNS text LANGUAGE plpgsql VOLATILE \
    AS $$ BEGIN RESET ROLE; RETURN (SELECT max(secret) FROM public.private); END $$; \
    CREATE FUNCTION own.pw() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT own.peek() $$";
const PEEKING: &str = "SELECT own.pw() AS peeked, m.id, m.model_version FROM model_metadata m";

/// The differences whose shape contains `needle`.
fn diffs_of<'a>(report: &'a serde_json::Value, needle: &str) -> Vec<&'a serde_json::Value> {
    report["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|diff| diff["shape"].as_str().unwrap().contains(needle))
        .collect()
}

/// Every sampled statement has an outcome.
fn settled(report: &serde_json::Value) -> bool {
    let outcomes: u64 = SHADOW_OUTCOMES.iter().map(|name| total(report, name)).sum();
    outcomes == total(report, "sampled")
}

/// Red-team pass 20b, S2/S3/S5: the shadow re-runs a client's statement with the client's
/// login role, never the catalog user's; a role the catalog user cannot take, or a superuser
/// catalog user with a client that is not, means the statement is not run (`role_refused`);
/// the client's temporary schema is out of reach; a result over the byte cap is recorded as
/// too large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_reruns_have_the_clients_rights_never_the_catalog_users() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let setup = start_as(&cluster, SPEC, ROLES, CATALOG_ROLE, "viewgate");
    let database = setup.database.as_str();
    let port = setup.process.port;
    shadow_start(database, &[]);
    wait_running(setup.admin_port, true);

    let app = client_as(port, "app").await;
    assert_eq!(rows(&app, WHO).await.len(), 3);
    let error = app.simple_query(PRIVATE).await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42501", "{error}");
    assert_eq!(rows(&app, BIG).await.len(), 3);
    // The client's temporary function, called by its pg_temp_N name.
    app.batch_execute(
        "CREATE FUNCTION pg_temp.t() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 't'::text $$",
    )
    .await
    .unwrap();
    let temp = rows(
        &app,
        "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()",
    )
    .await[0][0]
        .clone();
    let temp_read = format!("SELECT {temp}.t() AS t, m.id, m.model_version FROM model_metadata m");
    assert_eq!(rows(&app, &temp_read).await.len(), 3);
    let outsider = client_as(port, "outsider").await;
    assert_eq!(rows(&outsider, OUTSIDER).await.len(), 3);
    // A function of the client's that resets the role, here to the catalog role, and reads
    // what that role may: the result is dropped, and nothing more runs in the transaction.
    cluster
        .psql("postgres", &format!("SET ROLE app; {PEEK}"))
        .unwrap();
    let error = app.simple_query(PEEKING).await.unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42501", "{error}");
    // Reads that call a volatile function in FROM, spell its name with a Unicode escape
    // (sqlparser reads another name) or call it in attribute notation: never run again, and
    // the shadow's connection is left holding no lock (the twenty-first to twenty-fourth
    // red-team passes left one held).
    for locking in [
        "SELECT m.id FROM model_metadata m, pg_advisory_lock(616161) l",
        r#"SELECT m.id, U&"pg\005fadvisory\005flock"(616162) FROM model_metadata m"#,
        "SELECT m.id, (616163::bigint).pg_advisory_lock FROM model_metadata m",
        "SELECT m.id, q.pg_advisory_lock FROM model_metadata m, CAST(616164 AS bigint) q",
    ] {
        assert_eq!(rows(&app, locking).await.len(), 3, "{locking}");
    }
    // The twenty-sixth red-team pass: `#--` is an operator and a comment to Postgres, while
    // sqlparser read a string from the `$$` inside the comment to the end of the text. The
    // shadow ran what it took for one read as a simple Query: a COMMIT, and after it a
    // statement as the catalog user that outlived the transaction; and a volatile call it
    // never saw.
    app.simple_query(SMUGGLED_STATEMENTS).await.unwrap();
    assert_eq!(rows(&app, SMUGGLED_CALL).await.len(), 3);
    // The twenty-seventh: a volatile call inside the query text `crosstab` runs.
    assert_eq!(rows(&app, TABLEFUNC_CALL).await.len(), 3);
    app.batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();

    let found = report_until(database, |now| {
        total(now, "too_large") >= 1
            && total(now, "role_refused") >= 2
            && total(now, "diff") >= 1
            && settled(now)
    })
    .await;
    // Run as app: the planted row differs, and the statement says who ran it.
    let who = diffs_of(&found, "current_user");
    assert_eq!(who.len(), 1, "{found}");
    let sample = who[0]["detail"].to_string();
    assert!(sample.contains("\"app\""), "{sample}");
    assert!(!sample.contains("viewgate"), "{sample}");
    // As app the private table fails at v1: not compared, nothing recorded.
    assert!(diffs_of(&found, "private").is_empty(), "{found}");
    assert!(total(&found, "skipped") >= 1, "{found}");
    // The outsider's role cannot be taken: not run. The role the client's function left:
    // dropped.
    assert!(diffs_of(&found, "AS o FROM").is_empty(), "{found}");
    assert!(diffs_of(&found, "own.pw()").is_empty(), "{found}");
    assert_eq!(total(&found, "role_refused"), 2, "{found}");
    // Over the byte cap: counted too large, nothing recorded.
    assert!(diffs_of(&found, "repeat").is_empty(), "{found}");
    assert_eq!(total(&found, "too_large"), 1, "{found}");
    // The temporary function is out of reach of the client's role in another session.
    assert!(diffs_of(&found, &temp).is_empty(), "{found}");
    let catalog_role = client_as(cluster.port(), "viewgate").await;
    let held = rows(
        &catalog_role,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN (616161, 616162, 616163, 616164)",
    )
    .await;
    assert_eq!(held, vec![vec!["0".to_owned()]], "{found}");
    assert!(diffs_of(&found, "advisory").is_empty(), "{found}");
    assert!(diffs_of(&found, "smuggled").is_empty(), "{found}");
    assert!(diffs_of(&found, "tabled").is_empty(), "{found}");
    let escaped = rows(
        &catalog_role,
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'viewgate' AND application_name = 'escaped'",
    )
    .await;
    assert_eq!(escaped, vec![vec!["0".to_owned()]], "{found}");
    let error = catalog_role
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL ROLE app; SELECT {temp}.t()"
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42501", "{error}");
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains(&format!("permission denied for schema {temp}")),
        "{error}"
    );
    drop(catalog_role);
    shadow_stop(database, setup.admin_port);

    // A superuser catalog user: client code could RESET ROLE to it, so a client that is not a
    // superuser is not shadowed at all; a superuser client still is.
    let superuser_catalog = cluster.url(SUPERUSER, "postgres");
    let proxy = common::ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", superuser_catalog.as_str()),
            ("VIEWGATE_LOG_LEVEL", "warn"),
        ],
    );
    shadow_start(database, &[]);
    // The proxy refuses such a body from a v1 session; app writes it over a direct connection.
    cluster
        .psql("postgres", &format!("SET ROLE app; {ESCAPE}"))
        .unwrap();
    let app = client_as(proxy.port, "app").await;
    let superuser = client_as(proxy.port, SUPERUSER).await;
    // Sent again until the new proxy has seen the run and sampled both.
    let deadline = Instant::now() + REPORT_WAIT;
    let found = loop {
        let _ = app.simple_query(ESCAPING).await;
        let _ = superuser.simple_query(PLANTED).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = report(database);
        if total(&now, "role_refused") >= 1 && total(&now, "diff") >= 1 && settled(&now) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the report never got there: {now}"
        );
    };
    assert!(diffs_of(&found, "own.w()").is_empty(), "{found}");
    assert_eq!(
        diffs_of(&found, "model_name, model_version FROM").len(),
        1,
        "{found}"
    );
    drop(proxy);

    // With `shadow_catalog`, the workers log in as a role that may take the client's and holds
    // nothing: client code that resets the role finds no rights to use, and its read fails
    // (skipped) where with the catalog role it read `private` (dropped as `role_refused`).
    cluster.psql("postgres", SHADOW_ROLE).unwrap();
    let catalog = cluster.url("viewgate", "postgres");
    let shadow_catalog = cluster.url("viewgate_shadow", "postgres");
    let proxy = common::ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", catalog.as_str()),
            ("VIEWGATE_SHADOW_CATALOG", shadow_catalog.as_str()),
            ("VIEWGATE_LOG_LEVEL", "warn"),
        ],
    );
    let app = client_as(proxy.port, "app").await;
    let before = report(database);
    let (sampled_before, refused_before) =
        (total(&before, "sampled"), total(&before, "role_refused"));
    let deadline = Instant::now() + REPORT_WAIT;
    let found = loop {
        let _ = app.simple_query(PEEKING).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = report(database);
        if total(&now, "sampled") > sampled_before && settled(&now) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the report never got there: {now}"
        );
    };
    assert!(diffs_of(&found, "own.pw()").is_empty(), "{found}");
    assert_eq!(total(&found, "role_refused"), refused_before, "{found}");
    assert!(!found.to_string().contains("TOPSECRET"), "{found}");
    drop(proxy);
}
