//! The guarded default cutover (`viewgate cutover --to V --guard-error-rate R --guard-window W`):
//! two proxies on one catalog; a cutover to a version whose view divides by zero is rolled back
//! by the proxies themselves once the errors *summed over both* pass the threshold (neither
//! proxy alone saw enough requests to judge), with the reason in the history; a cutover to a
//! healthy version holds when the window passes; bad options are refused before anything
//! changes.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::versions::EXAMPLE;
use common::{TestProxy, proxy_config, run_ok, spawn_proxy, viewgate_binary};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER};

/// v1 reads the column as it is; v2 divides by zero for every row written with the default
/// schema_version (1); v3 is v1 under another name (healthy); v4 never fails but answers
/// differently (for the shadow run's part in the guard).
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
columns = ["id", "model_name", { name = "model_version", expr = "(1 / (schema_version - 1))::text" }]

[[versions]]
name = "v3"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name", "model_version"]

[[versions]]
name = "v4"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name", { name = "model_version", expr = "model_version || '-v4'" }]
"#;
/// Failing requests the first proxy serves; below the guard's minimum on its own, as is the
/// rest of the minimum, which the second serves.
const PER_PROXY: usize = 6;
/// The guard's minimum of requests: more than either proxy's share; both together serve it.
const MIN_QUERIES: &str = "10";
/// Long enough for the proxies to report, judge and act (not a speed assertion).
const ACT_WAIT: Duration = Duration::from_secs(20);

async fn session(port: u16) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// One default session's read through the proxy at `port`: its version, or the SQLSTATE.
async fn probe(port: u16) -> Result<String, String> {
    let client = session(port).await;
    client
        .simple_query("SELECT model_version FROM model_metadata")
        .await
        .map_err(|error| {
            error
                .code()
                .map(|c| c.code().to_owned())
                .unwrap_or_default()
        })?;
    let rows = client.simple_query("SHOW viewgate.version").await.unwrap();
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| "no version".to_owned())
}

