//! The web dashboard on the admin server: `GET /ui` is a page shell (HTML and a little plain
//! JavaScript, no build chain) that holds no data and asks for the admin token; with it, the
//! page fetches `GET /ui/panel` — server-rendered HTML, behind the same bearer token as the rest
//! of the API — every [`PANEL_REFRESH_MS`] and swaps it in. Its actions (cutover, rollback,
//! set weights, start and stop a shadow run) ask for confirmation and call the same admin API
//! endpoints as the CLI, so the catalog stays the one source of truth.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::dashboard_panel;
use super::operations::{OperationError, catalog};
use crate::control::error::ControlError;
use crate::control::overview;
use crate::control::shadow::report;
use crate::proxy::state::ProxyState;

/// How often the page fetches the panel (well within the 2 s a change may take to show).
pub const PANEL_REFRESH_MS: u64 = 1000;

/// The page shell: public, data-free.
pub fn public_router() -> Router<Arc<ProxyState>> {
    Router::new().route("/ui", get(page))
}

/// The panel: behind the token.
pub fn router() -> Router<Arc<ProxyState>> {
    Router::new().route("/ui/panel", get(panel))
}

async fn page() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(PAGE.replace("{{REFRESH_MS}}", &PANEL_REFRESH_MS.to_string())),
    )
        .into_response()
}

async fn panel(State(state): State<Arc<ProxyState>>) -> Result<Response, OperationError> {
    let client = catalog(&state).await?;
    let overview = overview::load(&client).await?;
    let shadow = match report::load(&client).await {
        Ok(report) => Some(report),
        Err(ControlError::NoShadowRun) => None,
        Err(error) => return Err(error.into()),
    };
    let html = dashboard_panel::render(&dashboard_panel::PanelData {
        overview: &overview,
        versions: &state.telemetry.versions(),
        migrations: &state.migrations.load(),
        shadow: shadow.as_ref(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>viewgate</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.4em; }
table { border-collapse: collapse; } td, th { padding: .2em .6em; border-bottom: 1px solid #ddd; text-align: left; }
.stale, .bad { color: #b00; } .ok { color: #070; } .muted { color: #777; }
code { background: #f4f4f4; padding: 0 .2em; }
#status { margin-left: 1em; }
</style>
</head>
<body>
<h1>viewgate <span id="status" class="muted"></span></h1>
<form id="login">
  <label>Admin token <input id="token" type="password" autocomplete="off"></label>
  <button type="submit">Open</button>
</form>
<div id="panel"></div>
<script>
"use strict";
const refreshMs = {{REFRESH_MS}};
const panel = document.getElementById("panel");
const status = document.getElementById("status");
let token = sessionStorage.getItem("viewgate-token") || "";

function headers(json) {
  const h = { "Authorization": "Bearer " + token };
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function refresh() {
  if (!token) return;
  // Do not replace the panel under someone typing into it.
  if (panel.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
  try {
    const response = await fetch("/ui/panel", { headers: headers(false), cache: "no-store" });
    if (response.status === 401) {
      status.textContent = "the token was refused";
      token = ""; sessionStorage.removeItem("viewgate-token");
      document.getElementById("login").hidden = false;
      return;
    }
    panel.innerHTML = await response.text();
    panel.dataset.loaded = String(Date.now());
    status.textContent = response.ok ? "updated " + new Date().toLocaleTimeString() : "error " + response.status;
  } catch (error) {
    status.textContent = "unreachable: " + error;
  }
}

async function act(description, path, body) {
  if (!confirm(description + "?")) return;
  const response = await fetch(path, { method: "POST", headers: headers(true), body: JSON.stringify(body) });
  const text = await response.text();
  let message = text;
  try { const json = JSON.parse(text); message = json.message || json.error || text; } catch (_) {}
  status.textContent = (response.ok ? "done: " : "refused: ") + message;
  await refresh();
}

panel.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const data = Object.fromEntries(new FormData(form).entries());
  switch (form.dataset.action) {
    case "weights":
      return act("Set the weights of rule " + form.dataset.rule + " to " + data.weights,
                 "/routes/" + form.dataset.rule + "/weights", { weights: data.weights });
    case "shadow-start":
      return act("Start a shadow run from " + data.from + " to " + data.to + " at rate " + data.rate +
                 (data.match ? " for statements matching " + data.match : ""),
                 "/shadow/start", Object.assign({ from: data.from, to: data.to, rate: Number(data.rate) },
                                                data.match ? { match: data.match } : {}));
  }
});
panel.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  switch (button.dataset.action) {
    case "cutover": return act("Make " + button.dataset.to + " the default version", "/cutover", { to: button.dataset.to });
    case "rollback": return act("Roll the default version back", "/cutover", { rollback: true });
    case "shadow-stop": return act("Stop the shadow run", "/shadow/stop", {});
  }
});
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("viewgate-token", token);
  document.getElementById("login").hidden = true;
  refresh();
});
if (token) { document.getElementById("login").hidden = true; refresh(); }
setInterval(refresh, refreshMs);
</script>
</body>
</html>
"#;
