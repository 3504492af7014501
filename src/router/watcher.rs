//! Keeps the routing state in step with the catalog.
//!
//! A control connection loads the routing map (versions, default, routing rules), LISTENs on
//! `viewgate_control`, and reloads on every notification (`views apply`, `views drop`,
//! `cutover` and `route` commands send one). If the
//! connection is lost the proxy keeps serving with the last state and reconnects with backoff;
//! a change made meanwhile is picked up by the load after reconnecting.
//!
//! Creating or dropping a relation named like a managed table (a tenant's own
//! `model_metadata`) notifies only through the catalog's event trigger, which only a
//! superuser can make, so every `relation_refresh_interval` (config) the watcher also reads again which schemas hold such relations (`catalog_read::
//! relation_schemas`, one indexed query) and the managed tables' relatives (partitions,
//! inheritance children, parents) and foreign keys (`base_table_kin`: creating a partition does not notify either),
//! and publishes a new state only when that changed (publishing empties the rewrite cache).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::state::{RoutingState, SharedRouting};
use crate::catalog_read::{CatalogReadError, base_table_kin, load_routing_map, relation_schemas};
use crate::model::RoutingMap;
use crate::model::channel::CONTROL_CHANNEL;
use crate::net::postgres_tls::{PostgresConnection, PostgresTarget, PostgresTlsError, error_text};
use crate::rewriter::RewriteCache;
use crate::shutdown::Shutdown;

/// First and longest pause before reconnecting to the catalog.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{}", error_text(.0))]
    Connection(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogReadError),
    #[error("catalog URL: {0}")]
    Url(#[from] PostgresTlsError),
    #[error("the catalog URL must name a database (postgres://user@host:port/DATABASE)")]
    NoDatabase,
}

/// The application_name of the proxy's catalog connections (watcher, heartbeat, guard).
pub const CONTROL_APPLICATION_NAME: &str = "viewgate-proxy";

/// Where the catalog lives, and how to reach it (TLS per the URL's `sslmode`).
pub struct CatalogSource {
    target: PostgresTarget,
    database: String,
}

impl CatalogSource {
    /// Parses the `catalog` URL; a bad `sslmode` or unreadable `sslrootcert` is an error here,
    /// so the proxy refuses to start rather than retrying forever.
    pub fn parse(url: &str) -> Result<Self, WatchError> {
        let mut target = PostgresTarget::parse(url)?;
        if target.config().get_application_name().is_none() {
            // So an operator can tell the proxy's own connections apart in pg_stat_activity.
            target
                .config_mut()
                .application_name(CONTROL_APPLICATION_NAME);
        }
        let database = target
            .config()
            .get_dbname()
            .ok_or(WatchError::NoDatabase)?
            .to_owned();
        Ok(CatalogSource { target, database })
    }

    /// The database whose catalog this is.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A new connection to the catalog's database (watcher, heartbeat, recorded upstream);
    /// the caller drives the returned connection.
    pub async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, PostgresConnection), tokio_postgres::Error> {
        self.target.connect().await
    }

    /// Loads the state once; used at startup so the first sessions are already routed.
    pub async fn load(&self) -> Result<RoutingState, WatchError> {
        let (client, connection) = self.connect().await?;
        let connection = tokio::spawn(connection);
        let state = self.load_with(&client).await;
        drop(client);
        let _ = connection.await;
        state
    }

    /// A failed load is an error, never an empty state: the last good state keeps serving.
    async fn load_with(&self, client: &tokio_postgres::Client) -> Result<RoutingState, WatchError> {
        Ok(self.load_map(client).await?.1)
    }

    /// The routing map and the state built from it.
    async fn load_map(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(RoutingMap, RoutingState), WatchError> {
        let map = load_routing_map(client).await?;
        let state = RoutingState::from_catalog(&self.database, &map);
        Ok((map, state))
    }
}

/// Where the watcher publishes a state it loaded, and who hears of it.
pub struct Publisher {
    pub routing: SharedRouting,
    /// Rewrites name views of the state they were made under, so a new state empties it.
    pub cache: Arc<RewriteCache>,
    /// Marked after each publication: the heartbeat reports the loaded catalog change at once
    /// (a command waits for that report, `control::proxies_loaded`), and quiet sessions pick
    /// their version again.
    pub reloaded: Arc<watch::Sender<()>>,
}

impl Publisher {
    /// Makes `state` the routing state.
    fn publish(&self, state: RoutingState) {
        self.routing.store(Arc::new(state));
        self.cache.clear();
        self.reloaded.send_replace(());
    }
}

/// Runs until shutdown: keeps the published routing state equal to the catalog's latest.
pub async fn watch(
    source: Arc<CatalogSource>,
    publisher: Publisher,
    refresh_every: Duration,
    shutdown: Shutdown,
) {
    let mut pause = RECONNECT_MIN;
    loop {
        tokio::select! {
            _ = shutdown.begun() => return,
            result = follow(&source, &publisher, refresh_every) => {
                if let Err(error) = result {
                    tracing::warn!(%error, retry_in = ?pause, "lost the catalog connection; serving with the last routing state");
                }
            }
        }
        tokio::select! {
            _ = shutdown.begun() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// One control connection's life: LISTEN, load, reload on each notification.
async fn follow(
    source: &CatalogSource,
    publisher: &Publisher,
    refresh_every: Duration,
) -> Result<(), WatchError> {
    let (client, mut connection) = source.connect().await?;
    let (notify_tx, mut notify_rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notify_tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!("LISTEN {CONTROL_CHANNEL}"))
        .await?;
    let (mut map, state) = source.load_map(&client).await?;
    publisher.publish(state);
    tracing::info!(database = %source.database, "following the viewgate catalog");
    let mut refresh = tokio::time::interval(refresh_every);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            notified = notify_rx.recv() => {
                if notified.is_none() {
                    break;
                }
                // Several notifications in a burst need one reload. Any session may notify
                // the channel (the eleventh red-team pass sent hundreds): a reload that finds
                // the catalog as it was publishes nothing, so the rewrite cache stays.
                while notify_rx.try_recv().is_ok() {}
                let (loaded, state) = source.load_map(&client).await?;
                if loaded == map {
                    continue;
                }
                map = loaded;
                tracing::info!(versions = ?state.version_names(), default = ?state.default_version, rules = state.rules().len(), "routing state reloaded");
                publisher.publish(state);
            }
            _ = refresh.tick() => {
                let names = map.managed_names();
                let schemas = relation_schemas(&client, &names).await?;
                let kin = base_table_kin(&client, &map.base_tables()).await?;
                if schemas != map.relation_schemas || kin != map.kin {
                    map.relation_schemas = schemas;
                    map.kin = kin;
                    tracing::info!(relations = ?map.relation_schemas, relatives = map.kin.relatives.len(), foreign_keys = map.kin.references.len(), "relations named like managed tables, or their partitions, children, parents or foreign keys, changed");
                    publisher.publish(RoutingState::from_catalog(&source.database, &map));
                }
            }
        }
    }
    match driver.await {
        Ok(result) => Ok(result?),
        Err(_) => Ok(()),
    }
}
