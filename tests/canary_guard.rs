//! The canary guard: a rule splitting sessions between a healthy v1 and a v2 whose view
//! raises errors drops v2's weight to 0 once v2's error rate over the window passes the
//! threshold; the event is in the catalog history, and new sessions all land on v1.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::versions::EXAMPLE;
use common::{TestProxy, run_ok, viewgate_binary};
use viewgate::pg_cluster::{ClusterOptions, SUPERUSER};

/// A canary that fails: v2 shows model_version through an expression that divides by zero for
/// every row written with the default schema_version (1). v1 reads the column as it is.
const SPEC: &str = r#"
[options]
layout = "suffix"

[[tables]]
name = "model_metadata"
schema = "public"
key = ["id"]

[[versions]]
name = "v1"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name", "model_version"]

[[versions]]
name = "v2"

[[versions.tables]]
base = "model_metadata"
columns = ["id", "model_name", { name = "model_version", expr = "(1 / (schema_version - 1))::text" }]
"#;
/// Long enough for the guard to see its minimum of requests and act (not a speed assertion).
const TRIP_WAIT: Duration = Duration::from_secs(30);

async fn session(port: u16, application: &str) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .dbname("postgres")
        .application_name(application);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Runs the canary's query; `Ok(version)` or the SQLSTATE it failed with.
async fn probe(client: &tokio_postgres::Client) -> Result<String, String> {
    client
        .simple_query("SELECT model_version FROM model_metadata")
        .await
        .map_err(|error| {
            error
                .code()
                .map(|c| c.code().to_owned())
                .unwrap_or_default()
        })?;
    let rows = client.simple_query("SHOW viewgate.version").await.unwrap();
    rows.iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| "no version".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_loses_its_weight_and_the_event_is_recorded() {
    let proxy = TestProxy::start_with(ClusterOptions::default(), |config| {
        config.catalog = Some(format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/postgres",
            config.upstream.rsplit(':').next().unwrap()
        ));
    });
    let database = proxy.cluster.url(SUPERUSER, "postgres");
    proxy.admin(&std::fs::read_to_string(Path::new(EXAMPLE).join("schema.sql")).unwrap());
    proxy.admin("INSERT INTO model_metadata (model_name, model_version) VALUES ('m', '1')");
    let spec = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(spec.path(), SPEC).unwrap();
    run_ok(
        Command::new(viewgate_binary())
            .args(["views", "apply", "--database", &database, "--spec"])
            .arg(spec.path()),
    );
    run_ok(Command::new(viewgate_binary()).args([
        "cutover",
        "--to",
        "v1",
        "--database",
        &database,
    ]));
    let rule = run_ok(Command::new(viewgate_binary()).args([
        "route",
        "add",
        "--split",
        "v2=50,v1=50",
        "--guard-error-rate",
        "0.2",
        "--guard-window",
        "30s",
        "--guard-min-queries",
        "10",
        "--database",
        &database,
    ]));
    let rule = rule.trim().to_owned();

    // Sessions of many identities: about half land on v2 and fail, until the guard trips.
    let started = Instant::now();
    let (mut failed, mut succeeded, mut identity) = (0, 0, 0);
    let tripped_after = loop {
        assert!(
            started.elapsed() < TRIP_WAIT,
            "the guard never tripped ({failed} failed, {succeeded} succeeded)"
        );
        let client = session(proxy.port(), &format!("canary-{identity}")).await;
        identity += 1;
        match probe(&client).await {
            Ok(_) => succeeded += 1,
            Err(code) => {
                assert_eq!(code, "22012", "the canary fails with division_by_zero");
                failed += 1;
            }
        }
        let assign = proxy.admin(&format!(
            "SELECT assign::text FROM viewgate.routing_rules WHERE id = {rule}"
        ));
        if assign.contains(r#"["v2", 0]"#) {
            break started.elapsed();
        }
    };
    eprintln!(
        "guard tripped after {tripped_after:?}: {failed} failed, {succeeded} succeeded requests"
    );
    assert!(failed >= 2, "the guard needs errors to trip: {failed}");
    let assign = proxy.admin(&format!(
        "SELECT assign::text FROM viewgate.routing_rules WHERE id = {rule}"
    ));
    assert_eq!(assign, r#"{"split": [["v2", 0], ["v1", 100]]}"#);

    let history = proxy.admin("SELECT action || ' ' || success || ' ' || array_to_string(versions, ',') || ' ' || error FROM viewgate.apply_history WHERE action = 'guard'");
    assert!(
        history.starts_with("guard true v2,v1 canary guard of rule"),
        "{history}"
    );
    assert!(history.contains("version v2 failed"), "{history}");

    // The proxy follows the catalog: new sessions of fresh identities all run at v1.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut versions = Vec::new();
        for i in 0..20 {
            let client = session(proxy.port(), &format!("after-{identity}-{i}")).await;
            versions.push(probe(&client).await);
        }
        identity += 1;
        if versions.iter().all(|v| v.as_deref() == Ok("v1")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions still reach v2: {versions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = run_ok(Command::new(viewgate_binary()).args(["status", "--database", &database]));
    assert!(status.contains("guard"), "{status}");
}
