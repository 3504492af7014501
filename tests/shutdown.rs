//! Graceful shutdown of the `viewgate serve` process: on SIGTERM it stops accepting, lets
//! running work finish, and after `shutdown_timeout` closes what is left with 57P01.

use crate::common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::raw::{self, PROTOCOL_3_0};
use common::{ProxyProcess, wait_until};
use viewgate::pg_cluster::{ClusterOptions, ThrowawayCluster};

/// Upper bounds generous enough for a loaded CI machine; what they guard against is a proxy
/// that never reacts, not a slow one.
const LISTENER_CLOSE_LIMIT: Duration = Duration::from_secs(5);
const IDLE_EXIT_LIMIT: Duration = Duration::from_secs(10);

fn send_signal(process: &ProxyProcess, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_drains_then_closes_sessions_with_57p01() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let mut process = ProxyProcess::start(&cluster, &[("VIEWGATE_SHUTDOWN_TIMEOUT", "2s")]);
    let address = format!("127.0.0.1:{}", process.port).parse().unwrap();
    let (mut idle, _) = raw::start_session(address, "postgres");
    let (mut busy, _) = raw::start_session(address, "postgres");
    busy.write_all(&raw::query("SELECT pg_sleep(1), 'completed'"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let signalled = Instant::now();
    send_signal(&process, "TERM");
    assert!(
        wait_until(LISTENER_CLOSE_LIMIT, || std::net::TcpStream::connect(
            address
        )
        .is_err()),
        "the listener must close at once"
    );
    // Work in flight when the signal came finishes normally.
    let mut rows = Vec::new();
    loop {
        let message = raw::read_message(&mut busy).expect("busy session answered");
        let done = message.0 == b'Z';
        rows.push(message);
        if done {
            break;
        }
    }
    assert_eq!(raw::first_column(&rows), vec![""], "pg_sleep returns void");
    assert!(rows.iter().all(|(tag, _)| *tag != b'E'));
    // After the timeout, the remaining sessions are told why they end.
    let report = raw::expect_error(&mut idle);
    assert_eq!(
        (report.severity.as_str(), report.code.as_str()),
        ("FATAL", "57P01"),
        "{report:?}"
    );
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "closed after {waited:?}, before the timeout"
    );
    let status = process.child.wait().unwrap();
    assert!(status.success(), "viewgate exits cleanly: {status}");
}

#[test]
fn sigint_with_no_sessions_exits_at_once() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let mut process = ProxyProcess::start(&cluster, &[]);
    // A session that connects and leaves before the signal must not hold shutdown up.
    let address = format!("127.0.0.1:{}", process.port).parse().unwrap();
    let mut stream = raw::connect(address);
    stream
        .write_all(&raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]))
        .unwrap();
    drop(stream);
    let signalled = Instant::now();
    send_signal(&process, "INT");
    let status = process.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() < IDLE_EXIT_LIMIT,
        "took {:?}",
        signalled.elapsed()
    );
}
