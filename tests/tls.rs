//! TLS between clients and the proxy, with real libpq clients (psql) and tokio-postgres.
//!
//! Each test makes a throwaway CA and a server certificate for `localhost`/127.0.0.1 with
//! rcgen. Checked: `verify-full` against that CA works and TLS ends at the proxy (the upstream
//! connection here is plain TCP); `client_tls.mode` require/allow/disable answer SSLRequest and
//! plaintext startups as documented; SCRAM works over client TLS because the proxy strips
//! SCRAM-SHA-256-PLUS (channel binding cannot cross a TLS-terminating proxy), and a client that
//! insists on channel binding fails promptly instead of hanging. And SIGHUP reads the
//! certificate and key again.

use crate::common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::certs::TestCa;
use common::{ClusterAuth, ProxyProcess, TestProxy};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use viewgate::config::{ClientTlsConfig, ClientTlsMode, UpstreamTlsMode};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

const SCRAM_PASSWORD: &str = "tls-scram-secret";

/// A CA and a `localhost` server certificate signed by it, as PEM files, plus an unrelated
/// CA that verify-full must reject.
struct TestPki {
    dir: tempfile::TempDir,
    ca: TestCa,
}

impl TestPki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("viewgate test CA");
        ca.write_cert(dir.path(), "ca.pem");
        TestCa::new("some other CA").write_cert(dir.path(), "other-ca.pem");
        ca.write_server_files(dir.path(), &["localhost", "127.0.0.1"]);
        TestPki { dir, ca }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn client_tls(&self, mode: ClientTlsMode) -> ClientTlsConfig {
        ClientTlsConfig {
            mode,
            cert: Some(self.path("server.crt")),
            key: Some(self.path("server.key")),
        }
    }
}

fn start(pki: &TestPki, mode: ClientTlsMode, auth: ClusterAuth) -> TestProxy {
    let tls = pki.client_tls(mode);
    let proxy = TestProxy::start_with(
        ClusterOptions {
            auth,
            ..ClusterOptions::default()
        },
        |config| config.client_tls = tls,
    );
    proxy.admin(&format!(
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PASSWORD}'"
    ));
    proxy
}

/// Conninfo through the proxy by host name `localhost` (what the certificate names).
fn conninfo(proxy: &TestProxy, user: &str, extra: &str) -> String {
    format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={user} dbname=postgres connect_timeout=10 {extra}",
        proxy.port()
    )
}

fn verify_full(pki: &TestPki) -> String {
    format!(
        "sslmode=verify-full sslrootcert={}",
        pki.path("ca.pem").display()
    )
}

/// Runs a command, killing it if it has not finished within `limit` (a hang is a failure).
fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{command:?} still running after {limit:?} (hung); stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn psql(proxy: &TestProxy, conninfo: &str, args: &[&str]) -> Output {
    output_within(proxy.psql(conninfo).args(args), Duration::from_secs(15))
}

fn stdout_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "psql unexpectedly succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends an SSLRequest on a raw socket and returns the one-byte answer.
fn ssl_request_answer(port: u16) -> u8 {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).unwrap();
    answer[0]
}

const IS_SSL_UPSTREAM: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[test]
fn require_mode_verify_full_and_tls_ends_at_the_proxy() {
    let pki = TestPki::new();
    let proxy = start(&pki, ClientTlsMode::Require, ClusterAuth::Trust);
    let info = conninfo(&proxy, "postgres", &verify_full(&pki));
    // The client's connection is encrypted and verified against our CA ...
    let out = stdout_ok(&psql(&proxy, &info, &["-c", "\\conninfo"]));
    assert!(
        out.contains("SSL connection (protocol: TLSv1."),
        "psql \\conninfo: {out}"
    );
    assert!(out.contains("as user \"postgres\""), "{out}");
    // ... while the proxy's connection to the server is not: TLS ends at the proxy.
    let out = stdout_ok(&psql(&proxy, &info, &["-c", IS_SSL_UPSTREAM]));
    assert_eq!(out.trim(), "f");
    // Queries work over TLS, including a result larger than one TLS record.
    let out = stdout_ok(&psql(
        &proxy,
        &info,
        &[
            "-c",
            "SELECT sum(length(repeat('x', g))) FROM generate_series(1, 2000) g",
        ],
    ));
    assert_eq!(out.trim(), "2001000");

    // A CA that did not sign the proxy's certificate is rejected by the client.
    let wrong_ca = conninfo(
        &proxy,
        "postgres",
        &format!(
            "sslmode=verify-full sslrootcert={}",
            pki.path("other-ca.pem").display()
        ),
    );
    let err = stderr(&psql(&proxy, &wrong_ca, &["-c", "SELECT 1"]));
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[tokio::test]
async fn require_mode_refuses_plaintext_with_28000() {
    let pki = TestPki::new();
    let proxy = start(&pki, ClientTlsMode::Require, ClusterAuth::Trust);
    assert_eq!(ssl_request_answer(proxy.port()), b'S');

    let err = stderr(&psql(
        &proxy,
        &conninfo(&proxy, "postgres", "sslmode=disable"),
        &["-c", "SELECT 1"],
    ));
    assert!(err.contains("FATAL:  viewgate requires TLS"), "{err}");

    let error = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            proxy.port()
        ),
        NoTls,
    )
    .await
    .err()
    .expect("plaintext refused");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    assert_eq!(db.severity(), "FATAL");
}

