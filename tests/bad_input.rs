//! Malformed and hostile clients: each gets a clear ErrorResponse with the right SQLSTATE where
//! the protocol allows one, only its own connection ends, and the proxy goes on serving others.

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::raw::{self, PROTOCOL_3_0};
use common::{TestProxy, versions, wait_until};
use viewgate::pg_cluster::ClusterOptions;

/// Asserts that a fresh, well-behaved client still gets served.
fn assert_still_serving(proxy: &TestProxy) {
    let (mut stream, _) = raw::start_session(proxy.address, "postgres");
    let rows = raw::first_column(&raw::simple_query(&mut stream, "SELECT 40 + 2"));
    assert_eq!(rows, vec!["42"]);
}

/// Sends `bytes` on a new connection and returns the ErrorResponse, asserting the connection
/// is then closed.
fn error_for(proxy: &TestProxy, bytes: &[u8]) -> raw::ErrorReport {
    let mut stream = raw::connect(proxy.address);
    stream.write_all(bytes).unwrap();
    let report = raw::expect_error(&mut stream);
    assert_eq!(report.severity, "FATAL");
    assert!(
        raw::is_closed(&mut stream),
        "connection must close after {report:?}"
    );
    report
}

#[test]
fn startup_packets_with_bad_lengths_or_garbage_are_refused() {
    let proxy = TestProxy::start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage (an HTTP request)",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("negative length", vec![0xff, 0xff, 0xff, 0xfe, 0, 3, 0, 0]),
        ("length too small", vec![0, 0, 0, 4, 0, 3, 0, 0]),
        ("length over 10,000", {
            let mut v = 10_001u32.to_be_bytes().to_vec();
            v.extend(PROTOCOL_3_0.to_be_bytes());
            v
        }),
        ("missing terminator", {
            let mut v = raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]);
            v.pop();
            let len = v.len() as u32;
            v[..4].copy_from_slice(&len.to_be_bytes());
            v
        }),
    ];
    for (what, bytes) in cases {
        let report = error_for(&proxy, &bytes);
        assert_eq!(report.code, "08P01", "{what}: {report:?}");
    }
    assert_still_serving(&proxy);
}

#[test]
fn unknown_protocol_versions_and_missing_user_are_refused() {
    let proxy = TestProxy::start();
    let report = error_for(
        &proxy,
        &raw::startup_packet(2 << 16, &[("user", "postgres")]),
    );
    assert_eq!(report.code, "0A000", "{report:?}");
    assert!(
        report.message.contains("unsupported frontend protocol 2.0"),
        "{report:?}"
    );
    let report = error_for(
        &proxy,
        &raw::startup_packet(4 << 16, &[("user", "postgres")]),
    );
    assert_eq!(report.code, "0A000", "{report:?}");
    let report = error_for(
        &proxy,
        &raw::startup_packet(PROTOCOL_3_0, &[("database", "postgres")]),
    );
    assert_eq!(report.code, "28000", "{report:?}");
    assert_still_serving(&proxy);
}

#[test]
fn a_startup_parameter_given_twice_is_refused() {
    // Postgres takes the last of repeated parameters; the proxy must not route, version or
    // check the session by any other, so it takes none.
    let proxy = TestProxy::start();
    for params in [
        &[
            ("user", "postgres"),
            ("database", "nobody"),
            ("database", "postgres"),
        ][..],
        &[("user", "nobody"), ("user", "postgres")],
        &[
            ("user", "postgres"),
            ("search_path", "public"),
            ("SEARCH_PATH", "pg_catalog"),
        ],
    ] {
        let report = error_for(&proxy, &raw::startup_packet(PROTOCOL_3_0, params));
        assert_eq!(report.code, "08P01", "{params:?}: {report:?}");
        assert!(
            report.message.contains("is given more than once"),
            "{report:?}"
        );
    }
    assert_still_serving(&proxy);
}

#[test]
fn newer_minor_versions_and_extensions_are_negotiated_down() {
    let proxy = TestProxy::start();
    let mut stream = raw::connect(proxy.address);
    let packet = raw::startup_packet(
        PROTOCOL_3_0 | 2,
        &[("user", "postgres"), ("_pq_.compression", "on")],
    );
    stream.write_all(&packet).unwrap();
    let (tag, body) = raw::read_message(&mut stream).unwrap();
    assert_eq!(tag, b'v', "NegotiateProtocolVersion comes first");
    assert_eq!(
        &body[..8],
        &[0, 0, 0, 0, 0, 0, 0, 1],
        "minor 0, one unsupported option"
    );
    assert_eq!(&body[8..], b"_pq_.compression\0");
    while raw::read_message(&mut stream).unwrap().0 != b'Z' {}
    let rows = raw::first_column(&raw::simple_query(&mut stream, "SELECT 'negotiated'"));
    assert_eq!(rows, vec!["negotiated"]);
}

