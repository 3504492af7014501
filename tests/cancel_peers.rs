//! Cancel across replicas: two `viewgate serve` processes in front of one real Postgres, each
//! configured with its own `peer_id` and the other as a peer. A query started through one is
//! cancelled by a CancelRequest sent to the other; keys naming no known replica, keys another
//! replica already forwarded and keys of the wrong length are dropped without effect; a peer
//! that is down or never answers costs the receiving proxy a bounded wait and nothing else.

use crate::common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ProxyProcess, raw};
use tokio_postgres::NoTls;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};
use viewgate::protocol::cancel_key::{MAX_PEER_ID, issue_secret, mark_forwarded, read_secret};

/// Long enough that only a cancel ends it within the test.
const SLEEP_SQL: &str = "SELECT pg_sleep(60)";

/// Anything slower than this is a hang, not a slow machine.
const HUNG: Duration = Duration::from_secs(20);

/// A replica's `VIEWGATE_*` peering settings: its own id and the others' (id, port).
fn peering_env(own_id: u32, peers: &[(u32, u16)]) -> Vec<(String, String)> {
    let list: Vec<String> = peers
        .iter()
        .map(|(id, port)| format!(r#"{{id = {id}, address = "127.0.0.1:{port}"}}"#))
        .collect();
    vec![
        ("VIEWGATE_PEER_ID".into(), own_id.to_string()),
        ("VIEWGATE_PEERS".into(), format!("[{}]", list.join(", "))),
    ]
}

fn start_replica(cluster: &ThrowawayCluster, port: u16, env: &[(String, String)]) -> ProxyProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ProxyProcess::start_on(cluster, port, &env)
}

/// Two replicas, A (peer 1) and B (peer 2), each knowing the other.
fn two_replicas(cluster: &ThrowawayCluster) -> (ProxyProcess, ProxyProcess) {
    let (port_a, port_b) = (free_port().unwrap(), free_port().unwrap());
    let a = start_replica(cluster, port_a, &peering_env(1, &[(2, port_b)]));
    let b = start_replica(cluster, port_b, &peering_env(2, &[(1, port_a)]));
    (a, b)
}

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn url(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres")
}

/// Waits until `SLEEP_SQL` runs in Postgres (the cancel then has something to end).
fn wait_until_sleeping(cluster: &ThrowawayCluster) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '{SLEEP_SQL}'"
    );
    let running = common::wait_until(HUNG, || cluster.psql("postgres", &sql).unwrap() == "1");
    assert!(running, "the sleep did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_started_through_one_replica_is_cancelled_through_the_other() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let (a, b) = two_replicas(&cluster);
    for (started_on, cancelled_on) in [(&a, &b), (&b, &a)] {
        let (client, connection) = tokio_postgres::connect(&url(started_on.port), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let cancel = client.cancel_token();
        let started = Instant::now();
        let sleeping = tokio::spawn(async move { client.simple_query(SLEEP_SQL).await });
        // psql blocks; the runtime's other thread drives the client meanwhile.
        tokio::task::block_in_place(|| wait_until_sleeping(&cluster));
        // tokio-postgres's own cancel, sent to the replica that does not hold the session.
        let other = tokio::net::TcpStream::connect(address(cancelled_on.port))
            .await
            .unwrap();
        cancel.cancel_query_raw(other, NoTls).await.unwrap();
        let error = tokio::time::timeout(HUNG, sleeping)
            .await
            .expect("the cancelled query ends")
            .unwrap()
            .expect_err("the query is cancelled");
        let elapsed = started.elapsed();
        let db = error.as_db_error().expect("a SQLSTATE from Postgres");
        assert_eq!(db.code().code(), "57014", "{db:?}");
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
        println!(
            "started on :{} cancelled through :{}: ended after {elapsed:?}",
            started_on.port, cancelled_on.port
        );
    }
}

/// A raw session on `port` and the cancel key it was told (process id, secret).
fn session_with_key(port: u16) -> (TcpStream, u32, u32) {
    raw::start_session_with_key(address(port), SUPERUSER)
}

/// Sends a CancelRequest with `secret` (any length) to `port`; returns once the proxy has
/// closed the connection (it has then decided), and how long that took.
fn send_cancel(port: u16, pid: u32, secret: &[u8]) -> Duration {
    let started = Instant::now();
    raw::send_cancel(address(port), pid, secret);
    started.elapsed()
}

/// As `send_cancel` to `replica`, failing with what the replica logged when it does not
/// close the connection.
fn send_cancel_to(replica: &ProxyProcess, pid: u32, secret: &[u8]) -> Duration {
    let started = Instant::now();
    let closed = raw::cancel_is_closed(address(replica.port), pid, secret);
    assert!(
        closed,
        "the replica did not close the cancel connection within {:?}; its log:\n{}",
        started.elapsed(),
        replica.log()
    );
    started.elapsed()
}

/// Runs `pg_sleep(seconds)` on `stream`, calls `during` meanwhile, and returns the SQLSTATE
/// it ended with, if any.
fn sleep_outcome(stream: &mut TcpStream, seconds: f64, during: impl FnOnce()) -> Option<String> {
    raw::sleep_outcome(stream, seconds, during).0
}

/// A new session on `port` answers a query.
fn serves(port: u16) -> bool {
    let (mut stream, _, _) = session_with_key(port);
    raw::first_column(&raw::simple_query(&mut stream, "SELECT 42")) == ["42"]
}

#[test]
fn keys_naming_no_known_replica_or_already_forwarded_are_dropped() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let (mut a, mut b) = two_replicas(&cluster);
    let (mut session, pid, secret) = session_with_key(a.port);
    let issued = read_secret(secret);
    assert_eq!(issued.peer_id, 1, "A's keys name A: {secret:#x}");
    assert!(!issued.forwarded);

    let unknown_peer = issue_secret(Some(7), secret);
    let highest_peer = issue_secret(Some(MAX_PEER_ID), secret);
    let code = sleep_outcome(&mut session, 1.5, || {
        // Names a peer neither replica knows: dropped by both.
        send_cancel(b.port, pid, &unknown_peer.to_be_bytes());
        send_cancel(a.port, pid, &highest_peer.to_be_bytes());
        // A's real key already forwarded once: B must not forward it again (if it did, A
        // would cancel the statement).
        send_cancel(b.port, pid, &mark_forwarded(secret).to_be_bytes());
        // Longer than any key viewgate issues (protocol 3.2 allows up to 256 bytes).
        send_cancel(b.port, pid, &[0xab; 32]);
    });
    assert_eq!(code, None, "none of these may cancel the statement");
    assert!(a.child.try_wait().unwrap().is_none(), "A is running");
    assert!(b.child.try_wait().unwrap().is_none(), "B is running");
    assert!(serves(a.port) && serves(b.port));

    // The same session's real key, sent to B, does cancel: the drops above were the keys'.
    let code = sleep_outcome(&mut session, 30.0, || {
        send_cancel(b.port, pid, &secret.to_be_bytes());
    });
    assert_eq!(code.as_deref(), Some("57014"));
}

