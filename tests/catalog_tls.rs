//! TLS on viewgate's own connections to the catalog (`net::postgres_tls`), against a cluster
//! that, like a managed Postgres with `rds.force_ssl`, only lets TCP clients in over TLS
//! (`hostssl` lines only): the CLI's catalog commands and a `viewgate serve` process's watcher
//! and heartbeat, per libpq `sslmode`.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::certs::TestCa;
use common::versions::EXAMPLE;
use common::{ProxyProcess, run_ok, viewgate_binary, wait_until};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster, free_port};

/// How long a proxy may take to load the catalog and write its first heartbeat.
const PROXY_READY: Duration = Duration::from_secs(10);

/// A cluster whose certificate names only `localhost` (so `127.0.0.1` tells verify-full from
/// verify-ca), reachable over TCP only with TLS, with the seed example's base table.
fn tls_only_cluster(ca: &TestCa) -> ThrowawayCluster {
    let cluster = ThrowawayCluster::start(&ClusterOptions {
        tls: Some(ca.server_certificate(&["localhost"])),
        tls_only: true,
        ..ClusterOptions::default()
    })
    .unwrap();
    let schema = std::fs::read_to_string(Path::new(EXAMPLE).join("schema.sql")).unwrap();
    cluster.psql("postgres", &schema).unwrap();
    cluster
}

fn catalog_url(cluster: &ThrowawayCluster, host: &str, query: &str) -> String {
    format!(
        "postgres://{SUPERUSER}@{host}:{}/postgres?{query}",
        cluster.port()
    )
}

fn viewgate(args: &[&str], database: &str) -> Output {
    Command::new(viewgate_binary())
        .args(args)
        .args(["--database", database])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", stderr(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn apply_views(database: &str) -> Output {
    let spec = format!("{EXAMPLE}/viewgate.toml");
    viewgate(&["views", "apply", "--spec", &spec], database)
}

#[test]
fn cli_catalog_commands_follow_sslmode() {
    let ca = TestCa::new("catalog CA");
    let cluster = tls_only_cluster(&ca);
    let dir = tempfile::tempdir().unwrap();
    let root = ca.write_cert(dir.path(), "root.crt");
    let root = root.display();

    // sslmode=disable: the server's refusal, plus what to change.
    let plain = catalog_url(&cluster, "127.0.0.1", "sslmode=disable");
    for args in [&["status"][..], &["route", "list"]] {
        let output = viewgate(args, &plain);
        assert!(!output.status.success(), "{args:?} worked without TLS");
        let message = stderr(&output);
        assert!(message.contains("no pg_hba.conf entry"), "{message}");
        assert!(message.contains("use sslmode=require"), "{message}");
        assert!(!message.contains("panicked"), "{message}");
    }
    let output = apply_views(&plain);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no pg_hba.conf entry"));

    // require: encrypted, no certificate check (the certificate does not name 127.0.0.1).
    let require = catalog_url(&cluster, "127.0.0.1", "sslmode=require");
    assert_ok(&apply_views(&require), "views apply (require)");
    assert_ok(
        &viewgate(
            &["route", "add", "--version", "v2", "--application", "tls-*"],
            &require,
        ),
        "route add (require)",
    );
    let rules = assert_ok(&viewgate(&["route", "list"], &require), "route list");
    assert!(rules.contains("tls-*"), "{rules}");
    let status = assert_ok(&viewgate(&["status"], &require), "status (require)");
    assert!(status.contains("v2"), "{status}");
    // No sslmode: libpq's default, prefer, takes the TLS the server offers.
    let default = format!(
        "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
        cluster.port()
    );
    assert_ok(&viewgate(&["status"], &default), "status (prefer)");

    // verify-full with the right CA and a name the certificate lists.
    let verified = catalog_url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={root}"),
    );
    assert_ok(&viewgate(&["status"], &verified), "status (verify-full)");
    // The keyword/value form says the same.
    let keywords = format!(
        "host=localhost port={} user={SUPERUSER} dbname=postgres sslmode=verify-full sslrootcert='{root}'",
        cluster.port()
    );
    assert_ok(
        &viewgate(&["route", "list"], &keywords),
        "route list (key=value)",
    );

    // verify-full by an address the certificate does not name; verify-ca does not mind.
    let by_address = |mode: &str| {
        catalog_url(
            &cluster,
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={root}"),
        )
    };
    let output = viewgate(&["status"], &by_address("verify-full"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("certificate not valid for name"),
        "{}",
        stderr(&output)
    );
    assert_ok(
        &viewgate(&["status"], &by_address("verify-ca")),
        "verify-ca",
    );

    // verify-full against the wrong CA.
    let other = TestCa::new("some other CA");
    let wrong_root = other.write_cert(dir.path(), "wrong.crt");
    let wrong = catalog_url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", wrong_root.display()),
    );
    let output = viewgate(&["status"], &wrong);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("certificate was rejected") && message.contains("wrong.crt"),
        "{message}"
    );

    // A verifying mode without a CA file says what is missing before connecting.
    let output = viewgate(
        &["status"],
        &catalog_url(&cluster, "localhost", "sslmode=verify-full"),
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("needs sslrootcert="));
}

