//! The proxy's heartbeat: every few seconds it writes who it is, where its admin API listens,
//! the default version it routes to, its live sessions per version and who a few of them are
//! into `viewgate.proxies`, so `viewgate status` can show every replica from the catalog alone.
//!
//! The heartbeat never creates catalog objects: if the table is missing (no catalog yet, or one
//! made by an older build) it skips the beat. A lost connection is retried; serving never
//! depends on it. A graceful shutdown removes the proxy's row.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::model::heartbeat::{BACKFILL_HEARTBEAT_INTERVAL, BACKFILLING_PHASE, HEARTBEAT_INTERVAL};
use crate::model::listed_session::MAX_LISTED_SESSIONS_PER_VERSION;
use crate::model::migration_progress::{LeftToRun, MigrationFigures, MigrationProgress};
use crate::net::postgres_tls::error_text;
use crate::proxy::state::ProxyState;
use crate::router::watcher::CatalogSource;

/// How long a graceful shutdown waits to remove the proxy's row.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// What the proxy reports about itself besides its counters.
#[derive(Debug, Clone)]
pub struct ProxyIdentity {
    /// Unique per replica and stable across restarts: host name and listen port.
    pub proxy_id: String,
    pub hostname: String,
    pub listen: String,
    pub admin_listen: Option<String>,
}

