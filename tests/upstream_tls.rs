//! TLS between the proxy and Postgres: libpq's sslmode meanings, checked on a TLS-enabled
//! throwaway cluster by asking the server itself whether the session is encrypted.

use crate::common;

use common::certs::TestCa;
use common::raw;
use common::{TestProxy, proxy_config, spawn_proxy};
use viewgate::config::UpstreamTlsMode;
use viewgate::pg_cluster::{ClusterOptions, ThrowawayCluster};

const SESSION_IS_ENCRYPTED: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

fn tls_cluster(ca: &TestCa) -> ClusterOptions {
    ClusterOptions {
        tls: Some(ca.server_certificate(&["localhost", "127.0.0.1"])),
        ..ClusterOptions::default()
    }
}

fn encrypted_through(proxy: &TestProxy) -> String {
    let (mut stream, _) = raw::start_session(proxy.address, "postgres");
    raw::first_column(&raw::simple_query(&mut stream, SESSION_IS_ENCRYPTED)).join(",")
}

#[test]
fn each_mode_encrypts_as_libpq_would() {
    let ca = TestCa::new("upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let root = ca.write_cert(dir.path(), "root.crt");
    for (mode, expected) in [
        (UpstreamTlsMode::Disable, "f"),
        (UpstreamTlsMode::Prefer, "t"),
        (UpstreamTlsMode::Require, "t"),
        (UpstreamTlsMode::VerifyFull, "t"),
    ] {
        let root = root.clone();
        let proxy = TestProxy::start_with(tls_cluster(&ca), move |config| {
            config.upstream = config.upstream.replace("127.0.0.1", "localhost");
            config.upstream_tls.mode = mode;
            config.upstream_tls.root_cert = Some(root);
        });
        assert_eq!(encrypted_through(&proxy), expected, "{mode:?}");
    }
}

#[test]
fn prefer_falls_back_to_plain_and_require_refuses_a_plain_server() {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.upstream_tls.mode = UpstreamTlsMode::Prefer;
    });
    assert_eq!(encrypted_through(&proxy), "f");

    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let mut config = proxy_config(&cluster);
    config.upstream_tls.mode = UpstreamTlsMode::Require;
    let (address, shutdown, thread) = spawn_proxy(config);
    let mut stream = raw::connect(address);
    std::io::Write::write_all(
        &mut stream,
        &raw::startup_packet(raw::PROTOCOL_3_0, &[("user", "postgres")]),
    )
    .unwrap();
    let report = raw::expect_error(&mut stream);
    assert_eq!(report.code, "08001", "{report:?}");
    assert!(
        report.message.contains("does not support TLS"),
        "{report:?}"
    );
    shutdown.close_sessions();
    thread.join().unwrap();
}

#[test]
fn verify_full_refuses_an_untrusted_certificate() {
    let server_ca = TestCa::new("server CA");
    let other_ca = TestCa::new("some other CA");
    let dir = tempfile::tempdir().unwrap();
    let wrong_root = other_ca.write_cert(dir.path(), "root.crt");
    let proxy = TestProxy::start_with(tls_cluster(&server_ca), move |config| {
        config.upstream_tls.mode = UpstreamTlsMode::VerifyFull;
        config.upstream_tls.root_cert = Some(wrong_root);
    });
    let mut stream = raw::connect(proxy.address);
    std::io::Write::write_all(
        &mut stream,
        &raw::startup_packet(raw::PROTOCOL_3_0, &[("user", "postgres")]),
    )
    .unwrap();
    let report = raw::expect_error(&mut stream);
    assert_eq!(report.code, "08001", "{report:?}");
    assert!(report.message.contains("certificate"), "{report:?}");
}
