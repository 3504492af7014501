//! TLS between the proxy and Postgres: libpq's sslmode meanings, checked on a TLS-enabled
//! throwaway cluster by asking the server itself whether the session is encrypted; and a
//! reload reading a rotated CA file again.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::certs::TestCa;
use common::{ProxyProcess, TestProxy, http, proxy_config, raw, spawn_proxy};
use common::{viewgate_binary, wait_until};
use viewgate::config::UpstreamTlsMode;
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

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

/// A rotated upstream CA reaches new connections without a restart: `viewgate reload` (the
/// admin API's `POST /reload`, as SIGHUP) reads `sslrootcert` again, while a session made
/// before it goes on; a CA file that does not read is refused with 422, naming it, and the
/// CA in use stays.
#[test]
fn reload_reads_the_upstream_ca_again_and_keeps_it_when_the_file_does_not_read() {
    let (old_ca, new_ca) = (TestCa::new("retiring CA"), TestCa::new("new CA"));
    let cluster = ThrowawayCluster::start(&tls_cluster(&old_ca)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = old_ca.write_cert(dir.path(), "root.crt");
    let admin_port = viewgate::pg_cluster::free_port().unwrap();
    let admin = format!("127.0.0.1:{admin_port}");
    let upstream = format!(
        "postgres://localhost:{}?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        root.display()
    );
    let port = viewgate::pg_cluster::free_port().unwrap();
    let proxy = ProxyProcess::start_in_front_of(
        &upstream,
        port,
        &[("VIEWGATE_ADMIN_LISTEN", admin.as_str())],
    );
    assert!(wait_until(Duration::from_secs(10), || http::admin_ready(
        admin_port
    )));
    let through_proxy = || {
        let conninfo = format!(
            "host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres sslmode=disable connect_timeout=10"
        );
        let output = Command::new(cluster.bin("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-d",
                &conninfo,
                "-c",
                SESSION_IS_ENCRYPTED,
            ])
            .output()
            .unwrap();
        match output.status.success() {
            true => Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    };
    assert_eq!(through_proxy().as_deref(), Ok("t"));
    let (mut before, _) = raw::start_session(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        SUPERUSER,
    );

    // The database's certificate is renewed by the new CA: the proxy does not trust it yet.
    let renewed = new_ca.server_certificate(&["localhost", "127.0.0.1"]);
    std::fs::write(cluster.data_dir().join("server.crt"), &renewed.cert_pem).unwrap();
    std::fs::write(cluster.data_dir().join("server.key"), &renewed.key_pem).unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || through_proxy().is_err()),
        "the renewed certificate is not trusted before the reload"
    );
    let refused = through_proxy().unwrap_err();
    assert!(refused.contains("upstream"), "{refused}");

    new_ca.write_cert(dir.path(), "root.crt");
    let reload = Command::new(viewgate_binary())
        .args(["reload", "--admin", &format!("http://{admin}")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&reload.stdout);
    assert!(
        reload.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert!(
        said.contains(&format!(
            "upstream CA certificates reloaded from {}",
            root.display()
        )) && said.contains("client TLS certificate not configured"),
        "{said}"
    );
    assert_eq!(through_proxy().as_deref(), Ok("t"), "{}", proxy.log());
    assert_eq!(
        raw::first_column(&raw::simple_query(&mut before, "SELECT 'still here'")),
        ["still here"],
        "a session made before the reload goes on"
    );

    std::fs::write(&root, "not a certificate").unwrap();
    let (status, body) = http::post_json(admin_port, "/reload", None, "{}");
    assert_eq!(status, 422, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["upstream_tls"]["outcome"], "kept", "{body}");
    assert_eq!(answer["client_tls"]["outcome"], "not_configured", "{body}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|error| error.contains(&root.display().to_string())),
        "{body}"
    );
    let reload = Command::new(viewgate_binary())
        .args(["reload", "--admin", &format!("http://{admin}")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&reload.stderr);
    assert_eq!(reload.status.code(), Some(1), "{said}");
    assert!(
        said.contains("upstream TLS: kept the one in use") && said.contains("HTTP 422"),
        "{said}"
    );
    assert_eq!(through_proxy().as_deref(), Ok("t"), "the CA in use stays");
}
