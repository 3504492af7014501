//! 1,000 concurrent clients through one `viewgate serve`, all active at once: half at v1 and
//! half at v2 of the seed example, half on the simple and half on the extended protocol, each
//! inserting a row and reading it back in a loop, against a Postgres configured for them
//! (`max_connections` above the client count). Zero errors and zero lost writes are asserted;
//! the proxy's RSS and CPU time per client are printed for docs/reliability.md.
//!
//! Ignored by default (a minute of both cores and a thousand Postgres backends):
//! `bench/clients.sh` runs it in release; `VG_BENCH_CLIENTS` and
//! `VG_BENCH_SECONDS` change the client count and the active window (not `VIEWGATE_*`: the
//! proxy reads every such variable as configuration).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::ProxyProcess;
use common::versions::apply_example;
use tokio_postgres::NoTls;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

const DEFAULT_CLIENTS: usize = 1000;
const DEFAULT_SECONDS: u64 = 20;
/// Connections opened at once while the clients log in (the listen backlog is finite).
const CONNECT_CONCURRENCY: usize = 50;
/// Kernel clock ticks per second, for /proc/PID/stat's CPU times.
const TICKS_PER_SECOND: f64 = 100.0;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// User plus system CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / TICKS_PER_SECOND
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute of load with a thousand Postgres backends: bench/clients.sh"]
async fn a_thousand_active_clients_at_two_versions_with_zero_errors() {
    let clients: usize = setting("VG_BENCH_CLIENTS", DEFAULT_CLIENTS);
    let seconds: u64 = setting("VG_BENCH_SECONDS", DEFAULT_SECONDS);
    let cluster = ThrowawayCluster::start(&ClusterOptions {
        settings: vec![
            format!("max_connections = {}", clients + 100),
            "shared_buffers = 256MB".into(),
        ],
        ..ClusterOptions::default()
    })
    .unwrap();
    apply_example(&cluster);
    let catalog = cluster.url(SUPERUSER, "postgres");
    let limit = (clients + 50).to_string();
    let process = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CATALOG", catalog.as_str()),
            ("VIEWGATE_MAX_CLIENT_CONNECTIONS", limit.as_str()),
            ("VIEWGATE_LOG_LEVEL", "warn"),
        ],
    );
    let pid = process.child.id();
    let port = process.port;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib(pid);

    // Everyone logs in first, then all start together.
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let connecting = (0..clients).map(|i| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.unwrap();
            let version = if i % 2 == 0 { "v1" } else { "v2" };
            let url = format!(
                "postgres://{SUPERUSER}@127.0.0.1:{port}/postgres?options=-c%20viewgate.version%3D{version}"
            );
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        }
    });
    let connected = futures_util::future::join_all(connecting).await;
    let connect_errors: Vec<String> = connected
        .iter()
        .filter_map(|c| c.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(connect_errors.is_empty(), "{connect_errors:?}");
    let rss_connected = rss_kib(pid);

    let committed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let peak = Arc::new(AtomicU64::new(rss_connected));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = connected
        .into_iter()
        .map(Result::unwrap)
        .enumerate()
        .map(|(i, client)| {
            let (committed, errors) = (committed.clone(), errors.clone());
            tokio::spawn(async move {
                let extended = i % 4 >= 2;
                let name = format!("client-{i}");
                while Instant::now() < deadline {
                    let outcome = if extended {
                        async {
                            let row = client
                                .query_one(
                                    "INSERT INTO model_metadata (model_name, model_version) VALUES ($1, '1') RETURNING id",
                                    &[&name],
                                )
                                .await?;
                            let id: i64 = row.get(0);
                            client
                                .query_one("SELECT * FROM model_metadata WHERE id = $1", &[&id])
                                .await
                                .map(|_| ())
                        }
                        .await
                    } else {
                        client
                            .simple_query(&format!(
                                "INSERT INTO model_metadata (model_name, model_version) VALUES ('{name}', '1'); \
                                 SELECT * FROM model_metadata WHERE model_name = '{name}' ORDER BY id DESC LIMIT 1"
                            ))
                            .await
                            .map(|_| ())
                    };
                    match outcome {
                        Ok(()) => {
                            committed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            errors.lock().unwrap().push(error.to_string());
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    sampler.abort();
    let rss_peak = peak.load(Ordering::Relaxed);
    let committed = committed.load(Ordering::Relaxed);
    let rows: u64 = cluster
        .psql("postgres", "SELECT count(*) FROM model_metadata")
        .unwrap()
        .parse()
        .unwrap();
    let errors = errors.lock().unwrap().clone();
    println!(
        "{clients} clients, {elapsed:.1} s: {committed} transactions ({:.0}/s), {} errors, rows {rows}",
        committed as f64 / elapsed,
        errors.len()
    );
    println!(
        "proxy RSS: idle {rss_idle} KiB, {clients} connected {rss_connected} KiB ({:.1} KiB/client), peak under load {rss_peak} KiB ({:.1} KiB/client)",
        (rss_connected - rss_idle) as f64 / clients as f64,
        (rss_peak - rss_idle) as f64 / clients as f64
    );
    println!(
        "proxy CPU: {cpu:.1} s over {elapsed:.1} s = {:.2} cores; {:.3} ms per client-second; {:.1} µs per transaction",
        cpu / elapsed,
        cpu * 1000.0 / elapsed / clients as f64,
        cpu * 1e6 / committed.max(1) as f64
    );
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert!(committed >= clients as u64, "every client committed");
    assert_eq!(rows, committed, "every acknowledged insert is in the table");
}