#[test]
fn allow_mode_accepts_tls_and_plaintext() {
    let pki = TestPki::new();
    let proxy = start(&pki, ClientTlsMode::Allow, ClusterAuth::Trust);
    assert_eq!(ssl_request_answer(proxy.port()), b'S');
    let plain = conninfo(&proxy, "postgres", "sslmode=disable");
    let out = stdout_ok(&psql(&proxy, &plain, &["-c", "\\conninfo"]));
    assert!(!out.contains("SSL connection"), "{out}");
    assert_eq!(
        stdout_ok(&psql(&proxy, &plain, &["-c", "SELECT 'plain'"])).trim(),
        "plain"
    );
    let tls = conninfo(&proxy, "postgres", &verify_full(&pki));
    let out = stdout_ok(&psql(&proxy, &tls, &["-c", "\\conninfo"]));
    assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");
    assert_eq!(
        stdout_ok(&psql(&proxy, &tls, &["-c", "SELECT 'tls'"])).trim(),
        "tls"
    );
}

#[test]
fn disable_mode_answers_ssl_request_with_n() {
    let pki = TestPki::new();
    let proxy = start(&pki, ClientTlsMode::Disable, ClusterAuth::Trust);
    assert_eq!(ssl_request_answer(proxy.port()), b'N');
    let err = stderr(&psql(
        &proxy,
        &conninfo(&proxy, "postgres", "sslmode=require"),
        &["-c", "SELECT 1"],
    ));
    assert!(err.contains("server does not support SSL"), "{err}");
    // sslmode=prefer falls back to plaintext after the 'N'.
    let prefer = conninfo(&proxy, "postgres", "sslmode=prefer");
    let out = stdout_ok(&psql(&proxy, &prefer, &["-c", "\\conninfo"]));
    assert!(!out.contains("SSL connection"), "{out}");
    assert_eq!(
        stdout_ok(&psql(&proxy, &prefer, &["-c", "SELECT 6 * 7"])).trim(),
        "42"
    );
}

#[test]
fn scram_over_client_tls() {
    let pki = TestPki::new();
    let proxy = start(&pki, ClientTlsMode::Require, ClusterAuth::Password);
    // libpq's default channel_binding=prefer: the proxy offers only SCRAM-SHA-256, so the
    // client authenticates without binding.
    for extra in ["", "channel_binding=disable"] {
        let info = conninfo(
            &proxy,
            "scram_user",
            &format!("{} {extra}", verify_full(&pki)),
        );
        let mut command = proxy.psql(&info);
        command
            .env("PGPASSWORD", SCRAM_PASSWORD)
            .args(["-c", "SELECT current_user"])
            .args(["-c", "\\conninfo"]);
        let out = stdout_ok(&output_within(&mut command, Duration::from_secs(15)));
        assert!(out.starts_with("scram_user\n"), "{extra}: {out}");
        assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");
    }
    // A wrong password over TLS is still refused by the upstream, with its message.
    let mut command = proxy.psql(&conninfo(&proxy, "scram_user", &verify_full(&pki)));
    command.env("PGPASSWORD", "wrong").args(["-c", "SELECT 1"]);
    let err = stderr(&output_within(&mut command, Duration::from_secs(15)));
    assert!(
        err.contains("FATAL:  password authentication failed for user \"scram_user\""),
        "{err}"
    );
}

