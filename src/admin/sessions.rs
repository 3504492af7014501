//! The admin API's `/sessions`: every client session this proxy serves, who it is and where it
//! stands (PgBouncer's `SHOW CLIENTS`, as JSON). The heartbeat publishes only a few per
//! version to the catalog; an operator looking for the one that holds a version back asks the
//! proxy that serves it for all of them. `?version=v1` keeps those at one version.
//!
//! Behind the bearer token: it names clients' addresses and applications.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::model::listed_session::ListedSession;
use crate::proxy::state::ProxyState;

pub fn router() -> Router<Arc<ProxyState>> {
    Router::new().route("/sessions", get(sessions))
}

#[derive(Debug, Deserialize)]
struct SessionFilter {
    version: Option<String>,
}

async fn sessions(
    State(state): State<Arc<ProxyState>>,
    Query(filter): Query<SessionFilter>,
) -> Json<Vec<ListedSession>> {
    let mut sessions = state.telemetry.cards().all();
    if let Some(version) = &filter.version {
        sessions.retain(|session| session.version.as_ref() == Some(version));
    }
    Json(sessions)
}