#[test]
fn a_peer_that_is_down_or_silent_neither_hangs_nor_stops_the_receiving_replica() {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    // Peer 2: nothing listens on its port. Peer 3: accepts connections (the kernel's backlog)
    // and never reads or answers.
    let down_port = free_port().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let port_a = free_port().unwrap();
    let mut a = start_replica(
        &cluster,
        port_a,
        &peering_env(1, &[(2, down_port), (3, silent_port)]),
    );
    let (mut session, pid, secret) = session_with_key(a.port);

    let to_down = issue_secret(Some(2), secret);
    let to_silent = issue_secret(Some(3), secret);
    let mut waits = Vec::new();
    let code = sleep_outcome(&mut session, 1.0, || {
        waits.push(send_cancel_to(&a, pid, &to_down.to_be_bytes()));
        waits.push(send_cancel_to(&a, pid, &to_silent.to_be_bytes()));
    });
    assert_eq!(code, None, "a cancel for another replica does not end ours");
    println!(
        "cancel to a down peer answered in {:?}, to a silent one in {:?}",
        waits[0], waits[1]
    );
    for wait in &waits {
        assert!(*wait < HUNG, "{wait:?}");
    }
    // Several at once towards the silent peer: each ends, the replica keeps serving meanwhile.
    let concurrent: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || send_cancel(port_a, pid, &to_silent.to_be_bytes())))
        .collect();
    assert!(
        serves(a.port),
        "A serves while cancels wait on a silent peer"
    );
    for handle in concurrent {
        let wait = handle.join().unwrap();
        assert!(wait < HUNG, "{wait:?}");
    }
    assert!(a.child.try_wait().unwrap().is_none(), "A is running");
    assert!(serves(a.port));
    let code = sleep_outcome(&mut session, 30.0, || {
        send_cancel(a.port, pid, &secret.to_be_bytes());
    });
    assert_eq!(code.as_deref(), Some("57014"), "A's own keys still cancel");
    drop(silent);
}