#[test]
fn channel_binding_require_fails_cleanly() {
    let pki = TestPki::new();
    let proxy = start(&pki, ClientTlsMode::Require, ClusterAuth::Password);
    let info = conninfo(
        &proxy,
        "scram_user",
        &format!("{} channel_binding=require", verify_full(&pki)),
    );
    let mut command = proxy.psql(&info);
    command
        .env("PGPASSWORD", SCRAM_PASSWORD)
        .args(["-c", "SELECT 1"]);
    let started = Instant::now();
    let err = stderr(&output_within(&mut command, Duration::from_secs(10)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("channel binding"), "{err}");
    // The proxy is unaffected.
    let mut command = proxy.psql(&conninfo(&proxy, "scram_user", &verify_full(&pki)));
    command
        .env("PGPASSWORD", SCRAM_PASSWORD)
        .args(["-c", "SELECT 'after'"]);
    let out = stdout_ok(&output_within(&mut command, Duration::from_secs(15)));
    assert_eq!(out.trim(), "after");
}

/// SCRAM channel binding cannot cross a proxy that terminates TLS: with TLS on both legs, a
/// client that supports binding answers `y,,` and a TLS upstream would refuse that as a
/// downgrade. viewgate says what to change; with `channel_binding=disable` it works.
#[test]
fn scram_over_client_tls_with_a_tls_upstream() {
    let pki = TestPki::new();
    let tls = pki.client_tls(ClientTlsMode::Require);
    let proxy = TestProxy::start_with(
        ClusterOptions {
            auth: ClusterAuth::Password,
            tls: Some(pki.ca.server_certificate(&["localhost", "127.0.0.1"])),
            ..ClusterOptions::default()
        },
        |config| {
            config.client_tls = tls;
            config.upstream_tls.mode = UpstreamTlsMode::Require;
        },
    );
    proxy.admin(&format!(
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PASSWORD}'"
    ));
    let mut command = proxy.psql(&conninfo(&proxy, "scram_user", &verify_full(&pki)));
    command
        .env("PGPASSWORD", SCRAM_PASSWORD)
        .args(["-c", IS_SSL_UPSTREAM]);
    let output = output_within(&mut command, Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("channel_binding=disable"),
        "the error must say what to change: {stderr}"
    );

    let options = format!("{} channel_binding=disable", verify_full(&pki));
    let mut command = proxy.psql(&conninfo(&proxy, "scram_user", &options));
    command
        .env("PGPASSWORD", SCRAM_PASSWORD)
        .args(["-c", IS_SSL_UPSTREAM]);
    let output = output_within(&mut command, Duration::from_secs(15));
    assert!(
        output.status.success(),
        "SCRAM without channel binding over TLS on both legs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t");
}

/// SIGHUP reads the client certificate and key again, as PgBouncer's reload does: after a
/// renewal by another CA, new connections verify against the new CA and no longer the old
/// one, with no restart (which would end every session). Files that do not fit (a certificate
/// written without its key) are refused, and the certificate in use stays.
#[test]
fn sighup_reloads_the_client_certificate_and_keeps_it_when_the_files_do_not_fit() {
    let pki = TestPki::new();
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let (cert, key) = (pki.path("server.crt"), pki.path("server.key"));
    let mut proxy = ProxyProcess::start(
        &cluster,
        &[
            ("VIEWGATE_CLIENT_TLS__MODE", "require"),
            ("VIEWGATE_CLIENT_TLS__CERT", &cert.display().to_string()),
            ("VIEWGATE_CLIENT_TLS__KEY", &key.display().to_string()),
        ],
    );
    let connects = |ca: &str| {
        let conninfo = format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={SUPERUSER} dbname=postgres connect_timeout=10 sslmode=verify-full sslrootcert={}",
            proxy.port,
            pki.path(ca).display()
        );
        let mut psql = Command::new(cluster.bin("psql"));
        psql.args(["-X", "-A", "-t", "-d", &conninfo, "-c", "SELECT 'through'"]);
        output_within(&mut psql, Duration::from_secs(15))
            .status
            .success()
    };
    let hangup_logged = |times: usize, line: &str| {
        proxy.hang_up();
        proxy.wait_logged(line, times);
    };
    assert!(connects("ca.pem"));

    let renewed = TestCa::new("renewing CA");
    renewed.write_cert(pki.dir.path(), "renewed-ca.pem");
    assert!(!connects("renewed-ca.pem"), "not before the reload");
    renewed.write_server_files(pki.dir.path(), &["localhost", "127.0.0.1"]);
    hangup_logged(1, "reloaded the client TLS certificate and key");
    assert!(connects("renewed-ca.pem"), "{}", proxy.log());
    assert!(
        !connects("ca.pem"),
        "the old certificate is no longer served"
    );

    let unrelated = pki.ca.server_certificate(&["localhost"]);
    std::fs::write(&cert, unrelated.cert_pem).unwrap();
    hangup_logged(1, "reload: kept the client TLS certificate in use");
    assert!(connects("renewed-ca.pem"), "the certificate in use stays");
    assert!(proxy.child.try_wait().unwrap().is_none(), "still running");
}
