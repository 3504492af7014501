//! The admin HTTP server (axum): routes, binding, shutdown with the proxy.
//!
//! Pause and upstream-switch routes (token-protected, JSON answers, see `proxy::switch`):
//! `GET /pause` (state), `POST /pause` (`timeout_ms`), `POST /resume`,
//! `POST /upstream/prepare` (`url`, `timeout_ms`), `POST /upstream/commit`,
//! `POST /upstream/abort`. Parameters come from the query string or a JSON object body.
//! Errors are `{"error": "..."}` with 409 (wrong state, or another operation running),
//! 400 (bad parameters), 502 (a session could not move: the switch was undone) or 504 (in-flight
//! transactions outlasted the timeout: the proxy resumed).
//!
//! `POST /reload` reads the configuration file and the TLS files again, as SIGHUP does
//! (`proxy::reload`): 200 with the settings applied and those that take a restart, and what
//! became of each TLS file; or 422 with the same and an `error` when a file was kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;

use super::auth::{admin_token, require_token};
use super::{dashboard, metrics, operations, sessions, shadow};
use crate::proxy::reload;
use crate::proxy::state::ProxyState;
use crate::proxy::switch::SwitchError;

/// How long a pause or prepare waits for in-flight transactions unless told otherwise.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Binds `address`; refuses a non-loopback address without a token (which is why a
    /// reload may rotate the token but not remove it).
    pub async fn bind(address: &str, state: Arc<ProxyState>) -> Result<AdminServer, AdminError> {
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
        if admin_token(&state).is_none() && !local.ip().is_loopback() {
            return Err(AdminError::TokenRequired(local.to_string()));
        }
        let protected = Router::new()
            .route("/metrics", get(metrics_handler))
            .merge(operations::router())
            .merge(shadow::router())
            .merge(sessions::router())
            .merge(dashboard::router())
            .route("/pause", get(pause_status).post(pause_handler))
            .route("/resume", post(resume_handler))
            .route("/upstream/prepare", post(prepare_handler))
            .route("/upstream/commit", post(commit_handler))
            .route("/upstream/abort", post(abort_handler))
            .route("/reload", post(reload_handler))
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                require_token,
            ));
        let router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready_handler))
            .merge(dashboard::public_router())
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

/// Parameters of a control request: the query string, then a JSON object body over it.
struct Params(serde_json::Map<String, serde_json::Value>);

impl Params {
    fn parse(uri: &Uri, body: &[u8]) -> Result<Params, &'static str> {
        let mut map = serde_json::Map::new();
        if let Some(query) = uri.query() {
            for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
                map.insert(
                    key.into_owned(),
                    serde_json::Value::String(value.into_owned()),
                );
            }
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(object)) => map.extend(object),
                _ => return Err("the body must be a JSON object"),
            }
        }
        Ok(Params(map))
    }

    fn string(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    fn timeout(&self) -> Result<Duration, &'static str> {
        match self.string("timeout_ms") {
            None => Ok(DEFAULT_PAUSE_TIMEOUT),
            Some(text) => text
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| "timeout_ms must be a whole number of milliseconds"),
        }
    }
}

fn bad_request(message: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, message)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum_json(&serde_json::json!({ "error": message }))).into_response()
}

/// JSON without axum's `json` feature: serialised here, sent with its content type.
fn axum_json<T: Serialize>(value: &T) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
    )
}

fn answer<T: Serialize>(result: Result<T, SwitchError>) -> Response {
    match result {
        Ok(report) => (StatusCode::OK, axum_json(&report)).into_response(),
        Err(error) => {
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_error(status, &error.to_string())
        }
    }
}

async fn pause_status(State(state): State<Arc<ProxyState>>) -> Response {
    (StatusCode::OK, axum_json(&state.switchboard.status(&state))).into_response()
}

async fn pause_handler(State(state): State<Arc<ProxyState>>, uri: Uri, body: Bytes) -> Response {
    let timeout = match Params::parse(&uri, &body).and_then(|p| p.timeout()) {
        Ok(timeout) => timeout,
        Err(message) => return bad_request(message),
    };
    answer(state.switchboard.pause(&state, timeout).await)
}

async fn resume_handler(State(state): State<Arc<ProxyState>>) -> Response {
    answer(state.switchboard.resume(&state).await)
}

async fn prepare_handler(State(state): State<Arc<ProxyState>>, uri: Uri, body: Bytes) -> Response {
    let params = match Params::parse(&uri, &body) {
        Ok(params) => params,
        Err(message) => return bad_request(message),
    };
    let timeout = match params.timeout() {
        Ok(timeout) => timeout,
        Err(message) => return bad_request(message),
    };
    let Some(url) = params.string("url") else {
        return bad_request("url is required: the new upstream, e.g. postgres://host:5432");
    };
    let board = state.switchboard.clone();
    answer(board.prepare(&state, &url, timeout).await)
}

async fn commit_handler(State(state): State<Arc<ProxyState>>) -> Response {
    answer(state.switchboard.commit(&state).await)
}

async fn abort_handler(State(state): State<Arc<ProxyState>>) -> Response {
    answer(state.switchboard.abort(&state).await)
}

async fn reload_handler(State(state): State<Arc<ProxyState>>) -> Response {
    let report = reload::reload(&state);
    let mut answer = serde_json::to_value(&report).unwrap_or_default();
    match report.failure() {
        None => (StatusCode::OK, axum_json(&answer)).into_response(),
        Some(failure) => {
            answer["error"] = failure.into();
            (StatusCode::UNPROCESSABLE_ENTITY, axum_json(&answer)).into_response()
        }
    }
}