impl ProxyIdentity {
    pub fn new(listen: std::net::SocketAddr, admin_listen: Option<std::net::SocketAddr>) -> Self {
        let hostname = host_name();
        ProxyIdentity {
            proxy_id: format!("{hostname}:{}", listen.port()),
            hostname,
            listen: listen.to_string(),
            admin_listen: admin_listen.map(|a| a.to_string()),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[derive(Debug, thiserror::Error)]
#[error("heartbeat: {0}")]
struct BeatError(#[from] tokio_postgres::Error);

/// Beats until shutdown; does nothing without a catalog.
pub async fn run(state: Arc<ProxyState>, identity: ProxyIdentity) {
    let Some(catalog) = state.catalog.clone() else {
        return;
    };
    let started = unix_now();
    let mut reloaded = state.routing_reloaded.subscribe();
    let mut client: Option<Client> = None;
    let mut warned = false;
    loop {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match connect(&catalog).await {
                Ok(connected) => Some(connected),
                // A TLS or login problem would otherwise only show as a missing proxy in status.
                Err(error) => {
                    if !warned {
                        let error = error_text(&error);
                        tracing::warn!(%error, "could not connect to the catalog for the heartbeat; retrying");
                        warned = true;
                    }
                    None
                }
            };
        }
        if let Some(connected) = &client {
            match beat(connected, &state, &identity, started).await {
                Ok(()) => {
                    warned = false;
                    read_migrations(connected, &state).await;
                }
                Err(error) if !warned => {
                    tracing::warn!(%error, "could not write the proxy heartbeat; retrying");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        let backfilling = state
            .migrations
            .load()
            .migrations
            .iter()
            .any(|migration| migration.phase == BACKFILLING_PHASE);
        let interval = if backfilling {
            BACKFILL_HEARTBEAT_INTERVAL
        } else {
            HEARTBEAT_INTERVAL
        };
        tokio::select! {
            _ = state.shutdown.begun() => break,
            _ = tokio::time::sleep(interval) => {}
            // A command waits for every proxy to report the change it made.
            Ok(()) = reloaded.changed() => {}
        }
    }
    if let Some(client) = client {
        let remove = "DELETE FROM viewgate.proxies WHERE proxy_id = $1";
        let _ = tokio::time::timeout(
            FAREWELL_TIMEOUT,
            client.execute(remove, &[&identity.proxy_id]),
        )
        .await;
    }
}

async fn connect(catalog: &CatalogSource) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = catalog.connect().await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The proxy's start time as the catalog should record it (seconds since the epoch).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Reads where the catalog's migrations stand into the proxy's state (for /metrics); leaves
/// the last figures when the read fails, and none when the catalog has no migrations table.
async fn read_migrations(client: &Client, state: &ProxyState) {
    let rows = client
        .query(
            "SELECT version, from_version, phase, backfill::text FROM viewgate.migrations
             WHERE to_regclass('viewgate.migrations') IS NOT NULL AND phase IN ('backfilling', 'live')
             ORDER BY id",
            &[],
        )
        .await;
    let migrations = match rows {
        Ok(rows) => rows
            .iter()
            .map(|row| {
                let backfill: String = row.get(3);
                MigrationFigures::from_row(row.get(0), row.get(1), row.get(2), &backfill)
            })
            .collect(),
        // 42P01: a catalog from before migrations.
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Vec::new()
        }
        Err(error) => {
            tracing::debug!(%error, "could not read the migrations' progress");
            return;
        }
    };
    let left_to_run = read_left_to_run(client).await;
    state
        .migrations
        .store(std::sync::Arc::new(MigrationProgress {
            migrations,
            left_to_run,
        }));
}

/// What migrations' completes and rollbacks left to run after their commits; none when the
/// catalog predates the record of it (no migration command of this build has run on it).
async fn read_left_to_run(client: &Client) -> Vec<LeftToRun> {
    let rows = client
        .query(
            "SELECT version, phase, jsonb_array_length(left_to_run)::int8 FROM viewgate.migrations
             WHERE left_to_run <> '[]'::jsonb ORDER BY id",
            &[],
        )
        .await;
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|row| {
                let statements: i64 = row.get(2);
                LeftToRun::from_row(row.get(0), row.get(1), statements.unsigned_abs())
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "could not read what migrations left to run");
            Vec::new()
        }
    }
}

/// Writes one heartbeat; skipped when the catalog has no `viewgate.proxies` table.
async fn beat(
    client: &Client,
    state: &ProxyState,
    identity: &ProxyIdentity,
    started: f64,
) -> Result<(), BeatError> {
    let sessions = json_text(&state.telemetry.sessions_by_version());
    let reasons = json_text(&state.telemetry.sessions_by_reason());
    let active = i64::try_from(
        state
            .session_counters
            .active
            .load(std::sync::atomic::Ordering::Relaxed),
    )
    .unwrap_or(i64::MAX);
    let default_version = state.routing.load().default_version.clone();
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let written = client
        .execute(
            "INSERT INTO viewgate.proxies AS p
               (proxy_id, hostname, pid, listen, admin_listen, build, started_at, last_seen,
                default_version, sessions_active, sessions, session_reasons)
             VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), now(), $8, $9, $10::text::jsonb,
                     $11::text::jsonb)
             ON CONFLICT (proxy_id) DO UPDATE SET
               hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, listen = EXCLUDED.listen,
               admin_listen = EXCLUDED.admin_listen, build = EXCLUDED.build,
               started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen,
               default_version = EXCLUDED.default_version,
               sessions_active = EXCLUDED.sessions_active, sessions = EXCLUDED.sessions,
               session_reasons = EXCLUDED.session_reasons",
            &[
                &identity.proxy_id,
                &identity.hostname,
                &pid,
                &identity.listen,
                &identity.admin_listen,
                &env!("CARGO_PKG_VERSION"),
                &started,
                &default_version,
                &active,
                &sessions,
                &reasons,
            ],
        )
        .await;
    match written {
        Ok(_) => {}
        // The statement names the table, so a catalog without it fails to plan: skip quietly.
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    }
    // Apart, so that a catalog from before these columns still gets the beat above.
    let latency: Vec<i64> = state
        .telemetry
        .latency_total()
        .cumulative
        .iter()
        .map(|count| i64::try_from(*count).unwrap_or(i64::MAX))
        .collect();
    let written = client
        .execute(
            "UPDATE viewgate.proxies SET latency_buckets = $2 WHERE proxy_id = $1",
            &[&identity.proxy_id, &latency],
        )
        .await;
    tolerate_older_catalog(written)?;
    let loaded_change = state.routing.load().catalog_change();
    let written = client
        .execute(
            "UPDATE viewgate.proxies SET loaded_change = $2 WHERE proxy_id = $1",
            &[&identity.proxy_id, &loaded_change],
        )
        .await;
    tolerate_older_catalog(written)?;
    let listed = json_text(
        &state
            .telemetry
            .cards()
            .by_version(MAX_LISTED_SESSIONS_PER_VERSION),
    );
    let written = client
        .execute(
            "UPDATE viewgate.proxies SET listed_sessions = $2::text::jsonb WHERE proxy_id = $1",
            &[&identity.proxy_id, &listed],
        )
        .await;
    tolerate_older_catalog(written)
}

/// A catalog from before a column (42703) still gets the rest of the beat.
fn tolerate_older_catalog(written: Result<u64, tokio_postgres::Error>) -> Result<(), BeatError> {
    match written {
        Err(error) if error.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) => {
            Err(error.into())
        }
        _ => Ok(()),
    }
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}
