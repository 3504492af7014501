//! `viewgate demo`: the whole product on a throwaway Postgres, in one command.
//!
//! It creates the seed example's table (examples/model_metadata), generates and applies the v1
//! and v2 views, makes v1 the default version, starts the proxy, and shows a v1 and a v2 client
//! writing rows the other reads. Then it prints both connection strings to try by hand.
//! Everything runs locally and is deleted on exit.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::config::{Config, UpstreamTlsMode};
use crate::control::cutover::default_version as cutover;
use crate::control::templates::Templates;
use crate::control::views::apply::{self, LockSettings};
use crate::control::views::spec::Spec;
use crate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};
use crate::proxy::Proxy;
use crate::shutdown::{Shutdown, TerminationSignals};
use crate::telemetry::heartbeat::ProxyIdentity;

const EXAMPLE_SCHEMA: &str = include_str!("../examples/model_metadata/schema.sql");
const EXAMPLE_SPEC: &str = include_str!("../examples/model_metadata/viewgate.toml");
const EXAMPLE_SPEC_NAME: &str = "examples/model_metadata/viewgate.toml";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("could not start a throwaway Postgres: {0}")]
    Cluster(#[from] crate::pg_cluster::ClusterError),
    #[error(transparent)]
    Listen(#[from] crate::proxy::ListenError),
    #[error("the example spec is invalid: {0}")]
    Spec(#[from] crate::control::SpecError),
    #[error("applying the example views failed: {0}")]
    Apply(#[from] crate::control::ControlError),
    #[error("a query in the tour failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct DemoOptions {
    pub listen: String,
    /// Exit after the tour instead of serving until Ctrl-C.
    pub exit_after_check: bool,
}

pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let mut signals = TerminationSignals::install()?;
    println!("Starting a throwaway PostgreSQL cluster...");
    let cluster =
        tokio::task::spawn_blocking(|| ThrowawayCluster::start(&ClusterOptions::default()))
            .await
            .map_err(std::io::Error::other)??;
    let direct_url = cluster.url(SUPERUSER, "postgres");

    println!("Creating table model_metadata and applying views v1 and v2 ({EXAMPLE_SPEC_NAME})...");
    let mut admin = connect(&direct_url).await?;
    admin.batch_execute(EXAMPLE_SCHEMA).await?;
    let spec = Spec::parse(Path::new(EXAMPLE_SPEC_NAME), EXAMPLE_SPEC)?;
    apply::apply(
        &mut admin,
        &spec,
        &Templates::built_in(),
        LockSettings::from_spec(&spec),
    )
    .await?;
    cutover::cutover(&mut admin, "v1").await?;

    let mut config = Config {
        listen: options.listen,
        upstream: format!("postgres://127.0.0.1:{}", cluster.port()),
        catalog: Some(direct_url.clone()),
        ..Config::default()
    };
    config.upstream_tls.mode = UpstreamTlsMode::Disable;
    config.shutdown_timeout = Duration::from_secs(2);
    let shutdown = Shutdown::new();
    let proxy = Proxy::bind(config, shutdown.clone()).await?;
    let address = proxy.local_addr()?;
    let serving = tokio::spawn(crate::cli::serve::run(
        proxy,
        Some(ProxyIdentity::new(address, None)),
    ));

    let v1_url = format!("postgres://{SUPERUSER}@{address}/postgres");
    let v2_url = format!("{v1_url}?options=-c%20viewgate.version%3Dv2");
    tour(&v1_url, &v2_url).await?;

    println!(
        "\nviewgate listens on {address} (Postgres itself on port {}). Try it:",
        cluster.port()
    );
    println!("  psql '{v1_url}'   # v1, the default version");
    println!("  psql '{v2_url}'   # v2");
    println!(
        "  then: SELECT * FROM model_metadata;  SHOW viewgate.version;  SET viewgate.version = 'v2';"
    );
    println!("  viewgate status --database '{direct_url}'   # versions, rules, live sessions");
    println!(
        "  viewgate route add --split v2=50,v1=50 --database '{direct_url}'   # a canary for new sessions"
    );
    if !options.exit_after_check {
        println!("\nPress Ctrl-C to stop; the cluster is deleted on exit.");
        signals.recv().await;
    }
    shutdown.close_sessions();
    let _ = serving.await;
    drop(admin);
    drop(cluster);
    println!("Stopped; the throwaway cluster is gone.");
    Ok(())
}

/// Two clients, one per version, on the same rows.
async fn tour(v1_url: &str, v2_url: &str) -> Result<(), DemoError> {
    let v1 = connect(v1_url).await?;
    let v2 = connect(v2_url).await?;
    let statements: [(&Client, &str, &str); 4] = [
        (
            &v2,
            "v2",
            "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '1.0', 'transformer')",
        ),
        (
            &v1,
            "v1",
            "INSERT INTO model_metadata (model_name, model_version, hyperparameters) VALUES ('mlp', '0.3', '{\"layers\": 3}')",
        ),
        (&v1, "v1", "SELECT * FROM model_metadata ORDER BY id"),
        (
            &v2,
            "v2",
            "SELECT id, model_name, model_type, schema_version FROM model_metadata ORDER BY id",
        ),
    ];
    println!("\nThe same table through the proxy, by two application versions:");
    for (client, version, sql) in statements {
        println!("\n[{version}] {sql}");
        for line in render(&client.simple_query(sql).await?) {
            println!("     {line}");
        }
    }
    Ok(())
}

/// Rows as `col=value` lines, or the command tag.
fn render(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, column)| {
                        format!("{}={}", column.name(), row.get(i).unwrap_or("NULL"))
                    })
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
            SimpleQueryMessage::CommandComplete(rows) => Some(format!("({rows} rows)")),
            _ => None,
        })
        .collect()
}

/// Plain on purpose: the demo only talks to its own throwaway cluster on 127.0.0.1 and to its
/// own proxy in front of it, both local by construction (catalog TLS is `net::postgres_tls`).
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}
