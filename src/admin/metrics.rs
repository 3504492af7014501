//! Prometheus text exposition of the proxy's counters.
//!
//! Counters live where the work happens (sessions in `proxy::state`, the rewrite cache in the
//! `rewriter`); this module only reads them, so the hot path never touches a metrics library.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::proxy::state::ProxyState;

/// All metrics in the Prometheus text format (version 0.0.4).
pub fn render(state: &ProxyState) -> String {
    let mut out = String::with_capacity(1024);
    let sessions = &state.session_counters;
    gauge(
        &mut out,
        "viewgate_sessions_active",
        "Client sessions being served now.",
        sessions.active.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "viewgate_sessions_total",
        "Client sessions accepted since start.",
        sessions.accepted.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "viewgate_sessions_refused_total",
        "Connections refused because max_client_connections was reached.",
        sessions.refused.load(Ordering::Relaxed),
    );
    let cache = state.rewrite_cache.stats();
    counter(
        &mut out,
        "viewgate_rewrite_cache_hits_total",
        "Rewrites answered from the cache.",
        cache.hits,
    );
    counter(
        &mut out,
        "viewgate_rewrite_cache_misses_total",
        "Rewrites computed because the cache had none.",
        cache.misses,
    );
    counter(
        &mut out,
        "viewgate_rewrite_cache_evictions_total",
        "Cached rewrites evicted to keep the bound.",
        cache.evictions,
    );
    gauge(
        &mut out,
        "viewgate_rewrite_cache_entries",
        "Rewrites in the cache now.",
        cache.entries as u64,
    );
    let routing = state.routing.load();
    gauge(
        &mut out,
        "viewgate_versions",
        "Schema versions known from the catalog.",
        routing.version_names().len() as u64,
    );
    gauge(
        &mut out,
        "viewgate_paused",
        "1 while the pause gate is closed (pause or upstream cutover), else 0.",
        u64::from(state.pause.is_closed()),
    );
    let (buckets, count, sum) = state.pause.histogram().snapshot();
    let name = "viewgate_pause_wait_seconds";
    let _ = write!(
        out,
        "# HELP {name} How long client messages and new sessions waited at the pause gate.\n# TYPE {name} histogram\n"
    );
    for (bound, cumulative) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = write!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n"
    );
    out
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
}
