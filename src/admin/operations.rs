//! The control operations of the admin API: the same catalog operations as the CLI
//! (`viewgate status`, `cutover --to` / `--rollback`), for callers that reach the proxy's admin
//! port rather than the catalog database. The proxy connects to its catalog for each request;
//! the change reaches every proxy (this one included) through the catalog's NOTIFY.
//!
//! All routes here sit behind the bearer token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::{cutover, overview};
use crate::proxy::state::ProxyState;

pub fn router() -> Router<Arc<ProxyState>> {
    Router::new()
        .route("/status", get(status))
        .route("/cutover", post(cutover_handler))
}

/// A failed operation, as JSON `{"error": "..."}` with a status saying whose fault it was.
struct OperationError(StatusCode, String);

impl From<ControlError> for OperationError {
    fn from(error: ControlError) -> Self {
        let status = match error {
            ControlError::Connect { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Database { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        };
        OperationError(status, error.to_string())
    }
}

impl IntoResponse for OperationError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The catalog connection for one operation.
async fn catalog(state: &ProxyState) -> Result<tokio_postgres::Client, OperationError> {
    let Some(url) = &state.config.catalog else {
        return Err(OperationError(
            StatusCode::CONFLICT,
            "this proxy has no catalog configured (set `catalog` in its configuration)".into(),
        ));
    };
    Ok(connect(url).await?)
}

async fn status(State(state): State<Arc<ProxyState>>) -> Result<Response, OperationError> {
    let client = catalog(&state).await?;
    Ok(Json(overview::load(&client).await?).into_response())
}

/// `{"to": "v2"}` or `{"rollback": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CutoverRequest {
    to: Option<String>,
    #[serde(default)]
    rollback: bool,
}

async fn cutover_handler(
    State(state): State<Arc<ProxyState>>,
    Json(request): Json<CutoverRequest>,
) -> Result<Response, OperationError> {
    let mut client = catalog(&state).await?;
    let outcome = match (request.to, request.rollback) {
        (Some(to), false) => cutover::cutover(&mut client, &to).await?,
        (None, true) => cutover::rollback(&mut client).await?,
        _ => {
            return Err(OperationError(
                StatusCode::BAD_REQUEST,
                "send either {\"to\": \"VERSION\"} or {\"rollback\": true}".into(),
            ));
        }
    };
    Ok(Json(serde_json::json!({
        "from": outcome.from,
        "to": outcome.to,
        "message": outcome.to_string(),
    }))
    .into_response())
}