#[test]
fn bad_message_lengths_after_startup_end_only_that_session() {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.max_message_len = 4096;
    });
    let (mut bystander, _) = raw::start_session(proxy.address, "postgres");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", vec![b'Q', 0xff, 0xff, 0xff, 0xff]),
        ("length below 4", vec![b'Q', 0, 0, 0, 3]),
        ("length over max_message_len", {
            let mut v = vec![b'Q'];
            v.extend(5000u32.to_be_bytes());
            v
        }),
    ];
    for (what, bytes) in cases {
        let (mut stream, _) = raw::start_session(proxy.address, "postgres");
        stream.write_all(&bytes).unwrap();
        let report = raw::expect_error(&mut stream);
        assert_eq!(
            (report.severity.as_str(), report.code.as_str()),
            ("FATAL", "08P01"),
            "{what}: {report:?}"
        );
        assert!(raw::is_closed(&mut stream), "{what}: connection must close");
    }
    let rows = raw::first_column(&raw::simple_query(&mut bystander, "SELECT 'still here'"));
    assert_eq!(rows, vec!["still here"]);
}

#[test]
fn unknown_message_types_reach_postgres_which_refuses_them() {
    let proxy = TestProxy::start();
    let (mut stream, _) = raw::start_session(proxy.address, "postgres");
    stream.write_all(&raw::message(b'!', b"")).unwrap();
    let report = raw::expect_error(&mut stream);
    assert_eq!(report.code, "08P01", "{report:?}");
    assert!(
        report.message.contains("invalid frontend message type"),
        "{report:?}"
    );
    assert_still_serving(&proxy);
}

/// Number of client backends on the cluster other than the one asking.
fn client_backends(proxy: &TestProxy) -> usize {
    proxy
        .admin("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        .parse()
        .unwrap()
}

#[test]
fn truncated_message_then_disconnect_leaks_no_upstream_connection() {
    let proxy = TestProxy::start();
    let baseline = client_backends(&proxy);
    let (mut stream, _) = raw::start_session(proxy.address, "postgres");
    assert_eq!(client_backends(&proxy), baseline + 1);
    let mut partial = vec![b'Q'];
    partial.extend(100u32.to_be_bytes());
    partial.extend(b"SELECT");
    stream.write_all(&partial).unwrap();
    drop(stream);
    assert!(
        wait_until(Duration::from_secs(5), || client_backends(&proxy)
            == baseline),
        "the upstream connection must close when the client vanishes"
    );
    assert_still_serving(&proxy);
}

#[test]
fn client_vanishing_mid_query_cancels_the_upstream_query() {
    let proxy = TestProxy::start();
    let (mut stream, _) = raw::start_session(proxy.address, "postgres");
    stream
        .write_all(&raw::query("SELECT pg_sleep(60) /* abandoned */"))
        .unwrap();
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%abandoned%' AND pid <> pg_backend_pid()";
    assert!(wait_until(Duration::from_secs(5), || proxy.admin(running) == "1"));
    drop(stream);
    assert!(
        wait_until(Duration::from_secs(5), || proxy.admin(running) == "0"),
        "the upstream query must be cancelled and its connection closed"
    );
}

#[test]
fn a_client_that_never_finishes_startup_times_out() {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.startup_timeout = Duration::from_millis(300);
    });
    let mut silent = raw::connect(proxy.address);
    let report = raw::expect_error(&mut silent);
    assert_eq!(
        (report.severity.as_str(), report.code.as_str()),
        ("FATAL", "08P01"),
        "{report:?}"
    );
    assert!(raw::is_closed(&mut silent));
    // Half a startup packet is no better.
    let mut slow = raw::connect(proxy.address);
    slow.write_all(&raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")])[..6])
        .unwrap();
    assert_eq!(raw::expect_error(&mut slow).code, "08P01");
    assert_still_serving(&proxy);
}

#[test]
fn clients_over_the_limit_get_53300_and_capacity_comes_back() {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.max_client_connections = 2;
    });
    let (first, _) = raw::start_session(proxy.address, "postgres");
    let (mut second, _) = raw::start_session(proxy.address, "postgres");
    let report = error_for(
        &proxy,
        &raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]),
    );
    assert_eq!(report.code, "53300", "{report:?}");
    assert_eq!(report.message, "sorry, too many clients already");
    drop(first);
    assert!(wait_until(Duration::from_secs(5), || {
        let mut stream = raw::connect(proxy.address);
        stream
            .write_all(&raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]))
            .unwrap();
        matches!(raw::read_message(&mut stream), Some((b'R', _)))
    }));
    let rows = raw::first_column(&raw::simple_query(&mut second, "SELECT 2"));
    assert_eq!(rows, vec!["2"]);
}

