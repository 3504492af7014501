//! What every session of one proxy shares: configuration, the upstream, TLS and cancel keys.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::cancel::CancelRegistry;
use super::upstream::{UpstreamError, UpstreamTarget};
use crate::config::{ClientTlsMode, Config};
use crate::net::tls;
use crate::shutdown::Shutdown;

pub struct ProxyState {
    pub config: Config,
    pub upstream: Arc<UpstreamTarget>,
    /// Present unless client TLS is disabled.
    pub tls_acceptor: Option<TlsAcceptor>,
    pub cancel_keys: Arc<CancelRegistry>,
    pub shutdown: Shutdown,
}

impl ProxyState {
    pub fn new(config: Config, shutdown: Shutdown) -> Result<Self, UpstreamError> {
        let tls_acceptor = match (&config.client_tls.cert, &config.client_tls.key) {
            (Some(cert), Some(key)) if config.client_tls.mode != ClientTlsMode::Disable => {
                Some(TlsAcceptor::from(tls::server_config(cert, key)?))
            }
            _ => None,
        };
        Ok(ProxyState {
            upstream: Arc::new(UpstreamTarget::from_config(&config)?),
            tls_acceptor,
            cancel_keys: CancelRegistry::new(),
            shutdown,
            config,
        })
    }
}
