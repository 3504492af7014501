//! Prometheus text exposition of the proxy's counters.
//!
//! Counters live where the work happens (sessions in `proxy::state`, the rewrite cache in the
//! `rewriter`); this module only reads them, so the hot path never touches a metrics library.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::model::migration_progress::TableBackfill;
use crate::model::shadow_run::SHADOW_OUTCOMES;
use crate::proxy::state::ProxyState;
use crate::proxy::stats::Telemetry;
use crate::proxy::stats::histogram::{HistogramSnapshot, LATENCY_BUCKETS};

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
    gauge(
        &mut out,
        "viewgate_max_client_connections",
        "Client sessions served at once at most (max_client_connections; a reload moves it).",
        state.client_slots.limit() as u64,
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
    let name = "viewgate_pause_wait_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "How long client messages and new sessions waited at the pause gate.",
    );
    histogram(&mut out, name, "", &state.pause.histogram().snapshot());
    render_versions(&mut out, &state.telemetry);
    migrations(&mut out, state);
    shadow(&mut out, state);
    out
}

/// Per-version sessions, queries, errors by SQLSTATE class and latency; per-rule hits.
fn render_versions(out: &mut String, telemetry: &Telemetry) {
    let versions = telemetry.versions();
    header(
        out,
        "viewgate_version_sessions",
        "gauge",
        "Sessions running at each version now.",
    );
    for v in &versions {
        let _ = writeln!(
            out,
            "viewgate_version_sessions{{version=\"{}\"}} {}",
            v.version, v.sessions
        );
    }
    header(
        out,
        "viewgate_version_sessions_by_reason",
        "gauge",
        "Sessions per version by why they run at it (declared, set, rule N, default).",
    );
    for (version, reasons) in telemetry.sessions_by_reason() {
        for (reason, sessions) in reasons {
            let _ = writeln!(
                out,
                "viewgate_version_sessions_by_reason{{version=\"{version}\",reason=\"{reason}\"}} {sessions}"
            );
        }
    }
    header(
        out,
        "viewgate_version_queries_total",
        "counter",
        "Requests (a Query, or up to a Sync) answered, per version.",
    );
    for v in &versions {
        let _ = writeln!(
            out,
            "viewgate_version_queries_total{{version=\"{}\"}} {}",
            v.version, v.queries
        );
    }
    header(
        out,
        "viewgate_version_errors_total",
        "counter",
        "ErrorResponses per version and SQLSTATE class.",
    );
    for v in &versions {
        for (class, count) in &v.errors {
            let _ = writeln!(
                out,
                "viewgate_version_errors_total{{version=\"{}\",class=\"{class}\"}} {count}",
                v.version
            );
        }
    }
    let name = "viewgate_version_query_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from sending a request upstream to its ReadyForQuery, per version.",
    );
    for v in &versions {
        let labels = format!("version=\"{}\",", v.version);
        histogram(out, name, &labels, &v.latency);
    }
    header(
        out,
        "viewgate_rule_hits_total",
        "counter",
        "Sessions whose version a routing rule decided, per rule id.",
    );
    for (rule, hits) in telemetry.rule_hits() {
        let _ = writeln!(out, "viewgate_rule_hits_total{{rule=\"{rule}\"}} {hits}");
    }
}

