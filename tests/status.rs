//! `viewgate status` and the per-version metrics: a proxy's heartbeat shows its live sessions
//! per version in the catalog, /metrics counts queries, errors by SQLSTATE class and latency
//! per version, and a proxy that stops gracefully leaves the catalog.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::http::{get, post_json, request};
use common::versions::apply_example;
use common::{ProxyProcess, run_ok, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};

const TOKEN: &str = "status-test-token";

fn status_json(database: &str) -> serde_json::Value {
    let out =
        run_ok(Command::new(viewgate_binary()).args(["status", "--json", "--database", database]));
    serde_json::from_str(&out).unwrap()
}

/// The value of the metric line starting with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_sessions_queries_and_errors_per_version() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    apply_example(&cluster);
    let database = cluster.url(SUPERUSER, "postgres");
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let mut process = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", database.as_str()),
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", process.port);
    let connect = |options: &'static str| {
        let url = format!("{url}{options}");
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
        }
    };
    let v1 = connect("").await;
    let v2 = connect("?options=-c%20viewgate.version%3Dv2").await;
    for _ in 0..3 {
        v1.simple_query("SELECT count(*) FROM model_metadata")
            .await
            .unwrap();
        v2.query("SELECT model_type FROM model_metadata", &[])
            .await
            .unwrap();
    }
    // model_type does not exist at v1: an undefined-column error (class 42) counted at v1.
    let error = v1
        .simple_query("SELECT model_type FROM model_metadata")
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42703");

    // tokio-postgres closes a dropped statement (Close, Sync) after `query` has returned, and
    // returns an error at the ErrorResponse, before the ReadyForQuery the proxy counts it at:
    // the last of each may still be on its way, so the snapshot is the first that has both.
    let v1_queries = "viewgate_version_queries_total{version=\"v1\"}";
    let v2_queries = "viewgate_version_queries_total{version=\"v2\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, metrics) = loop {
        let (status, metrics) = get(admin_port, "/metrics", Some(TOKEN));
        let counted =
            sample(&metrics, v1_queries) >= Some(4.0) && sample(&metrics, v2_queries) >= Some(9.0);
        if counted || std::time::Instant::now() > deadline {
            break (status, metrics);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "viewgate_version_sessions{version=\"v1\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "viewgate_version_sessions{version=\"v2\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "viewgate_version_sessions_by_reason{version=\"v2\",reason=\"declared\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, v1_queries), Some(4.0));
    // Each tokio-postgres `query` is three requests up to a Sync: prepare (Parse, Describe),
    // execute (Bind, Execute), and close the statement it dropped (Close).
    assert_eq!(sample(&metrics, v2_queries), Some(9.0));
    assert_eq!(
        sample(
            &metrics,
            "viewgate_version_errors_total{version=\"v1\",class=\"42\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "viewgate_version_query_seconds_count{version=\"v2\"}"
        ),
        Some(9.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "viewgate_version_query_seconds_bucket{version=\"v2\",le=\"+Inf\"}"
        ),
        Some(9.0)
    );

    // The heartbeat publishes the live sessions per version to the catalog.
    let mut seen = serde_json::Value::Null;
    let published = wait_until(Duration::from_secs(10), || {
        seen = status_json(&database);
        seen["sessions"] == serde_json::json!({"v1": 1, "v2": 1})
    });
    assert!(published, "status never showed the sessions: {seen:#}");
    let proxy = &seen["proxies"][0];
    assert_eq!(proxy["stale"], false);
    assert_eq!(proxy["default_version"], "v1");
    assert_eq!(proxy["listen"], format!("127.0.0.1:{}", process.port));
    assert_eq!(proxy["admin_listen"], admin_listen);
    assert_eq!(seen["default_version"], "v1");
    assert_eq!(
        seen["session_reasons"],
        serde_json::json!({"v1": {"default": 1}, "v2": {"declared": 1}})
    );
    let text = run_ok(Command::new(viewgate_binary()).args(["status", "--database", &database]));
    assert!(text.contains("default version: v1"), "{text}");
    assert!(text.contains("proxies: 1 live, 0 stale"), "{text}");
    assert!(text.contains("v1=1 v2=1"), "{text}");
    assert!(text.contains("1 live session(s) (declared: 1)"), "{text}");
    assert!(text.contains("rules:\n  (none"), "{text}");

    // A session that leaves is no longer counted; a proxy that stops leaves the catalog.
    drop(v2);
    assert!(wait_until(Duration::from_secs(10), || status_json(
        &database
    )["sessions"]
        == serde_json::json!({"v1": 1})));
    drop(v1);
    let pid = process.child.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    assert!(process.child.wait().unwrap().success());
    assert_eq!(status_json(&database)["proxies"], serde_json::json!([]));
}

#[test]
fn status_without_a_catalog_says_how_to_create_one() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let output = Command::new(viewgate_binary())
        .args(["status", "--database", &cluster.url(SUPERUSER, "postgres")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no viewgate catalog"), "{stderr}");
}

#[test]
fn the_admin_api_runs_status_and_cutover_with_the_token_only() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    apply_example(&cluster);
    let database = cluster.url(SUPERUSER, "postgres");
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let _process = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", database.as_str()),
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    let cutover = r#"{"to": "v2"}"#;
    for token in [None, Some("wrong")] {
        assert_eq!(get(admin_port, "/status", token).0, 401);
        assert_eq!(post_json(admin_port, "/cutover", token, cutover).0, 401);
    }
    assert_eq!(
        status_json(&database)["default_version"],
        "v1",
        "refused requests change nothing"
    );

    let (code, body) = get(admin_port, "/status", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["default_version"], "v1");
    assert_eq!(status["versions"].as_array().unwrap().len(), 2);

    let (code, body) = post_json(admin_port, "/cutover", Some(TOKEN), cutover);
    assert_eq!(code, 200, "{body}");
    assert_eq!(status_json(&database)["default_version"], "v2");
    let (code, body) = post_json(admin_port, "/cutover", Some(TOKEN), r#"{"rollback": true}"#);
    assert_eq!(code, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (reply["from"].as_str(), reply["to"].as_str()),
        (Some("v2"), Some("v1"))
    );
    // It answers once the proxy (the only one) has loaded the change.
    assert_eq!(
        reply["proxies"]["serving"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(reply["proxies"]["behind"], serde_json::json!([]), "{body}");

    let (code, body) = post_json(admin_port, "/cutover", Some(TOKEN), r#"{"to": "v9"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("v9"), "{body}");
    let (code, _) = post_json(
        admin_port,
        "/cutover",
        Some(TOKEN),
        r#"{"to": "v2", "rollback": true}"#,
    );
    assert_eq!(code, 400);

    // A guarded cutover: bad guard options are refused before anything changes; a good one
    // starts a guard, which a rollback supersedes.
    for bad in [
        r#"{"to": "v2", "guard_error_rate": 2}"#,
        r#"{"to": "v2", "guard_error_rate": 0.1, "guard_window": "1h"}"#,
        r#"{"rollback": true, "guard_error_rate": 0.1}"#,
    ] {
        let (code, body) = post_json(admin_port, "/cutover", Some(TOKEN), bad);
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body.contains("guard"), "{body}");
    }
    assert_eq!(status_json(&database)["default_version"], "v1");
    let guarded = r#"{"to": "v2", "guard_error_rate": 0.5, "guard_window": "30s"}"#;
    let (code, body) = post_json(admin_port, "/cutover", Some(TOKEN), guarded);
    assert_eq!(code, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(reply["guard"].as_i64().is_some(), "{body}");
    let guard_state = || {
        cluster
            .psql(
                "postgres",
                "SELECT state || ' ' || from_version || '>' || to_version FROM viewgate.cutover_guards",
            )
            .unwrap()
    };
    assert_eq!(guard_state(), "watching v1>v2");
    let (code, body) = post_json(admin_port, "/cutover", Some(TOKEN), r#"{"rollback": true}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(guard_state(), "superseded v1>v2");

    // Routing rules: add, list, set weights, remove — the CLI's operations over HTTP.
    let rule = r#"{"split": "v2=10,v1=90", "application": "web-*", "guard_error_rate": 0.05, "guard_window": "30s"}"#;
    assert_eq!(post_json(admin_port, "/routes", None, rule).0, 401);
    assert_eq!(get(admin_port, "/routes", Some("wrong")).0, 401);
    let (code, body) = post_json(admin_port, "/routes", Some(TOKEN), rule);
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, body) = get(admin_port, "/routes", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["rules"][0]["id"], id);
    assert_eq!(listed["rules"][0]["match_application"], "web-*");
    let weights = format!("/routes/{id}/weights");
    let (code, body) = post_json(
        admin_port,
        &weights,
        Some(TOKEN),
        r#"{"weights": "v2=30,v1=70"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = post_json(
        admin_port,
        &weights,
        Some(TOKEN),
        r#"{"weights": "v2=30,v1=60"}"#,
    );
    assert_eq!(code, 400, "weights must sum to 100: {body}");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                &format!("SELECT assign::text FROM viewgate.routing_rules WHERE id = {id}")
            )
            .unwrap(),
        r#"{"split": [["v2", 30], ["v1", 70]]}"#
    );
    let enabled = format!("/routes/{id}/enabled");
    let (code, body) = post_json(admin_port, &enabled, Some(TOKEN), r#"{"enabled": false}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                &format!("SELECT enabled FROM viewgate.routing_rules WHERE id = {id}")
            )
            .unwrap(),
        "f"
    );
    let path = format!("/routes/{id}");
    assert_eq!(request(admin_port, "DELETE", &path, None, None).0, 401);
    assert_eq!(
        request(admin_port, "DELETE", &path, Some(TOKEN), None).0,
        200
    );
    assert_eq!(
        request(admin_port, "DELETE", &path, Some(TOKEN), None).0,
        404
    );
    assert_eq!(status_json(&database)["rules"], serde_json::json!([]));
}

#[test]
fn an_upstream_cutover_that_leaves_a_live_proxy_behind_is_refused() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    apply_example(&cluster);
    let database = cluster.url(SUPERUSER, "postgres");
    let start = || {
        let admin_listen = format!("127.0.0.1:{}", free_port().unwrap());
        let process = ProxyProcess::start(
            &cluster,
            &[
                ("VIEWGATE_CATALOG", database.as_str()),
                ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
                ("VIEWGATE_ADMIN_TOKEN", TOKEN),
            ],
        );
        (process, admin_listen)
    };
    let (_first, first_admin) = start();
    let (_second, _) = start();
    assert!(wait_until(Duration::from_secs(10), || {
        status_json(&database)["proxies"].as_array().map(Vec::len) == Some(2)
    }));
    let output = Command::new(viewgate_binary())
        .args([
            "cutover",
            "--upstream",
            &format!("postgres://127.0.0.1:{}", cluster.port()),
        ])
        .args(["--database", &database, "--token", TOKEN])
        .args(["--admin", &format!("http://{first_admin}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the catalog shows 2 live proxies but --admin names 1"),
        "{stderr}"
    );
    let (_, pause) = get(
        first_admin.rsplit(':').next().unwrap().parse().unwrap(),
        "/pause",
        Some(TOKEN),
    );
    assert!(
        pause.contains("\"state\":\"open\""),
        "nothing was paused: {pause}"
    );
}
