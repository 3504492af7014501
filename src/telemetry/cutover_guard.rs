//! The proxy's part in a guarded default cutover: while the catalog has a guard watching
//! (`control::cutover::guard`), every [`CUTOVER_GUARD_INTERVAL`] this proxy reports how many
//! requests the sessions the default placed at the guarded version ran and how many failed
//! since the cutover, reads the sum over every proxy, and judges it as the canary guard judges
//! a rule ([`super::guard::judge`]: above the threshold with at least the minimum of requests).
//! Past the threshold it rolls the cutover back; so it does when a shadow run comparing with the
//! new default (`viewgate shadow start --to V`) finds more of its statements answered
//! differently (or failing) there than the threshold, judged the same way. Once the window has
//! passed under both, it ends the guard as held. Both are compare-and-sets in the catalog, so whichever proxy is first
//! acts and the others find nothing to do.
//!
//! Runs in its own task with its own catalog connection; serving never waits on it. When no
//! guard watches, it costs one small catalog read per interval.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use super::guard::judge;
use crate::control::connect::connect;
use crate::control::cutover::guard::{self, GuardCounts, WatchingGuard};
use crate::control::error::ControlError;
use crate::proxy::state::ProxyState;

/// How often the proxy reports its counts and judges the sum.
pub const CUTOVER_GUARD_INTERVAL: Duration = Duration::from_secs(1);

/// Watches for guarded cutovers until shutdown; does nothing without a catalog. `proxy_id`
/// names this proxy's counts (its heartbeat id, or its listen address).
pub async fn run(state: Arc<ProxyState>, proxy_id: String) {
    let Some(url) = state.config.load().catalog.clone() else {
        return;
    };
    let mut client: Option<Client> = None;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = state.shutdown.begun() => return,
            _ = tokio::time::sleep(CUTOVER_GUARD_INTERVAL) => {}
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&url).await.ok();
        }
        let Some(connected) = client.as_mut() else {
            continue;
        };
        match step(connected, &state, &proxy_id).await {
            Ok(()) => warned = false,
            Err(error) if !warned => {
                tracing::warn!(%error, "cutover guard: could not read or report; retrying");
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// One look: report, sum, judge, act.
async fn step(client: &mut Client, state: &ProxyState, proxy_id: &str) -> Result<(), ControlError> {
    let Some(watching) = guard::watching(&*client).await? else {
        return Ok(());
    };
    let local = local_counts(state, &watching);
    let all = guard::report(client, watching.id, proxy_id, local).await?;
    let totals = crate::proxy::stats::window::WindowTotals {
        queries: all.queries,
        errors: all.errors,
    };
    let as_totals = |counts: GuardCounts| crate::proxy::stats::window::WindowTotals {
        queries: counts.queries,
        errors: counts.errors,
    };
    // The error rate first; then, with a shadow run comparing with the new default, its rate of
    // statements answered differently there.
    let mut tripped = judge(&watching.guard, totals)
        .map(|threshold| (all, guard::trip_reason(&watching, all, threshold)));
    if tripped.is_none()
        && let Some(shadow) = guard::shadow_counts(&*client, &watching.to).await?
        && let Some(threshold) = judge(&watching.guard, as_totals(shadow))
    {
        tripped = Some((
            shadow,
            guard::shadow_trip_reason(&watching, shadow, threshold),
        ));
    }
    if let Some((counts, reason)) = tripped {
        if let Some(reason) = guard::trip(client, &watching, counts, reason).await? {
            tracing::warn!(guard = watching.id, version = %watching.to, "{reason}");
        }
    } else if watching.over && guard::hold(client, &watching, all).await? {
        tracing::info!(
            guard = watching.id,
            version = %watching.to,
            queries = all.queries,
            errors = all.errors,
            "cutover guard: the window passed under the threshold; the cutover holds"
        );
    }
    Ok(())
}

/// This proxy's requests and errors at the guarded version by default sessions since the
/// cutover (the window's span is the time since, by the catalog's clock, at most the window).
fn local_counts(state: &ProxyState, watching: &WatchingGuard) -> GuardCounts {
    let span = watching.elapsed.min(watching.window()) + Duration::from_secs(1);
    state
        .telemetry
        .default_window(&watching.to)
        .map(|window| {
            let totals = window.totals(span);
            GuardCounts {
                queries: totals.queries,
                errors: totals.errors,
            }
        })
        .unwrap_or_default()
}
