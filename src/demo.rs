//! `viewgate demo`: the whole product on a throwaway Postgres, in one command.
//!
//! The story of a schema change under live traffic, on the seed example
//! (examples/model_metadata/migrations): the table as application build v1 created it, v1's
//! views, the proxy in front, a v1 client writing. Then `migrate start` adds `model_type` and
//! `schema_version` (expand, backfill with its progress bar, validate) while that client keeps
//! writing; a v2 client works beside it on the same rows; the default version is cut over to v2;
//! once no v1 session is left, `migrate complete` contracts the table. It ends with the
//! connection strings to try by hand. Everything runs locally and is deleted on exit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::cli::progress;
use crate::config::{Config, UpstreamTlsMode};
use crate::control::cutover::default_version as cutover;
use crate::control::migrate::complete::complete;
use crate::control::migrate::start::start;
use crate::control::migrate::{MigrateError, MigrationFile};
use crate::control::templates::Templates;
use crate::control::views::apply::{self, LockSettings};
use crate::control::views::spec::Spec;
use crate::pg_cluster::{ClusterOptions, SUPERUSER, ThrowawayCluster};
use crate::proxy::Proxy;
use crate::router::state::SharedRouting;
use crate::shutdown::{Shutdown, TerminationSignals};
use crate::telemetry::heartbeat::ProxyIdentity;

const EXAMPLE_SCHEMA: &str = include_str!("../examples/model_metadata/migrations/schema.sql");
const EXAMPLE_SPEC: &str = include_str!("../examples/model_metadata/migrations/viewgate.toml");
const EXAMPLE_SPEC_NAME: &str = "examples/model_metadata/migrations/viewgate.toml";
const EXAMPLE_MIGRATION: &str =
    include_str!("../examples/model_metadata/migrations/0002_model_type.toml");
const EXAMPLE_MIGRATION_NAME: &str = "examples/model_metadata/migrations/0002_model_type.toml";
/// Rows the table holds before the migration: enough for the backfill to show progress.
const SEED_ROWS: u32 = 50_000;
/// How long the demo waits for the proxy to load a version the migration made.
const ROUTING_WAIT: Duration = Duration::from_secs(5);
/// How long the demo waits for the last v1 session to leave the proxy's heartbeat.
const DRAIN_WAIT: Duration = Duration::from_secs(15);

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
    #[error("the example migration failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error("the proxy did not load version {0} from the catalog within {ROUTING_WAIT:?}")]
    NotRouted(String),
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

    println!(
        "Creating model_metadata as application build v1 made it, with {SEED_ROWS} rows, and its views ({EXAMPLE_SPEC_NAME})..."
    );
    let mut admin = connect(&direct_url).await?;
    admin.batch_execute(EXAMPLE_SCHEMA).await?;
    admin
        .batch_execute(&format!(
            "INSERT INTO model_metadata (model_name, model_version)
             SELECT 'model-' || n, '1.' || (n % 10) FROM generate_series(1, {SEED_ROWS}) AS n"
        ))
        .await?;
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
    let routing = proxy.state().routing.clone();
    let serving = tokio::spawn(crate::cli::serve::run(
        proxy,
        Some(ProxyIdentity::new(address, None)),
    ));

    let default_url = format!("postgres://{SUPERUSER}@{address}/postgres");
    let v1_url = format!("{default_url}?options=-c%20viewgate.version%3Dv1");
    let v2_url = format!("{default_url}?options=-c%20viewgate.version%3Dv2");
    tour(&mut admin, &routing, &v1_url, &v2_url).await?;

    println!(
        "\nviewgate listens on {address} (Postgres itself on port {}). Try it:",
        cluster.port()
    );
    println!("  psql '{default_url}'   # the default version, now v2");
    println!("  psql '{v1_url}'   # v1 is retired: refused with 22023");
    println!("  then: SELECT * FROM model_metadata LIMIT 3;  SHOW viewgate.version;");
    println!(
        "  viewgate status --database '{direct_url}'           # versions, rules, live sessions"
    );
    println!("  viewgate migrate status --database '{direct_url}'   # migrations and their phases");
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

