//! `viewgate demo`: a throwaway Postgres with the proxy in front of it, ready to try.
//!
//! Everything runs locally and is deleted on exit; nothing needs configuring. The demo proves
//! the path works by running a query through the proxy before it prints the connection string.

use std::time::Duration;

use crate::config::{Config, UpstreamTlsMode};
use crate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};
use crate::proxy::Proxy;
use crate::shutdown::{self, Shutdown};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("could not start a throwaway Postgres: {0}")]
    Cluster(#[from] crate::pg_cluster::ClusterError),
    #[error(transparent)]
    Listen(#[from] crate::proxy::ListenError),
    #[error("the query through the proxy failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct DemoOptions {
    pub listen: String,
    /// Exit after the self-check instead of serving until Ctrl-C.
    pub exit_after_check: bool,
}

pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    println!("Starting a throwaway PostgreSQL cluster...");
    let cluster =
        tokio::task::spawn_blocking(|| ThrowawayCluster::start(&ClusterOptions::default()))
            .await
            .map_err(std::io::Error::other)??;
    let mut config = Config {
        listen: options.listen,
        upstream: format!("postgres://127.0.0.1:{}", cluster.port()),
        ..Config::default()
    };
    config.upstream_tls.mode = UpstreamTlsMode::Disable;
    config.shutdown_timeout = Duration::from_secs(2);
    let shutdown = Shutdown::new();
    let proxy = Proxy::bind(config, shutdown.clone()).await?;
    let address = proxy.local_addr()?;
    let serving = tokio::spawn(proxy.run());

    let url = format!(
        "postgres://{SUPERUSER}@{}:{}/postgres",
        address.ip(),
        address.port()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), pg_backend_pid()",
            &[],
        )
        .await?;
    let version: String = row.get(0);
    println!(
        "PostgreSQL {version} (direct on port {}) is behind viewgate on {address}.",
        cluster.port()
    );
    drop(client);
    let _ = connection.await;

    println!("\nConnect through the proxy:\n  psql '{url}'");
    if !options.exit_after_check {
        println!("\nPress Ctrl-C to stop; the cluster is deleted on exit.");
        shutdown::termination_signal().await?;
    }
    shutdown.close_sessions();
    let _ = serving.await;
    drop(cluster);
    println!("Stopped; the throwaway cluster is gone.");
    Ok(())
}
