//! The control operations of the admin API: the same catalog operations as the CLI
//! (`viewgate status`, `cutover --to` / `--rollback`, `route list|add|remove|set-weights`),
//! for callers that reach the proxy's admin
//! port rather than the catalog database. The proxy connects to its catalog for each request;
//! the change reaches every proxy (this one included) through the catalog's NOTIFY. A change
//! answers once every live proxy has loaded it, with what they reported (`"proxies"`, as
//! `control::proxies_loaded` gives it; `null` for a catalog that keeps no count).
//!
//! All routes here sit behind the bearer token.

use std::sync::Arc;

use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::control::connect::connect;
use crate::control::cutover::default_version as cutover;
use crate::control::cutover::guard::GuardArgs;
use crate::control::error::ControlError;
use crate::control::overview;
use crate::control::proxies_loaded::{PROXY_LOAD_TIMEOUT, wait_for_proxies};
use crate::control::routing::{RouteArgs, routes};
use crate::model::Assign;
use crate::proxy::state::ProxyState;

pub fn router() -> Router<Arc<ProxyState>> {
    Router::new()
        .route("/status", get(status))
        .route("/cutover", post(cutover_handler))
        .route("/routes", get(route_list).post(route_add))
        .route("/routes/{id}", delete(route_remove))
        .route("/routes/{id}/weights", post(route_set_weights))
        .route("/routes/{id}/enabled", post(route_set_enabled))
}

/// A failed operation, as JSON `{"error": "..."}` with a status saying whose fault it was.
pub(super) struct OperationError(pub(super) StatusCode, pub(super) String);

impl From<ControlError> for OperationError {
    fn from(error: ControlError) -> Self {
        let status = match error {
            ControlError::Connect { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Database { .. } => StatusCode::BAD_GATEWAY,
            ControlError::RuleNotFound(_) | ControlError::NoShadowRun => StatusCode::NOT_FOUND,
            ControlError::ShadowRunning(_) => StatusCode::CONFLICT,
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
pub(super) async fn catalog(state: &ProxyState) -> Result<tokio_postgres::Client, OperationError> {
    let Some(url) = state.config.load().catalog.clone() else {
        return Err(OperationError(
            StatusCode::CONFLICT,
            "this proxy has no catalog configured (set `catalog` in its configuration)".into(),
        ));
    };
    Ok(connect(&url).await?)
}

/// `answer` with the proxies' report of the change, once every live proxy has loaded it.
async fn after_change(
    client: &tokio_postgres::Client,
    mut answer: serde_json::Value,
) -> Result<Response, OperationError> {
    let loaded = wait_for_proxies(client, PROXY_LOAD_TIMEOUT).await?;
    if let Some(fields) = answer.as_object_mut() {
        fields.insert("proxies".into(), serde_json::json!(loaded));
    }
    Ok(Json(answer).into_response())
}

async fn status(State(state): State<Arc<ProxyState>>) -> Result<Response, OperationError> {
    let client = catalog(&state).await?;
    Ok(Json(overview::load(&client).await?).into_response())
}

/// `{"to": "v2"}` (optionally guarded: `"guard_error_rate": 0.05, "guard_window": "60s",
/// "guard_min_queries": 20`) or `{"rollback": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CutoverRequest {
    to: Option<String>,
    #[serde(default)]
    rollback: bool,
    guard_error_rate: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    guard_window: Option<std::time::Duration>,
    guard_min_queries: Option<u32>,
}

async fn cutover_handler(
    State(state): State<Arc<ProxyState>>,
    Json(request): Json<CutoverRequest>,
) -> Result<Response, OperationError> {
    let guard = GuardArgs {
        error_rate: request.guard_error_rate,
        window: request.guard_window,
        min_queries: request.guard_min_queries,
    }
    .to_guard()?;
    if guard.is_some() && request.to.is_none() {
        return Err(OperationError(
            StatusCode::BAD_REQUEST,
            "the guard options go with {\"to\": \"VERSION\"}".into(),
        ));
    }
    let mut client = catalog(&state).await?;
    let outcome = match (request.to, request.rollback, guard) {
        (Some(to), false, Some(guard)) => {
            cutover::guarded_cutover(&mut client, &to, &guard).await?
        }
        (Some(to), false, None) => cutover::cutover(&mut client, &to).await?,
        (None, true, _) => cutover::rollback(&mut client).await?,
        _ => {
            return Err(OperationError(
                StatusCode::BAD_REQUEST,
                "send either {\"to\": \"VERSION\"} or {\"rollback\": true}".into(),
            ));
        }
    };
    let answer = serde_json::json!({
        "from": outcome.from,
        "to": outcome.to,
        "guard": outcome.guard.map(|(id, _)| id),
        "message": outcome.to_string(),
    });
    after_change(&client, answer).await
}

async fn route_list(State(state): State<Arc<ProxyState>>) -> Result<Response, OperationError> {
    let client = catalog(&state).await?;
    Ok(Json(routes::list(&client).await?).into_response())
}

/// The body is `route add`'s options as JSON, e.g.
/// `{"split": "v2=10,v1=90", "application": "web-*", "guard_error_rate": 0.05}`.
async fn route_add(
    State(state): State<Arc<ProxyState>>,
    Json(args): Json<RouteArgs>,
) -> Result<Response, OperationError> {
    let rule = args.to_rule()?;
    let mut client = catalog(&state).await?;
    let added = routes::add(&mut client, &rule).await?;
    after_change(&client, serde_json::json!(added)).await
}

async fn route_remove(
    State(state): State<Arc<ProxyState>>,
    Path(id): Path<i64>,
) -> Result<Response, OperationError> {
    let mut client = catalog(&state).await?;
    let removed = routes::remove(&mut client, id).await?;
    let answer = serde_json::json!({ "removed": removed.id, "message": removed.to_string() });
    after_change(&client, answer).await
}

/// `{"enabled": false}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnabledRequest {
    enabled: bool,
}

async fn route_set_enabled(
    State(state): State<Arc<ProxyState>>,
    Path(id): Path<i64>,
    Json(request): Json<EnabledRequest>,
) -> Result<Response, OperationError> {
    let mut client = catalog(&state).await?;
    let toggled = routes::set_enabled(&mut client, id, request.enabled).await?;
    let answer = serde_json::json!({
        "id": toggled.id,
        "enabled": toggled.enabled,
        "message": toggled.to_string(),
    });
    after_change(&client, answer).await
}

/// `{"weights": "v2=20,v1=80"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsRequest {
    weights: String,
}

async fn route_set_weights(
    State(state): State<Arc<ProxyState>>,
    Path(id): Path<i64>,
    Json(request): Json<WeightsRequest>,
) -> Result<Response, OperationError> {
    let split = Assign::parse_split(&request.weights).map_err(ControlError::from)?;
    let mut client = catalog(&state).await?;
    let changed = routes::set_weights(&mut client, id, split).await?;
    let answer = serde_json::json!({
        "id": changed.id,
        "from": changed.from,
        "to": changed.to.to_string(),
        "message": changed.to_string(),
    });
    after_change(&client, answer).await
}