/// `viewgate serve` on a TLS-only cluster, its catalog URL verify-full: the watcher loads the
/// versions and rules, and the heartbeat reaches `viewgate status`.
#[test]
fn a_proxy_follows_and_reports_to_a_tls_only_catalog() {
    let ca = TestCa::new("catalog CA");
    let cluster = tls_only_cluster(&ca);
    let dir = tempfile::tempdir().unwrap();
    let root = ca.write_cert(dir.path(), "root.crt");
    let require = catalog_url(&cluster, "127.0.0.1", "sslmode=require");
    assert_ok(&apply_views(&require), "views apply");
    assert_ok(
        &viewgate(
            &["route", "add", "--version", "v2", "--application", "tls-*"],
            &require,
        ),
        "route add",
    );
    cluster
        .psql(
            "postgres",
            "UPDATE viewgate.settings SET default_version = 'v1'",
        )
        .unwrap();
    let catalog = catalog_url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", root.display()),
    );
    let port = free_port().unwrap();
    // The upstream is the same TLS-only cluster, so sessions need TLS there too.
    let upstream = format!("postgres://127.0.0.1:{}?sslmode=require", cluster.port());
    let _process =
        ProxyProcess::start_in_front_of(&upstream, port, &[("VIEWGATE_CATALOG", &catalog)]);

    let show_version = |application: &str| {
        let conninfo = format!(
            "host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres application_name={application}"
        );
        Command::new(cluster.bin("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-d",
                &conninfo,
                "-c",
                "SHOW viewgate.version",
            ])
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    assert!(
        wait_until(PROXY_READY, || show_version("psql").as_deref()
            == Some("v1")),
        "a default session did not get the catalog's default version (last: {:?})",
        show_version("psql")
    );
    assert_eq!(show_version("tls-app").as_deref(), Some("v2"), "the rule");

    let proxies = || {
        let out = run_ok(Command::new(viewgate_binary()).args([
            "status",
            "--json",
            "--database",
            &require,
        ]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["proxies"].clone()
    };
    assert!(
        wait_until(PROXY_READY, || proxies()
            .as_array()
            .is_some_and(|list| list.len() == 1)),
        "the proxy's heartbeat never reached the catalog: {}",
        proxies()
    );
    assert_eq!(proxies()[0]["listen"], format!("127.0.0.1:{port}"));
    // And the proxy's own catalog connections are the encrypted ones.
    let encrypted = cluster
        .psql(
            "postgres",
            "SELECT count(*) FILTER (WHERE s.ssl) > 0 AND count(*) FILTER (WHERE NOT s.ssl) = 0
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.application_name = 'viewgate-proxy'",
        )
        .unwrap();
    assert_eq!(encrypted, "t");
}