/// The migration, told by its clients.
async fn tour(
    admin: &mut Client,
    routing: &SharedRouting,
    v1_url: &str,
    v2_url: &str,
) -> Result<(), DemoError> {
    // Named, as an application's connections should be: a refused `migrate complete` names
    // the sessions that still hold v1 by their application_name.
    let v1 = connect(&format!("{v1_url}&application_name=demo-v1-app")).await?;
    println!("\nApplication build v1 works through the proxy:");
    show(
        &v1,
        "v1",
        "INSERT INTO model_metadata (model_name, model_version, hyperparameters) VALUES ('mlp', '0.3', '{\"layers\": 3}') RETURNING *",
    )
    .await?;

    // v1 keeps writing while the schema changes under it.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let writer_client = connect(&format!("{v1_url}&application_name=demo-v1-writer")).await?;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                writer_client
                    .execute(
                        "INSERT INTO model_metadata (model_name, model_version) VALUES ('live-v1', '1.0')",
                        &[],
                    )
                    .await?;
                written.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, tokio_postgres::Error>(())
        })
    };

    println!(
        "\n$ viewgate migrate start {EXAMPLE_MIGRATION_NAME}   (expand, backfill, validate; v1 keeps writing)"
    );
    let file = MigrationFile::parse(Path::new(EXAMPLE_MIGRATION_NAME), EXAMPLE_MIGRATION)?;
    let mut progress = progress::for_stderr();
    let no_override = &Default::default();
    let outcome = start(
        admin,
        (&file, no_override),
        &Templates::built_in(),
        progress.as_mut(),
    )
    .await?;
    println!(
        "migration v1 -> v2 {}: {} rows backfilled in {:.1} s; v1 wrote {} rows meanwhile",
        outcome.how,
        outcome.rows_backfilled,
        outcome.seconds,
        written.load(Ordering::Relaxed)
    );

    wait_until_routed(routing, "v2").await?;
    let v2 = connect(v2_url).await?;
    println!("\nBuild v2 runs beside v1, on the same rows:");
    show(
        &v2,
        "v2",
        "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '1.0', 'transformer') RETURNING id, model_name, model_type, schema_version",
    )
    .await?;
    show(
        &v1,
        "v1",
        "SELECT * FROM model_metadata WHERE model_name IN ('mlp', 'bert') ORDER BY id",
    )
    .await?;
    show(
        &v2,
        "v2",
        "SELECT model_type, count(*) FROM model_metadata GROUP BY model_type ORDER BY model_type",
    )
    .await?;

    println!("\n$ viewgate cutover --to v2   (new and default sessions move to v2)");
    cutover::cutover(admin, "v2").await?;
    stop.store(true, Ordering::Relaxed);
    writer.await.map_err(std::io::Error::other)??;
    let acknowledged = written.load(Ordering::Relaxed);
    let stored = count(
        admin,
        "SELECT count(*) FROM model_metadata WHERE model_name = 'live-v1'",
    )
    .await?;
    let verdict = if u64::try_from(stored).ok() == Some(acknowledged) {
        "none lost"
    } else {
        "SOME MISSING"
    };
    println!(
        "v1's writer stopped: {acknowledged} inserts acknowledged, {stored} stored ({verdict})"
    );
    println!("\n$ viewgate migrate complete   (refused while any proxy still serves v1)");
    let templates = Templates::built_in();
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    // The v1 application stays connected for the first try, which the heartbeats refuse by
    // naming it; then it disconnects, as a redeployed build would.
    let mut v1_application = Some(v1);
    loop {
        match complete(admin, &templates, None, progress.as_mut()).await {
            Ok(outcome) => {
                println!(
                    "migration to {} completed in {:.1} s: {} retired, model_type and schema_version are NOT NULL columns",
                    outcome.version, outcome.seconds, outcome.retired
                );
                break;
            }
            Err(MigrateError::InUse { reasons, .. }) if tokio::time::Instant::now() < deadline => {
                match v1_application.take() {
                    Some(application) => {
                        println!("  refused: {reasons}");
                        println!("\n(application build v1 disconnects; complete again)");
                        drop(application);
                    }
                    None => println!("  not yet: {reasons}"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    show(&v2, "v2", "SELECT id, model_name, model_type, schema_version FROM model_metadata WHERE model_name IN ('mlp', 'bert') ORDER BY id").await?;
    Ok(())
}

async fn show(client: &Client, version: &str, sql: &str) -> Result<(), DemoError> {
    println!("\n[{version}] {sql}");
    for line in render(&client.simple_query(sql).await?) {
        println!("     {line}");
    }
    Ok(())
}

async fn count(client: &Client, sql: &str) -> Result<i64, DemoError> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

/// Connects once the proxy has learned the version from the catalog (it follows NOTIFY).
/// Waits until the proxy has loaded `version` from the catalog (its watcher reloads on the
/// NOTIFY that `migrate start` sends), so the version's first client is not refused.
async fn wait_until_routed(routing: &SharedRouting, version: &str) -> Result<(), DemoError> {
    let deadline = tokio::time::Instant::now() + ROUTING_WAIT;
    while routing.load().targets(version).is_none() {
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::NotRouted(version.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
