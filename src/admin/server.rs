//! The admin HTTP server (axum): routes, binding, shutdown with the proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::auth::{AdminToken, require_token};
use super::{metrics, operations};
use crate::proxy::state::ProxyState;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen for the admin API on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "admin_listen {0} is not a loopback address, so admin_token must be set (anyone who can reach it could otherwise read and, later, change routing)"
    )]
    TokenRequired(String),
}

pub struct AdminServer {
    listener: TcpListener,
    router: Router,
}

impl AdminServer {
    /// Binds `address`; refuses a non-loopback address without a token.
    pub async fn bind(
        address: &str,
        token: Option<String>,
        state: Arc<ProxyState>,
    ) -> Result<AdminServer, AdminError> {
        let token = token.filter(|t| !t.is_empty());
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind {
                address: address.to_owned(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| AdminError::Bind {
            address: address.to_owned(),
            source,
        })?;
        if token.is_none() && !local.ip().is_loopback() {
            return Err(AdminError::TokenRequired(local.to_string()));
        }
        let protected = Router::new()
            .route("/metrics", get(metrics_handler))
            .merge(operations::router())
            .route_layer(axum::middleware::from_fn_with_state(
                AdminToken(token),
                require_token,
            ));
        let router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready_handler))
            .merge(protected)
            .with_state(state);
        Ok(AdminServer { listener, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the proxy begins shutting down.
    pub async fn run(self, state: Arc<ProxyState>) {
        let shutdown = state.shutdown.clone();
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.begun().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the admin API stopped");
        }
    }
}

async fn metrics_handler(State(state): State<Arc<ProxyState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&state),
    )
}

/// Ready while accepting sessions, and (with a catalog configured) once routing is loaded.
async fn ready_handler(State(state): State<Arc<ProxyState>>) -> impl IntoResponse {
    let routed = state.catalog.is_none() || state.routing.load().database.is_some();
    match (state.shutdown.is_begun(), routed) {
        (false, true) => (StatusCode::OK, "ready\n"),
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "catalog not loaded yet\n"),
    }
}
