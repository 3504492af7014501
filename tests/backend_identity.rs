//! The backend identity a client is told (BackendKeyData) is its upstream backend's real
//! process id, through the proxy against a real Postgres: `pg_backend_pid()`,
//! `pg_stat_activity`, the session's own NOTIFYs and `pg_terminate_backend` agree with it,
//! while cancelling still goes through the proxy's own secret.

use crate::common;

use std::time::Duration;

use common::{TestProxy, raw};

/// Starts a raw session and returns it with the (process id, secret) it was told.
fn session_with_key(proxy: &TestProxy) -> (std::net::TcpStream, u32, u32) {
    raw::start_session_with_key(proxy.address, "postgres")
}

fn one_value(stream: &mut std::net::TcpStream, sql: &str) -> String {
    raw::first_column(&raw::simple_query(stream, sql))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

fn cancel(proxy: &TestProxy, pid: u32, secret: u32) {
    raw::send_cancel(proxy.address, pid, &secret.to_be_bytes());
}

#[test]
fn clients_are_told_the_real_backend_pid_and_cancel_with_the_proxys_secret() {
    let proxy = TestProxy::start();
    let (mut session, pid, secret) = session_with_key(&proxy);
    assert_eq!(
        one_value(&mut session, "SELECT pg_backend_pid()"),
        pid.to_string()
    );
    assert_eq!(
        one_value(
            &mut session,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")
        ),
        "1"
    );
    // The session's own notifications carry the pid it was told.
    let messages = raw::simple_query(&mut session, "LISTEN ch; NOTIFY ch, 'mine'");
    let notification = messages
        .iter()
        .find(|(tag, _)| *tag == b'A')
        .expect("a NotificationResponse");
    assert_eq!(
        u32::from_be_bytes(notification.1[..4].try_into().unwrap()),
        pid
    );

    // The secret is the proxy's, not the upstream's: a wrong one cancels nothing, the right
    // one (with the pid) cancels.
    let (code, _) = raw::sleep_outcome(&mut session, 0.8, || cancel(&proxy, pid, secret ^ 1));
    assert_eq!(code, None, "a wrong secret must not cancel");
    let (code, elapsed) = raw::sleep_outcome(&mut session, 30.0, || cancel(&proxy, pid, secret));
    assert_eq!(code.as_deref(), Some("57014"));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let (code, _) = raw::sleep_outcome(&mut session, 0.8, || cancel(&proxy, pid ^ 1, secret));
    assert_eq!(code, None, "a wrong pid must not cancel");

    // Another session can terminate this one by the pid its driver reported.
    let (mut other, other_pid, _) = session_with_key(&proxy);
    assert_ne!(other_pid, pid);
    assert_eq!(
        one_value(&mut other, &format!("SELECT pg_terminate_backend({pid})")),
        "t"
    );
    let report = raw::expect_error(&mut session);
    assert_eq!(report.code, "57P01", "{report:?}");
}