/// Shadow reads on this proxy: statements sampled, dropped, and what their comparison found.
fn shadow(out: &mut String, state: &ProxyState) {
    let counts = state.shadow.counters.snapshot();
    let value = |name: &str| {
        counts
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    counter(
        out,
        "viewgate_shadow_sampled_total",
        "Read-only statements sampled for the shadow run and queued.",
        value("sampled"),
    );
    counter(
        out,
        "viewgate_shadow_dropped_total",
        "Statements sampled but dropped because the shadow queue was full.",
        value("dropped"),
    );
    let name = "viewgate_shadow_outcomes_total";
    header(
        out,
        name,
        "counter",
        "Sampled statements by outcome: matched, diff, nondeterministic, error (at the new version only), timeout, skipped (not eligible), too_large (a result over the row or byte cap), role_refused (not run: the client's role could not be taken).",
    );
    for outcome in SHADOW_OUTCOMES {
        let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {}", value(outcome));
    }
    let running = state.routing.load().shadow().is_some();
    gauge(
        out,
        "viewgate_shadow_running",
        "1 while a shadow run is in progress, else 0.",
        u64::from(running),
    );
}

/// Where migrations stand: phase, per table the rows backfilled of those estimated, and a
/// running backfill's pace.
fn migrations(out: &mut String, state: &ProxyState) {
    let progress = state.migrations.load();
    header(
        out,
        "viewgate_migration_live",
        "gauge",
        "Migrations not yet completed, by the version they create and their phase (backfilling, live).",
    );
    for migration in &progress.migrations {
        let _ = writeln!(
            out,
            "viewgate_migration_live{{version=\"{}\",from=\"{}\",phase=\"{}\"}} 1",
            migration.version, migration.from, migration.phase
        );
    }
    header(
        out,
        "viewgate_migration_left_to_run",
        "gauge",
        "Statements a migration's complete or rollback left to run after its commit (index drops of a killed command); the next migrate command runs them.",
    );
    for left in &progress.left_to_run {
        let _ = writeln!(
            out,
            "viewgate_migration_left_to_run{{version=\"{}\",after=\"{}\"}} {}",
            left.version, left.after, left.statements
        );
    }
    // Per table of each migration: the name, its help, and the figure (none: no sample).
    type TableFigure = fn(&TableBackfill) -> Option<f64>;
    let per_table: [(&str, &str, TableFigure); 5] = [
        (
            "viewgate_backfill_rows",
            "Rows a migration's backfill has filled, per table.",
            |table| Some(table.rows as f64),
        ),
        (
            "viewgate_backfill_rows_estimate",
            "Rows a migration's backfill expects to fill, per table.",
            |table| Some(table.estimate as f64),
        ),
        (
            "viewgate_backfill_rows_per_second",
            "Rows a running backfill filled per second over its last few seconds, waits included.",
            |table| table.pace.as_ref().map(|pace| pace.rows_per_second),
        ),
        (
            "viewgate_backfill_working_ratio",
            "The share of those seconds a running backfill spent in batches; the rest it yielded.",
            |table| table.pace.as_ref().map(|pace| pace.working_share),
        ),
        (
            "viewgate_backfill_waiting_for_standby",
            "1 while a running backfill waits for a standby more than its max_replica_lag_ms behind.",
            |table| {
                table
                    .pace
                    .as_ref()
                    .map(|pace| f64::from(u8::from(pace.waiting_for_standby.is_some())))
            },
        ),
    ];
    for (name, help, figure) in per_table {
        header(out, name, "gauge", help);
        for migration in &progress.migrations {
            for table in &migration.tables {
                let Some(value) = figure(table) else { continue };
                let _ = writeln!(
                    out,
                    "{name}{{version=\"{}\",table=\"{}\"}} {value}",
                    migration.version,
                    label_value(&table.table)
                );
            }
        }
    }
}

/// A label value as Prometheus's text format wants it: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One histogram's series; `labels` is empty or ends with a comma.
fn histogram(out: &mut String, name: &str, labels: &str, snapshot: &HistogramSnapshot) {
    for (bound, count) in LATENCY_BUCKETS.iter().zip(&snapshot.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}le=\"+Inf\"}} {}",
        snapshot.count
    );
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count{braces} {}", snapshot.count);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::model::migration_progress::{LeftToRun, MigrationFigures, MigrationProgress};
    use crate::shutdown::Shutdown;

    #[test]
    fn a_running_backfill_shows_its_pace_and_a_finished_one_only_its_rows() {
        let state = ProxyState::new(Config::default(), Shutdown::new()).unwrap();
        let figures = MigrationFigures::from_row(
            "v2".into(),
            "v1".into(),
            "backfilling".into(),
            r#"{"public.a": {"rows": 9, "estimate": 20, "done": false, "pacing":
                    {"rows_per_second": 1200.5, "working_share": 0.25, "batch_rows": 250}},
                "public.b": {"rows": 7, "estimate": 7, "done": true, "pacing":
                    {"rows_per_second": 10.0, "working_share": 1.0, "batch_rows": 1}}}"#,
        );
        state.migrations.store(Arc::new(MigrationProgress {
            migrations: vec![figures],
            left_to_run: vec![LeftToRun::from_row("v3".into(), "rolled_back", 2)],
        }));
        let mut out = String::new();
        migrations(&mut out, &state);
        for line in [
            "viewgate_backfill_rows{version=\"v2\",table=\"public.a\"} 9\n",
            "viewgate_backfill_rows_estimate{version=\"v2\",table=\"public.a\"} 20\n",
            "viewgate_backfill_rows{version=\"v2\",table=\"public.b\"} 7\n",
            "viewgate_backfill_rows_per_second{version=\"v2\",table=\"public.a\"} 1200.5\n",
            "viewgate_backfill_working_ratio{version=\"v2\",table=\"public.a\"} 0.25\n",
            "viewgate_backfill_waiting_for_standby{version=\"v2\",table=\"public.a\"} 0\n",
            "viewgate_migration_left_to_run{version=\"v3\",after=\"rollback\"} 2\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert!(
            !out.contains("_per_second{version=\"v2\",table=\"public.b\"}"),
            "{out}"
        );
        assert!(
            !out.contains("_ratio{version=\"v2\",table=\"public.b\"}"),
            "{out}"
        );
    }
}
