//! pgbench through the proxy in all three query modes, with concurrent clients.
//!
//! `-M simple` uses Query messages, `-M extended` unnamed Parse/Bind/Execute, `-M prepared`
//! named statements reused by every transaction. Eight clients on two threads run TPC-B-like
//! transactions (updates, an insert, a select) through the proxy; every one must succeed and
//! the totals must add up, on the proxy's side and in the database. The same runs again with
//! sessions on session threads (`session_threads`), one single-threaded runtime each.

use crate::common;

use std::process::Command;

use common::{TestProxy, run_ok};

const CLIENTS: u32 = 8;
const TRANSACTIONS_PER_CLIENT: u32 = 200;
/// Session threads for the runs that use them: fewer than the clients, so threads share.
const SESSION_THREADS: usize = 2;

fn pgbench(proxy: &TestProxy) -> Command {
    let mut command = Command::new(proxy.cluster.bin("pgbench"));
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &proxy.port().to_string(),
        "-U",
        "postgres",
    ]);
    command
}

fn run_mode(mode: &str) {
    run_mode_on(mode, 0);
}

fn run_mode_on(mode: &str, session_threads: usize) {
    let proxy = TestProxy::start_with(Default::default(), |config| {
        config.session_threads = session_threads;
    });
    run_ok(pgbench(&proxy).args(["-i", "-s", "1", "-q", "postgres"]));
    assert_eq!(
        proxy.admin("SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );
    let out = run_ok(pgbench(&proxy).args([
        "-M",
        mode,
        "-c",
        &CLIENTS.to_string(),
        "-j",
        "2",
        "-t",
        &TRANSACTIONS_PER_CLIENT.to_string(),
        "-n",
        "postgres",
    ]));
    let total = CLIENTS * TRANSACTIONS_PER_CLIENT;
    assert!(
        out.lines()
            .any(|line| line == format!("query mode: {mode}")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|line| line
                == format!("number of transactions actually processed: {total}/{total}")),
        "{out}"
    );
    // pgbench 15+ counts failed transactions; older versions abort the client instead.
    if let Some(line) = out
        .lines()
        .find(|line| line.starts_with("number of failed transactions:"))
    {
        assert!(
            line.starts_with("number of failed transactions: 0 "),
            "{line}\n{out}"
        );
    }
    // Every transaction inserted one history row and moved balances consistently.
    assert_eq!(
        proxy.admin(
            "SELECT (SELECT count(*) FROM pgbench_history), \
             (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(abalance) FROM pgbench_accounts) \
             AND (SELECT sum(delta) FROM pgbench_history) = (SELECT sum(bbalance) FROM pgbench_branches)"
        ),
        format!("{total}|t")
    );
}

#[test]
fn pgbench_simple_protocol() {
    run_mode("simple");
}

#[test]
fn pgbench_extended_protocol() {
    run_mode("extended");
}

#[test]
fn pgbench_prepared_statements() {
    run_mode("prepared");
}

#[test]
fn pgbench_on_session_threads() {
    run_mode_on("simple", SESSION_THREADS);
    run_mode_on("prepared", SESSION_THREADS);
}
