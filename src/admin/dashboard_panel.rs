//! The dashboard's panel as server-rendered HTML: versions and the default (with cutover and
//! rollback buttons), routing rules with their live weights (a form per split), each proxy's
//! heartbeat age and sessions per version, this proxy's queries, error rate, mean and p99
//! latency per version, the shadow run's counts and differences, migrations' phase and backfill, and the
//! history. Every catalog or client-derived string is HTML-escaped.

use std::fmt::Write;

use crate::control::overview::{self, Overview};
use crate::control::shadow::report::ShadowReport;
use crate::model::Assign;
use crate::model::latency::LATENCY_BUCKETS;
use crate::model::migration_progress::MigrationProgress;
use crate::proxy::stats::counters::VersionSnapshot;

/// What the panel shows.
pub struct PanelData<'a> {
    pub overview: &'a Overview,
    pub versions: &'a [VersionSnapshot],
    pub migrations: &'a MigrationProgress,
    pub shadow: Option<&'a ShadowReport>,
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

pub fn render(data: &PanelData<'_>) -> String {
    let mut out = String::with_capacity(8192);
    let overview = data.overview;
    let default = overview.default_version.as_deref().unwrap_or("(none)");
    let _ = write!(
        out,
        "<h2>Versions</h2><p>default version: <b id=\"default-version\">{}</b> \
         <button data-action=\"rollback\">Roll back</button></p><table><tr><th>version</th><th>state</th><th>live sessions</th><th></th></tr>",
        escape(default)
    );
    for version in &overview.versions {
        let sessions = overview
            .sessions
            .get(&version.version)
            .copied()
            .unwrap_or(0);
        let button = if version.state == "active"
            && Some(&version.version) != overview.default_version.as_ref()
        {
            format!(
                "<button data-action=\"cutover\" data-to=\"{0}\">Cut over to {0}</button>",
                escape(&version.version)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{sessions}</td><td>{button}</td></tr>",
            escape(&version.version),
            escape(&version.state)
        );
    }
    out.push_str("</table>");

    out.push_str("<h2>Routing rules</h2>");
    if overview.rules.is_empty() {
        out.push_str("<p class=\"muted\">none</p>");
    } else {
        out.push_str("<table><tr><th>rule</th><th>match</th><th>assignment</th><th>guard</th><th>enabled</th><th>weights</th></tr>");
        for rule in &overview.rules {
            let weights = match &rule.assign {
                Assign::Split(_) => format!(
                    "<form data-action=\"weights\" data-rule=\"{id}\"><input name=\"weights\" id=\"weights-{id}\" value=\"{value}\" size=\"16\"> <button type=\"submit\">Set weights</button></form>",
                    id = rule.id,
                    value = escape(&rule.assign.to_string())
                ),
                Assign::Version(_) => String::new(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td id=\"assign-{}\">{}</td><td>{}</td><td>{}</td><td>{weights}</td></tr>",
                rule.id,
                escape(&rule.match_text()),
                rule.id,
                escape(&rule.assign.to_string()),
                escape(&rule.guard.to_string()),
                rule.enabled
            );
        }
        out.push_str("</table>");
    }

    out.push_str("<h2>Proxies</h2><table><tr><th>proxy</th><th>heartbeat</th><th>default</th><th>sessions per version</th></tr>");
    for proxy in &overview.proxies {
        let sessions: Vec<String> = proxy
            .sessions
            .iter()
            .map(|(version, n)| format!("{}={n}", escape(version)))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"{}\">{:.1}s ago{}</td><td>{}</td><td>{}</td></tr>",
            escape(&proxy.proxy_id),
            if proxy.stale { "stale" } else { "ok" },
            proxy.seconds_since_seen,
            if proxy.stale { " (stale)" } else { "" },
            escape(proxy.default_version.as_deref().unwrap_or("-")),
            sessions.join(" ")
        );
    }
    out.push_str("</table>");
    sessions_off_default(&mut out, overview);

    traffic(&mut out, data.versions);

    shadow(&mut out, data.shadow, overview);
    migrations(&mut out, data.migrations);

    out.push_str("<h2>History</h2><table><tr><th>at</th><th>action</th><th>versions</th><th>by</th><th>note</th></tr>");
    for event in &overview.recent_events {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&event.at),
            if event.success { "ok" } else { "bad" },
            escape(&event.action),
            escape(&event.versions.join(", ")),
            escape(&event.by),
            escape(event.error.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    out
}

/// Who the sessions at another version than the default are: after a cutover, those a
/// contract waits for.
fn sessions_off_default(out: &mut String, overview: &Overview) {
    let off_default =
        overview::sessions_off_default(&overview.proxies, overview.default_version.as_deref());
    if off_default.is_empty() {
        return;
    }
    out.push_str("<h2>Sessions at another version than the default</h2><table><tr><th>version</th><th>proxy</th><th>session</th></tr>");
    for (proxy, session) in off_default {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(session.version.as_deref().unwrap_or("-")),
            escape(proxy),
            escape(&session.to_string())
        );
    }
    out.push_str("</table>");
}

fn shadow(out: &mut String, report: Option<&ShadowReport>, overview: &Overview) {
    out.push_str("<h2>Shadow reads</h2>");
    if let Some(report) = report {
        let count = |name: &str| report.totals.get(name).copied().unwrap_or(0);
        let stop = if report.state == "running" {
            "<button data-action=\"shadow-stop\">Stop</button>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<p id=\"shadow\">run {} {} &rarr; {} at rate {}{}: <b>{}</b> {stop}<br>{} sampled, {} dropped, {} skipped, {} too large, {} role refused; {} matched, <span class=\"{}\">{} differ</span>, {} non-deterministic, {} failed, {} timed out</p>",
            report.id,
            escape(&report.from),
            escape(&report.to),
            report.rate,
            report
                .matching
                .as_deref()
                .map(|pattern| format!(" matching <code>{}</code>", escape(pattern)))
                .unwrap_or_default(),
            escape(&report.state),
            count("sampled"),
            count("dropped"),
            count("skipped"),
            count("too_large"),
            count("role_refused"),
            count("matched"),
            if count("diff") > 0 { "bad" } else { "ok" },
            count("diff"),
            count("nondeterministic"),
            count("error"),
            count("timeout")
        );
        if !report.diffs.is_empty() {
            out.push_str("<table><tr><th>kind</th><th>times</th><th>rows</th><th>statement</th><th>sample</th></tr>");
            for diff in &report.diffs {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{} &rarr; {}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    escape(&diff.kind),
                    diff.occurrences,
                    diff.from_rows.map_or("-".into(), |n| n.to_string()),
                    diff.to_rows.map_or("-".into(), |n| n.to_string()),
                    escape(&diff.shape),
                    escape(&diff.detail.to_string())
                );
            }
            out.push_str("</table>");
        }
        if report.state == "running" {
            return;
        }
    } else {
        out.push_str("<p class=\"muted\">no shadow run yet</p>");
    }
    let active: Vec<&str> = overview
        .versions
        .iter()
        .filter(|v| v.state == "active")
        .map(|v| v.version.as_str())
        .collect();
    let options = |selected: usize| -> String {
        active
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "<option{}>{}</option>",
                    if i == selected { " selected" } else { "" },
                    escape(v)
                )
            })
            .collect()
    };
    let _ = write!(
        out,
        "<form data-action=\"shadow-start\">from <select name=\"from\">{}</select> to <select name=\"to\">{}</select> rate <input name=\"rate\" value=\"0.05\" size=\"5\"> match <input name=\"match\" placeholder=\"optional: model_metadata WHERE id = ?\" size=\"30\"> <button type=\"submit\">Start a shadow run</button></form>",
        options(0),
        options(1)
    );
}