#[test]
fn cancel_requests_with_unknown_keys_cancel_nothing() {
    let proxy = TestProxy::start();
    let (mut stream, _) = raw::start_session(proxy.address, "postgres");
    stream
        .write_all(&raw::query("SELECT pg_sleep(0.5), 'finished'"))
        .unwrap();
    for process_id in [0u32, 1, 12345, u32::MAX] {
        raw::send_cancel(proxy.address, process_id, &7u32.to_be_bytes());
    }
    let mut messages = Vec::new();
    loop {
        let message = raw::read_message(&mut stream).unwrap();
        let done = message.0 == b'Z';
        messages.push(message);
        if done {
            break;
        }
    }
    assert!(
        messages.iter().all(|(tag, _)| *tag != b'E'),
        "query must not be cancelled"
    );
}

#[test]
fn upstream_down_gives_an_error_and_recovery_is_immediate() {
    let mut proxy = TestProxy::start();
    let (mut session, _) = raw::start_session(proxy.address, "postgres");
    proxy.cluster.stop().unwrap();
    // The open session learns why it ends: Postgres's own FATAL (57P01) is forwarded.
    let report = raw::expect_error(&mut session);
    assert_eq!(
        (report.severity.as_str(), report.code.as_str()),
        ("FATAL", "57P01"),
        "{report:?}"
    );
    assert!(raw::is_closed(&mut session));
    // New clients get a clear error, not a hang.
    let report = error_for(
        &proxy,
        &raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]),
    );
    assert_eq!(report.code, "08001", "{report:?}");
    assert!(
        report.message.contains("could not connect to the upstream"),
        "{report:?}"
    );
    proxy.cluster.restart().unwrap();
    assert_still_serving(&proxy);
}

/// Found by the fifty-third red-team pass: one statement naming a managed table with a
/// 30,000-term `AND` chain overflowed a worker thread's stack, and the abort ended every
/// session. It is answered now, through both protocols; a chain past the rewriter's limit is
/// refused (42601) and only that statement fails; the bystander at another version goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_deep_operator_chain_is_answered_or_refused_and_the_proxy_keeps_serving() {
    let proxy = versions::versioned_proxy();
    let bystander = versions::connect_with(&proxy, "-c%20viewgate.version%3Dv2").await;
    let client = versions::connect_with(&proxy, "-c%20viewgate.version%3Dv1").await;
    let chain = |terms: usize| {
        format!(
            "SELECT count(*) FROM model_metadata WHERE true{}",
            " AND true".repeat(terms)
        )
    };
    let expected: i64 = client
        .query_one("SELECT count(*) FROM model_metadata", &[])
        .await
        .expect("a plain count")
        .get(0);
    let simple = client
        .simple_query(&chain(30_000))
        .await
        .expect("the simple protocol answers");
    let counted = simple.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(counted, Some(expected.to_string()));
    let extended: i64 = client
        .query_one(chain(30_000).as_str(), &[])
        .await
        .expect("the extended protocol answers")
        .get(0);
    assert_eq!(extended, expected);
    let error = client
        .simple_query(&chain(60_000))
        .await
        .expect_err("past the limit");
    let db_error = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(db_error.code().code(), "42601", "{db_error:?}");
    assert!(
        db_error
            .message()
            .contains("more than the 100000 viewgate reads"),
        "{db_error:?}"
    );
    let still: i64 = client
        .query_one("SELECT count(*) FROM model_metadata", &[])
        .await
        .expect("the session goes on")
        .get(0);
    assert_eq!(still, expected);
    let other = bystander
        .query_one("SELECT count(*) FROM model_metadata", &[])
        .await
        .expect("the bystander goes on");
    assert_eq!(other.get::<_, i64>(0), expected);
}

/// Found by the fifty-third red-team pass: a proxy without a catalog accepted a session that
/// declared `viewgate.version=v1` and served it the base tables whole. A session that asks for
/// a version where the proxy versions nothing is refused at startup (22023, saying why); one
/// that asks for none is served as before.
#[tokio::test]
async fn a_version_asked_of_a_proxy_without_a_catalog_is_refused() {
    let proxy = TestProxy::start();
    let url = proxy.url("postgres", "postgres");
    let error = tokio_postgres::connect(
        &format!("{url}?options=-c%20viewgate.version%3Dv1"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("refused at startup");
    let db_error = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(db_error.code().code(), "22023", "{db_error:?}");
    assert!(
        db_error.message().contains("this proxy has no catalog"),
        "{db_error:?}"
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("no version asked: served");
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT 40 + 2", &[])
        .await
        .expect("a query");
    assert_eq!(row.get::<_, i32>(0), 42);
}
