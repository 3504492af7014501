//! What every session of one proxy shares: configuration, the upstream, TLS, cancel keys and peers,
//! the pause gate and the registry the upstream switch reaches sessions through.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use super::cancel::CancelRegistry;
use super::client_slots::ClientSlots;
use super::pause::PauseGate;
use super::peers::Peers;
use super::shadow_tap::ShadowTap;
use super::switch::{SessionRegistry, Switchboard};
use super::upstream::{UpstreamError, UpstreamTarget};
use crate::config::{CacheConfig, ClientTlsMode, Config, ConfigSource};
use crate::model::migration_progress::MigrationProgress;
use crate::net::client_certificate::ClientCertificate;
use crate::net::tls;
use crate::proxy::stats::Telemetry;
use crate::rewriter::RewriteCache;
use crate::router::state::{SharedRouting, unrouted};
use crate::router::watcher::CatalogSource;
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Catalog(#[from] crate::router::watcher::WatchError),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
}

pub struct ProxyState {
    /// The configuration in effect; a reload replaces it whole, with only the settings
    /// `settings_reload` calls reloadable changed.
    pub config: ArcSwap<Config>,
    /// Where `config` came from, set by `viewgate serve` so that a reload reads the same
    /// layers again; unset (the demo, in-process tests), a reload reads only the TLS files.
    pub config_source: OnceLock<ConfigSource>,
    /// The `max_client_connections` bound, which a reload moves.
    pub client_slots: Arc<ClientSlots>,
    /// Where new sessions connect; replaced whole by a committed upstream switch.
    pub upstream: ArcSwap<UpstreamTarget>,
    /// Present unless client TLS is disabled.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// What `tls_acceptor` serves, which SIGHUP reads again from its files.
    pub client_certificate: Option<Arc<ClientCertificate>>,
    pub cancel_keys: Arc<CancelRegistry>,
    /// The other replicas a CancelRequest naming them is forwarded to; a reload replaces it.
    pub peers: ArcSwap<Peers>,
    pub shutdown: Shutdown,
    /// Where routing state comes from; `None` when versioning is off (a plain proxy).
    pub catalog: Option<Arc<CatalogSource>>,
    pub routing: SharedRouting,
    /// Rewrites shared by all sessions; cleared whenever the routing state is reloaded.
    pub rewrite_cache: Arc<RewriteCache>,
    /// Marked by the catalog watcher after each reload: the heartbeat then reports at once,
    /// and quiet sessions pick their version again (`SessionControl::FollowRouting`).
    pub routing_reloaded: Arc<tokio::sync::watch::Sender<()>>,
    pub session_counters: SessionCounters,
    /// Per-version and per-rule counters (admin API, heartbeat, canary guard).
    pub telemetry: Arc<Telemetry>,
    pub pause: PauseGate,
    /// Established sessions, for the upstream switch.
    pub sessions: Arc<SessionRegistry>,
    pub switchboard: Arc<Switchboard>,
    /// Where the catalog's migrations stand, as the heartbeat last read it (for /metrics).
    pub migrations: ArcSwap<MigrationProgress>,
    /// Statements sampled for the shadow run, and what became of them.
    pub shadow: ShadowTap,
}

/// Per-proxy session counts, read by the admin API's /metrics.
#[derive(Default)]
pub struct SessionCounters {
    pub active: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
}

impl ProxyState {
    pub fn new(config: Config, shutdown: Shutdown) -> Result<Self, StateError> {
        let client_certificate = match (&config.client_tls.cert, &config.client_tls.key) {
            (Some(cert), Some(key)) if config.client_tls.mode != ClientTlsMode::Disable => {
                Some(Arc::new(ClientCertificate::load(cert, key)?))
            }
            _ => None,
        };
        let tls_acceptor = match &client_certificate {
            Some(certificate) => Some(TlsAcceptor::from(tls::server_config(certificate.clone())?)),
            None => None,
        };
        let catalog = match &config.catalog {
            Some(url) => Some(Arc::new(CatalogSource::parse(url)?)),
            None => None,
        };
        Ok(ProxyState {
            catalog,
            routing: unrouted(),
            session_counters: SessionCounters::default(),
            telemetry: Telemetry::new(),
            rewrite_cache: Arc::new(RewriteCache::new(CacheConfig {
                max_entries: config.rewrite_cache_entries,
                ..CacheConfig::default()
            })),
            upstream: ArcSwap::from_pointee(UpstreamTarget::from_config(&config)?),
            pause: PauseGate::default(),
            sessions: Arc::default(),
            switchboard: Arc::default(),
            routing_reloaded: Arc::new(tokio::sync::watch::Sender::new(())),
            migrations: ArcSwap::default(),
            shadow: ShadowTap::default(),
            tls_acceptor,
            client_certificate,
            cancel_keys: CancelRegistry::with_peer_id(config.peer_id),
            peers: ArcSwap::from_pointee(Peers::from_config(&config)),
            client_slots: ClientSlots::new(config.max_client_connections),
            config_source: OnceLock::new(),
            shutdown,
            config: ArcSwap::from_pointee(config),
        })
    }
}
