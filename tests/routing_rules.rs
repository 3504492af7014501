//! Routing rules end to end: `viewgate route …` writes the catalog, proxies (in-process and
//! separate processes) reload it and route new sessions by it. Covers the sticky 10% split over
//! 1,000 connections, propagation to two proxies within 1 s, precedence (declared, enforce),
//! user/CIDR/database matches, remove and set-weights, and the CLI's errors.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::error::SqlState;
use viewgate::config::DEFAULT_STICKY_IDENTITY;
use viewgate::pg_cluster::SUPERUSER;
use viewgate::router::ClientIdentity;

use common::versions::versioned_proxy;
use common::{ProxyProcess, TestProxy, viewgate_binary};

/// The bound on applying a rule change on every proxy.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(1);
/// How long the functional tests wait for a proxy to reload (not a performance assertion).
const RELOAD_WAIT: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 1_000;
const RECONNECTED: usize = 200;
const CONCURRENCY: usize = 16;

/// Runs `viewgate route ARGS --database <catalog>`: stdout on success, stderr on failure.
fn route(proxy: &TestProxy, args: &[&str]) -> Result<String, String> {
    let output = Command::new(viewgate_binary())
        .arg("route")
        .args(args)
        .args(["--database", &proxy.cluster.url(SUPERUSER, "postgres")])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn add(proxy: &TestProxy, args: &[&str]) -> String {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    route(proxy, &all).unwrap_or_else(|error| panic!("route add {args:?}: {error}"))
}

/// A session through the proxy on `port` as `user` with `application_name`, and libpq
/// `options` (e.g. a declared version).
async fn connect(
    port: u16,
    user: &str,
    application: &str,
    options: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname("postgres")
        .application_name(application);
    if let Some(options) = options {
        config.options(options);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn show(client: &tokio_postgres::Client) -> String {
    let messages = client.simple_query("SHOW viewgate.version").await.unwrap();
    messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

/// The version a new session gets.
async fn version(port: u16, user: &str, application: &str, options: Option<&str>) -> String {
    show(&connect(port, user, application, options).await.unwrap()).await
}

/// Waits until a new session as (`user`, `application`) gets `expected`.
async fn wait_for(port: u16, user: &str, application: &str, options: Option<&str>, expected: &str) {
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let got = version(port, user, application, options).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}/{application} still gets {got}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The split bucket the proxy computes for a superuser session from 127.0.0.1.
fn bucket(application: &str) -> u8 {
    ClientIdentity {
        user: SUPERUSER.into(),
        database: "postgres".into(),
        application_name: application.into(),
        address: Some("127.0.0.1".parse().unwrap()),
    }
    .bucket(&DEFAULT_STICKY_IDENTITY)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_percent_split_lands_ten_percent_on_v2_and_each_identity_stays() {
    let proxy = versioned_proxy();
    let port = proxy.port();
    add(
        &proxy,
        &["--split", "v2=10,v1=90", "--application", "client-*"],
    );
    // Ready once a client the split puts on v2 gets v2.
    let canary = (0..)
        .map(|i| format!("client-{i}"))
        .find(|name| bucket(name) < 10)
        .unwrap();
    wait_for(port, SUPERUSER, &canary, None, "v2").await;

    let started = Instant::now();
    let landed: Vec<(usize, String)> = futures_util::stream::iter(0..CONNECTIONS)
        .map(|i| async move {
            (
                i,
                version(port, SUPERUSER, &format!("client-{i}"), None).await,
            )
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let on_v2 = landed.iter().filter(|(_, v)| v == "v2").count();
    eprintln!(
        "{CONNECTIONS} connections in {:?}: {on_v2} on v2 ({:.1}%)",
        started.elapsed(),
        on_v2 as f64 * 100.0 / CONNECTIONS as f64
    );
    assert!(
        (70..=130).contains(&on_v2),
        "{on_v2} of {CONNECTIONS} on v2"
    );
    for (i, landed) in &landed {
        let expected = if bucket(&format!("client-{i}")) < 10 {
            "v2"
        } else {
            "v1"
        };
        assert_eq!(landed, expected, "client-{i} against the documented bucket");
    }

    // The same identities again (every fifth): each lands where it landed before.
    let again: Vec<(usize, String)> =
        futures_util::stream::iter((0..CONNECTIONS).step_by(CONNECTIONS / RECONNECTED))
            .map(|i| async move {
                (
                    i,
                    version(port, SUPERUSER, &format!("client-{i}"), None).await,
                )
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    assert_eq!(again.len(), RECONNECTED);
    for (i, version) in again {
        assert_eq!(
            version,
            landed.iter().find(|(j, _)| *j == i).unwrap().1,
            "client-{i} moved"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxy_processes_apply_a_rule_change_within_one_second() {
    let base = versioned_proxy();
    let catalog = base.cluster.url(SUPERUSER, "postgres");
    let env = [
        ("VIEWGATE_CATALOG", catalog.as_str()),
        ("VIEWGATE_LOG_LEVEL", "warn"),
    ];
    let proxies = [
        ProxyProcess::start(&base.cluster, &env),
        ProxyProcess::start(&base.cluster, &env),
    ];
    for proxy in &proxies {
        wait_for(proxy.port, SUPERUSER, "probe", None, "v1").await;
    }

    // Each change, then the time from the command's return (it has committed) until a new
    // session on each proxy is routed by it.
    const DECLARES_V1: Option<&str> = Some("-c viewgate.version=v1");
    let mut ids: Vec<String> = Vec::new();
    let steps: [(&str, Option<&str>, &str); 4] = [
        ("add --version v2", None, "v2"),
        ("set-weights v2=0,v1=100", None, "v1"),
        ("add --enforce", DECLARES_V1, "v2"),
        ("remove", DECLARES_V1, "v1"),
    ];
    for (step, options, expected) in steps {
        let started = Instant::now();
        match step {
            "add --version v2" => {
                ids.push(add(&base, &["--version", "v2", "--application", "probe"]))
            }
            "set-weights v2=0,v1=100" => {
                route(&base, &["set-weights", &ids[0], "v2=0,v1=100"]).unwrap();
            }
            "add --enforce" => ids.push(add(
                &base,
                &[
                    "--version",
                    "v2",
                    "--application",
                    "probe",
                    "--enforce",
                    "--position",
                    "1",
                ],
            )),
            _ => {
                route(&base, &["remove", &ids[1]]).unwrap();
            }
        }
        let committed = Instant::now();
        let mut seen: [Option<Duration>; 2] = [None, None];
        while seen.iter().any(Option::is_none) {
            for (proxy, seen) in proxies.iter().zip(&mut seen) {
                if seen.is_none()
                    && version(proxy.port, SUPERUSER, "probe", options).await == expected
                {
                    *seen = Some(committed.elapsed());
                }
            }
            assert!(
                committed.elapsed() < RELOAD_WAIT,
                "route {step}: a proxy did not apply it (seen: {seen:?})"
            );
        }
        let [first, second] = seen.map(Option::unwrap);
        let slowest = first.max(second);
        eprintln!(
            "route {step}: both proxies route by it {slowest:?} after the command returned \
             (proxy A {first:?}, proxy B {second:?}; the command took {:?})",
            committed - started
        );
        assert!(slowest < PROPAGATION_LIMIT, "route {step}: {slowest:?}");
    }
}