/// Waits until new default sessions on `port` run at `version`.
async fn wait_for_default(port: u16, version: &str) {
    let deadline = Instant::now() + ACT_WAIT;
    loop {
        let seen = probe(port).await;
        if seen.as_deref() == Ok(version) || (version == "v2" && seen.is_err()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy on {port} did not move to {version}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cutover(database: &str, args: &[&str]) -> std::process::Output {
    Command::new(viewgate_binary())
        .arg("cutover")
        .args(args)
        .args(["--database", database])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cutover_rolls_back_by_itself_and_a_healthy_one_holds() {
    let catalog = |config: &mut viewgate::config::Config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
    };
    let proxy = TestProxy::start_with(ClusterOptions::default(), catalog);
    let mut second_config = proxy_config(&proxy.cluster);
    catalog(&mut second_config);
    let (second, second_shutdown, second_thread) = spawn_proxy(second_config);
    let ports = [proxy.port(), second.port()];

    let database = proxy.cluster.url(SUPERUSER, "postgres");
    proxy.admin(&std::fs::read_to_string(Path::new(EXAMPLE).join("schema.sql")).unwrap());
    proxy.admin("INSERT INTO model_metadata (model_name, model_version) VALUES ('m', '1')");
    let spec = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(spec.path(), SPEC).unwrap();
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

    // Bad options: refused, nothing changed.
    for (args, expected) in [
        (
            &["--to", "v2", "--guard-error-rate", "1.5"][..],
            "at most 1",
        ),
        (
            &[
                "--to",
                "v2",
                "--guard-error-rate",
                "0.1",
                "--guard-window",
                "10m",
            ][..],
            "between 1s and 300s",
        ),
        (
            &["--to", "v2", "--guard-window", "30s"][..],
            "need --guard-error-rate",
        ),
        (
            &["--to", "v1", "--guard-error-rate", "0.1"][..],
            "already v1",
        ),
        (
            &["--to", "v9", "--guard-error-rate", "0.1"][..],
            "not an active version",
        ),
        (&["--rollback", "--guard-error-rate", "0.1"][..], "--to"),
    ] {
        let output = cutover(&database, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(
        proxy.admin("SELECT default_version FROM viewgate.settings"),
        "v1"
    );
    assert_eq!(
        proxy.admin("SELECT count(*) FROM viewgate.cutover_guards"),
        "0"
    );

    // The failing cutover.
    let out = run_ok(Command::new(viewgate_binary()).args([
        "cutover",
        "--to",
        "v2",
        "--guard-error-rate",
        "0.2",
        "--guard-window",
        "60s",
        "--guard-min-queries",
        MIN_QUERIES,
        "--database",
        &database,
    ]));
    assert!(out.contains("default version: v1 -> v2"), "{out}");
    assert!(out.contains("rolls back to v1 by itself"), "{out}");
    for port in ports {
        wait_for_default(port, "v2").await;
    }
    // One round: each proxy serves fewer failing requests than the guard's minimum, both
    // together exactly that many, so the guard cannot trip before the last of them (with more,
    // it rolled back while the second proxy was still being probed, and the rest met v1). No
    // more traffic after it: only the sum can trip the guard.
    let guard_minimum: usize = MIN_QUERIES.parse().unwrap();
    let mut failed = 0;
    'requests: for (port, requests) in ports
        .into_iter()
        .zip([PER_PROXY, guard_minimum - PER_PROXY])
    {
        for _ in 0..requests {
            match probe(port).await {
                Err(code) => {
                    assert_eq!(code, "22012", "v2 fails with division_by_zero");
                    failed += 1;
                }
                // The waits for each proxy to serve v2 ended on a failing request each, which
                // counts too: on a loaded machine the guard may judge the sum before the last
                // of these (CI, 2026-12-06), and this read then meets v1 again.
                Ok(version) => {
                    assert_eq!(version, "v1", "v2 fails, or the guard already rolled back");
                    break 'requests;
                }
            }
        }
    }
    let started = Instant::now();
    while proxy.admin("SELECT default_version FROM viewgate.settings") != "v1" {
        assert!(
            started.elapsed() < ACT_WAIT,
            "the guard never rolled back ({failed} failed requests)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "rolled back {:?} after the last of {failed} failed requests",
        started.elapsed()
    );
    let min: u64 = MIN_QUERIES.parse().unwrap();
    let per_proxy: Vec<u64> = proxy
        .admin("SELECT string_agg(queries::text, ',' ORDER BY proxy_id) FROM viewgate.cutover_guard_counts")
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(per_proxy.len(), 2, "both proxies reported: {per_proxy:?}");
    assert!(
        per_proxy.iter().all(|&n| n < min) && per_proxy.iter().sum::<u64>() >= min,
        "each proxy alone is under the minimum, together they reach it: {per_proxy:?}"
    );
    let guard = proxy.admin(
        "SELECT state || ' ' || queries || ' ' || errors || ' ' || reason FROM viewgate.cutover_guards",
    );
    assert!(guard.starts_with("tripped "), "{guard}");
    assert!(guard.contains("across every proxy"), "{guard}");
    let history = proxy.admin(
        "SELECT action || ' ' || success || ' ' || array_to_string(versions, ',') || ' ' || error \
         FROM viewgate.apply_history WHERE action = 'rollback'",
    );
    assert!(
        history.starts_with("rollback true v2,v1 cutover guard: version v2 failed"),
        "{history}"
    );
    assert!(
        history.contains("the default version is v1 again"),
        "{history}"
    );
    for port in ports {
        wait_for_default(port, "v1").await;
    }

    // A healthy cutover: the window passes under the threshold and the cutover holds.
    let out = run_ok(Command::new(viewgate_binary()).args([
        "cutover",
        "--to",
        "v3",
        "--guard-error-rate",
        "0.2",
        "--guard-window",
        "3s",
        "--guard-min-queries",
        MIN_QUERIES,
        "--database",
        &database,
    ]));
    assert!(out.contains("default version: v1 -> v3"), "{out}");
    let started = Instant::now();
    let mut served = 0;
    while proxy.admin("SELECT state FROM viewgate.cutover_guards ORDER BY id DESC LIMIT 1")
        == "watching"
    {
        assert!(started.elapsed() < ACT_WAIT, "the guard never ended");
        for port in ports {
            let version = probe(port).await.expect("v3 serves");
            assert!(version == "v3" || version == "v1", "{version}");
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let guard = proxy.admin(
        "SELECT state || ' ' || errors || ' ' || reason FROM viewgate.cutover_guards ORDER BY id DESC LIMIT 1",
    );
    assert!(
        guard.starts_with("held 0 cutover guard: version v3 held"),
        "{guard}"
    );
    assert!(served > 0);
    assert_eq!(
        proxy.admin("SELECT default_version FROM viewgate.settings"),
        "v3"
    );
    assert_eq!(
        proxy.admin(
            "SELECT string_agg(action || array_to_string(versions, '>'), ' ' ORDER BY id) \
             FROM viewgate.apply_history WHERE action IN ('cutover', 'rollback', 'guard')"
        ),
        "cutover>v1 cutoverv1>v2 rollbackv2>v1 cutoverv1>v3 guardv3"
    );
    // A rollback after a tripped guard returns to what the last flip replaced.
    let out = run_ok(Command::new(viewgate_binary()).args([
        "cutover",
        "--rollback",
        "--database",
        &database,
    ]));
    assert!(out.contains("default version: v3 -> v1"), "{out}");

    // A shadow run from v1 to v4 finds every statement answered differently; a guarded cutover
    // to v4 then rolls back on the shadow run's figures although v4 raises no error.
    for port in ports {
        wait_for_default(port, "v1").await;
    }
    run_ok(Command::new(viewgate_binary()).args([
        "shadow",
        "start",
        "--from",
        "v1",
        "--to",
        "v4",
        "--rate",
        "1",
        "--database",
        &database,
    ]));
    let differing =
        "SELECT coalesce(sum((counts ->> 'diff')::bigint), 0) FROM viewgate.shadow_counts";
    let started = Instant::now();
    while proxy.admin(differing).parse::<u64>().unwrap() < min {
        assert!(
            started.elapsed() < ACT_WAIT,
            "the shadow run found too little"
        );
        for port in ports {
            assert_eq!(probe(port).await.as_deref(), Ok("v1"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_ok(Command::new(viewgate_binary()).args([
        "cutover",
        "--to",
        "v4",
        "--guard-error-rate",
        "0.2",
        "--guard-min-queries",
        MIN_QUERIES,
        "--database",
        &database,
    ]));
    let started = Instant::now();
    while proxy.admin("SELECT state FROM viewgate.cutover_guards ORDER BY id DESC LIMIT 1")
        == "watching"
    {
        assert!(
            started.elapsed() < ACT_WAIT,
            "the guard never judged the shadow run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = proxy.admin(
        "SELECT state || ' ' || reason FROM viewgate.cutover_guards ORDER BY id DESC LIMIT 1",
    );
    assert!(
        reason.starts_with("tripped cutover guard: the shadow run found"),
        "{reason}"
    );
    assert_eq!(
        proxy.admin("SELECT default_version FROM viewgate.settings"),
        "v1"
    );

    second_shutdown.close_sessions();
    let _ = second_thread.join();
}
