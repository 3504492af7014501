//! A command that changes the catalog returns once every live proxy serves the change
//! (`control::proxies_loaded`, the heartbeat's `loaded_change`): a client that connects the
//! moment `migrate start` or `cutover` returns is routed by it at every proxy, and a proxy that
//! cannot load the change is named, without failing the committed command.

use crate::common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{ProxyProcess, viewgate_binary, wait_until};
use tokio_postgres::{Client, NoTls};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};

const SEED: &str = "examples/model_metadata/migrations";

fn viewgate(cluster: &ThrowawayCluster, args: &[&str]) -> Output {
    let output = Command::new(viewgate_binary())
        .args(args)
        .args(["--database", &cluster.url(SUPERUSER, "postgres")])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "viewgate {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The seed example at v1, and two proxies on its catalog that have reported their first
/// load.
fn two_proxies() -> (ThrowawayCluster, ProxyProcess, ProxyProcess) {
    let cluster = ThrowawayCluster::start(&ClusterOptions::default()).unwrap();
    let schema = std::fs::read_to_string(format!("{SEED}/schema.sql")).unwrap();
    cluster.psql("postgres", &schema).unwrap();
    viewgate(
        &cluster,
        &["views", "apply", "--spec", &format!("{SEED}/viewgate.toml")],
    );
    viewgate(&cluster, &["cutover", "--to", "v1"]);
    let catalog = cluster.url(SUPERUSER, "postgres");
    let env = [("VIEWGATE_CATALOG", catalog.as_str())];
    let (first, second) = (
        ProxyProcess::start(&cluster, &env),
        ProxyProcess::start(&cluster, &env),
    );
    assert!(
        both_report_the_change(&cluster),
        "both proxies report the catalog's change"
    );
    (cluster, first, second)
}

/// Waits until both proxies' heartbeats report the catalog's latest change.
fn both_report_the_change(cluster: &ThrowawayCluster) -> bool {
    wait_until(Duration::from_secs(10), || {
        cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM viewgate.proxies
                 WHERE loaded_change = (SELECT change FROM viewgate.catalog_change)",
            )
            .is_ok_and(|count| count == "2")
    })
}

/// One connection attempt, no retry: the test is that the first one is routed right.
async fn connect_once(proxy: &ProxyProcess, version: Option<&str>) -> Client {
    let mut url = format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", proxy.port);
    if let Some(version) = version {
        url.push_str(&format!("?options=-c%20viewgate.version%3D{version}"));
    }
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting at {version:?}: {error:?}"));
    tokio::spawn(connection);
    client
}

async fn session_version(proxy: &ProxyProcess) -> String {
    let client = connect_once(proxy, None).await;
    let row = client
        .query_one("SHOW viewgate.version", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proxy_serves_a_change_when_its_command_returns() {
    let (cluster, first, second) = two_proxies();

    let started = viewgate(
        &cluster,
        &["migrate", "start", &format!("{SEED}/0002_model_type.toml")],
    );
    assert!(
        stderr(&started).contains("2 live proxies have loaded the catalog's latest change"),
        "{}",
        stderr(&started)
    );
    // At once, at both proxies: the new version is there.
    for proxy in [&first, &second] {
        let client = connect_once(proxy, Some("v2")).await;
        let row = client
            .query_one(
                "SELECT count(*) FROM model_metadata WHERE model_type IS NULL",
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("v2 at port {}: {error:?}", proxy.port));
        assert_eq!(row.get::<_, i64>(0), 0);
    }

    // Each cutover is the default of the very next session, at both proxies.
    for version in ["v2", "v1", "v2"] {
        let flipped = viewgate(&cluster, &["cutover", "--to", version]);
        assert!(
            stderr(&flipped).contains("2 live proxies have loaded"),
            "{}",
            stderr(&flipped)
        );
        for proxy in [&first, &second] {
            assert_eq!(session_version(proxy).await, version, "port {}", proxy.port);
        }
    }
    let reported = cluster
        .psql(
            "postgres",
            "SELECT string_agg(DISTINCT (loaded_change = c.change)::text, ',')
             FROM viewgate.proxies, viewgate.catalog_change c",
        )
        .unwrap();
    assert_eq!(reported, "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_cannot_load_the_change_is_named() {
    let (cluster, first, stopped) = two_proxies();
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([format!("-{name}"), stopped.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    };

    signal("STOP");
    let started = viewgate(
        &cluster,
        &["migrate", "start", &format!("{SEED}/0002_model_type.toml")],
    );
    signal("CONT");
    let said = stderr(&started);
    assert!(said.contains("1 live proxy has loaded"), "{said}");
    let named = format!(":{} (", stopped.port);
    assert!(
        said.lines().any(|line| line.starts_with("warning: proxy")
            && line.contains(&named)
            && line.contains("has not loaded the catalog's latest change after")),
        "{said}"
    );
    connect_once(&first, Some("v2")).await;

    // Running again, it loads the change and reports it.
    assert!(
        both_report_the_change(&cluster),
        "the stopped proxy reports the change once it runs"
    );
    connect_once(&stopped, Some("v2")).await;
}
