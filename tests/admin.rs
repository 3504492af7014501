//! The admin HTTP API of `viewgate serve`: health and readiness for anyone, metrics only with
//! the bearer token, and no start on a public address without a token.

use crate::common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::get;
use common::raw;
use common::{ProxyProcess, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, ThrowawayCluster, free_port};

const TOKEN: &str = "test-admin-token";

#[test]
fn health_is_open_and_metrics_need_the_token() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let admin_port = free_port().unwrap();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let process = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_ADMIN_LISTEN", admin_listen.as_str()),
            ("VIEWGATE_ADMIN_TOKEN", TOKEN),
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(
        ("127.0.0.1", admin_port)
    )
    .is_ok()));
    assert_eq!(get(admin_port, "/healthz", None), (200, "ok\n".into()));
    assert_eq!(get(admin_port, "/readyz", None), (200, "ready\n".into()));
    assert_eq!(get(admin_port, "/metrics", None).0, 401);
    assert_eq!(get(admin_port, "/metrics", Some("wrong")).0, 401);

    // One session through the proxy shows up in the counters (the harness's readiness probe
    // was a connection too, hence the difference rather than an absolute count). The kernel
    // completes the probe's connection before the proxy accepts it, so wait until the proxy
    // has counted it and seen it go (a loaded machine once counted it after the first read).
    let counters = || {
        let text = get(admin_port, "/metrics", Some(TOKEN)).1;
        let count = |name| metric(&text, name);
        (
            count("viewgate_sessions_total"),
            count("viewgate_sessions_active"),
        )
    };
    assert!(wait_until(Duration::from_secs(10), || {
        let (accepted, active) = counters();
        accepted >= 1 && active == 0
    }));
    let (accepted_before, _) = counters();
    let address = format!("127.0.0.1:{}", process.port).parse().unwrap();
    let (mut session, _) = raw::start_session(address, "postgres");
    raw::simple_query(&mut session, "SELECT 1");
    let (status, metrics) = get(admin_port, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(
        metric(&metrics, "viewgate_sessions_total"),
        accepted_before + 1
    );
    assert_eq!(metric(&metrics, "viewgate_sessions_active"), 1);
    assert_eq!(metric(&metrics, "viewgate_sessions_refused_total"), 0);
    for name in [
        "viewgate_rewrite_cache_hits_total",
        "viewgate_rewrite_cache_misses_total",
        "viewgate_rewrite_cache_evictions_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} counter\n{name} 0\n")),
            "{name} missing or not a counter in:\n{metrics}"
        );
    }
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn a_public_admin_address_without_a_token_is_refused() {
    let output = Command::new(viewgate_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "postgres://127.0.0.1:1",
        ])
        .env("VIEWGATE_ADMIN_LISTEN", "0.0.0.0:0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin_token must be set"), "{stderr}");
}