fn migrations(out: &mut String, progress: &MigrationProgress) {
    out.push_str("<h2>Migrations</h2>");
    for left in &progress.left_to_run {
        let _ = write!(
            out,
            "<p class=\"bad\">the {} of the migration to {} left {} statement(s) to run after its commit: the next <code>viewgate migrate</code> start, complete or rollback runs them; <code>viewgate migrate status</code> lists them</p>",
            left.after,
            escape(&left.version),
            left.statements
        );
    }
    if progress.migrations.is_empty() {
        out.push_str("<p class=\"muted\">none in progress</p>");
        return;
    }
    out.push_str("<table><tr><th>version</th><th>from</th><th>phase</th><th>backfill</th></tr>");
    for migration in &progress.migrations {
        let tables: Vec<String> = migration
            .tables
            .iter()
            .map(|t| {
                let pace = t.pace.as_ref().map_or(String::new(), |pace| {
                    let waiting = pace
                        .waiting_for_standby
                        .as_ref()
                        .map_or(String::new(), |waiting| format!("; {}", escape(waiting)));
                    format!(
                        " ({:.0} rows/s, in batches {:.0}% of the time{waiting})",
                        pace.rows_per_second,
                        pace.working_share * 100.0
                    )
                });
                format!(
                    "{} {}/{}{}{pace}",
                    escape(&t.table),
                    t.rows,
                    t.estimate,
                    if t.done { " done" } else { "" }
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&migration.version),
            escape(&migration.from),
            escape(&migration.phase),
            tables.join("; ")
        );
    }
    out.push_str("</table>");
}

/// This proxy's requests per version: count, error rate, mean latency and the p99's bucket.
fn traffic(out: &mut String, versions: &[VersionSnapshot]) {
    out.push_str("<h2>This proxy's traffic</h2><table><tr><th>version</th><th>queries</th><th>error rate</th><th>mean latency</th><th>p99 latency</th></tr>");
    for version in versions {
        let errors: u64 = version.errors.values().sum();
        let rate = if version.queries == 0 {
            0.0
        } else {
            errors as f64 / version.queries as f64
        };
        let mean_ms = if version.latency.count == 0 {
            0.0
        } else {
            version.latency.sum_seconds * 1000.0 / version.latency.count as f64
        };
        // The histogram knows the p99 only to its bucket: say so rather than invent digits.
        let p99 = match version.latency.quantile_bound(0.99) {
            Some(bound) if bound.is_finite() => format!("≤ {} ms", bound * 1000.0),
            Some(_) => format!("> {} s", LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1]),
            None => "-".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{:.2}%</td><td>{mean_ms:.2} ms</td><td>{p99}</td></tr>",
            escape(&version.version),
            version.queries,
            if errors > 0 { "bad" } else { "ok" },
            rate * 100.0
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_migration_left_to_run_is_shown_even_with_none_in_progress() {
        use crate::model::migration_progress::LeftToRun;
        let progress = MigrationProgress {
            migrations: Vec::new(),
            left_to_run: vec![LeftToRun::from_row("v<2>".into(), "completed", 1)],
        };
        let mut out = String::new();
        migrations(&mut out, &progress);
        assert!(
            out.contains("the complete of the migration to v&lt;2&gt; left 1 statement(s)"),
            "{out}"
        );
        assert!(out.contains("none in progress"), "{out}");
    }

    #[test]
    fn sessions_off_the_default_are_listed_escaped() {
        use crate::control::overview::ProxyHeartbeat;
        use crate::model::listed_session::ListedSession;
        let session = |version: &str, application_name: &str| ListedSession {
            client: "10.0.0.5:51234".into(),
            user: "app".into(),
            database: "shop".into(),
            application_name: application_name.into(),
            connected_at: "2026-12-07T15:02:11Z".into(),
            version: Some(version.into()),
            reason: Some("declared".into()),
            transaction: "idle".into(),
            backend_pid: Some(4242),
        };
        let proxy = ProxyHeartbeat {
            proxy_id: "vg-a:6432".into(),
            listen: "10.0.0.17:6432".into(),
            admin_listen: None,
            pid: 1,
            build: "test".into(),
            started_at: String::new(),
            seconds_since_seen: 0.5,
            stale: false,
            default_version: Some("v2".into()),
            sessions_active: 2,
            sessions: Default::default(),
            session_reasons: Default::default(),
            loaded_change: None,
            listed_sessions: [
                ("v1".to_owned(), vec![session("v1", "<script>billing")]),
                ("v2".to_owned(), vec![session("v2", "web")]),
            ]
            .into(),
        };
        let overview = Overview {
            versions: Vec::new(),
            default_version: Some("v2".into()),
            rules: Vec::new(),
            proxies: vec![proxy],
            sessions: Default::default(),
            session_reasons: Default::default(),
            recent_events: Vec::new(),
        };
        let mut out = String::new();
        sessions_off_default(&mut out, &overview);
        assert!(
            out.contains("application &quot;&lt;script&gt;billing&quot;"),
            "{out}"
        );
        assert!(!out.contains("<script>") && !out.contains("web"), "{out}");
    }

    #[test]
    fn traffic_shows_the_p99_to_its_bucket() {
        use crate::proxy::stats::histogram::LatencyHistogram;
        let histogram = LatencyHistogram::default();
        for _ in 0..99 {
            histogram.record(std::time::Duration::from_micros(800));
        }
        histogram.record(std::time::Duration::from_millis(40));
        let versions = [VersionSnapshot {
            version: "v<2>".into(),
            sessions: 1,
            queries: 100,
            errors: Default::default(),
            latency: histogram.snapshot(),
        }];
        let mut out = String::new();
        traffic(&mut out, &versions);
        assert!(out.contains("<td>v&lt;2&gt;</td><td>100</td>"), "{out}");
        assert!(out.contains("<td>≤ 1 ms</td>"), "{out}");
        assert!(out.contains("<td>1.19 ms</td>"), "mean: {out}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
