//! The admin API's shadow runs: `POST /shadow/start` (`shadow start`'s options as JSON: `{"from":
//! "v1", "to": "v2", "rate": 0.05, "budget": 10000, "redact": false}`), `POST /shadow/stop`,
//! `GET /shadow/report`: the CLI's operations over HTTP, behind the bearer token. The run is
//! written to the catalog, and every proxy (this one too) starts or stops sampling when the
//! catalog's NOTIFY reloads its routing state.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::operations::{OperationError, catalog};
use crate::control::shadow::report;
use crate::control::shadow::run::{self, ShadowArgs};
use crate::proxy::state::ProxyState;

pub fn router() -> Router<Arc<ProxyState>> {
    Router::new()
        .route("/shadow/start", post(start))
        .route("/shadow/stop", post(stop))
        .route("/shadow/report", get(report_handler))
}

async fn start(
    State(state): State<Arc<ProxyState>>,
    Json(args): Json<ShadowArgs>,
) -> Result<Response, OperationError> {
    args.check()?;
    let mut client = catalog(&state).await?;
    let started = run::start(&mut client, &args).await?;
    let message = started.to_string();
    Ok(
        Json(serde_json::json!({ "id": started.id, "run": started, "message": message }))
            .into_response(),
    )
}

async fn stop(State(state): State<Arc<ProxyState>>) -> Result<Response, OperationError> {
    let mut client = catalog(&state).await?;
    let id = run::stop(&mut client).await?;
    Ok(Json(serde_json::json!({ "stopped": id })).into_response())
}

async fn report_handler(State(state): State<Arc<ProxyState>>) -> Result<Response, OperationError> {
    let client = catalog(&state).await?;
    Ok(Json(report::load(&client).await?).into_response())
}
