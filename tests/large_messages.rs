//! Large client messages stream through the proxy instead of being buffered whole: a Bind
//! carrying a 64 MiB parameter raises the proxy's peak memory by far less than the message's
//! size.
//! (The proxy reads every client message's type — the pause gate needs it — but only Query
//! and Parse whole.)

use crate::common;

use common::ProxyProcess;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

/// The parameter's size: large next to the proxy's own footprint.
const PARAMETER_LEN: usize = 64 << 20;
/// How much the proxy's peak memory may grow while the Bind passes: half the parameter, which
/// a buffered Bind would exceed whatever the proxy's own footprint. (A bound on the peak
/// itself, 40 MiB, failed at 41.7 MiB on a loaded machine with the Bind streamed: the
/// footprint of a debug build's runtime moves with the load.)
const PEAK_GROWTH_LIMIT_KIB: u64 = (PARAMETER_LEN as u64 / 2) >> 10;

/// The peak resident set size of a process, in KiB (`VmHWM` in /proc/PID/status).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_with_a_large_parameter_streams_through() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    cluster
        .psql(
            "postgres",
            "CREATE TABLE blobs (id int PRIMARY KEY, body bytea NOT NULL)",
        )
        .unwrap();
    let proxy = ProxyProcess::start(&cluster, &[]);
    let url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", proxy.port);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.unwrap();
    let peak_before = peak_rss_kib(proxy.child.id());
    let body = vec![0xA5u8; PARAMETER_LEN];
    client
        .execute("INSERT INTO blobs VALUES (1, $1)", &[&body])
        .await
        .unwrap();
    let stored: i32 = client
        .query_one("SELECT length(body) FROM blobs WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored as usize, PARAMETER_LEN);
    let peak = peak_rss_kib(proxy.child.id());
    eprintln!(
        "viewgate peak RSS before a {} MiB Bind: {peak_before} KiB, after: {peak} KiB",
        PARAMETER_LEN >> 20
    );
    assert!(
        peak - peak_before < PEAK_GROWTH_LIMIT_KIB,
        "the proxy's peak RSS grew from {peak_before} to {peak} KiB: the Bind was buffered"
    );
}
