//! `viewgate shadow report [--json]` (and `GET /shadow/report`): a shadow run — the one
//! running, else the latest — with its counts summed over every proxy and per proxy, and the
//! differences found, most frequent first.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::control::error::ControlError;

/// Differences listed in a report.
pub const REPORT_DIFFS: i64 = 50;

#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    pub id: i64,
    pub from: String,
    pub to: String,
    pub rate: f64,
    pub budget: i64,
    pub redact: bool,
    /// The `--match` pattern, if the run has one.
    #[serde(rename = "match")]
    pub matching: Option<String>,
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub reason: Option<String>,
    /// Counts summed over every proxy.
    pub totals: BTreeMap<String, u64>,
    pub proxies: BTreeMap<String, BTreeMap<String, u64>>,
    pub diffs: Vec<DiffRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffRow {
    pub kind: String,
    pub shape: String,
    pub occurrences: i64,
    pub from_rows: Option<i64>,
    pub to_rows: Option<i64>,
    pub detail: serde_json::Value,
    pub last_seen: String,
}

fn database(context: &'static str) -> impl Fn(tokio_postgres::Error) -> ControlError {
    move |error| ControlError::database(context, &error)
}

/// The running run, else the latest; `NoShadowRun` when there has been none.
pub async fn load(client: &impl GenericClient) -> Result<ShadowReport, ControlError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('viewgate.shadow_runs') IS NOT NULL",
            &[],
        )
        .await
        .map_err(database("looking for viewgate.shadow_runs"))?
        .get(0);
    if !exists {
        return Err(ControlError::NoShadowRun);
    }
    let row = client
        .query_opt(
            "SELECT id, from_version, to_version, rate, budget, redact, state,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    reason, to_jsonb(r) ->> 'match_shape'
             FROM viewgate.shadow_runs r ORDER BY (state = 'running') DESC, id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(database("reading the shadow run"))?
        .ok_or(ControlError::NoShadowRun)?;
    let id: i64 = row.get(0);
    let mut report = ShadowReport {
        id,
        from: row.get(1),
        to: row.get(2),
        rate: row.get(3),
        budget: row.get(4),
        redact: row.get(5),
        matching: row.get(10),
        state: row.get(6),
        started_at: row.get(7),
        finished_at: row.get(8),
        reason: row.get(9),
        totals: BTreeMap::new(),
        proxies: BTreeMap::new(),
        diffs: Vec::new(),
    };
    for row in client
        .query(
            "SELECT proxy_id, counts::text FROM viewgate.shadow_counts WHERE run_id = $1 ORDER BY proxy_id",
            &[&id],
        )
        .await
        .map_err(database("reading the shadow counts"))?
    {
        let counts: BTreeMap<String, u64> =
            serde_json::from_str(&row.get::<_, String>(1)).unwrap_or_default();
        for (name, value) in &counts {
            *report.totals.entry(name.clone()).or_default() += value;
        }
        report.proxies.insert(row.get(0), counts);
    }
    for row in client
        .query(
            "SELECT kind, shape, occurrences, from_rows, to_rows, detail::text,
                    to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM viewgate.shadow_diffs WHERE run_id = $1
             ORDER BY occurrences DESC, last_seen DESC LIMIT $2",
            &[&id, &REPORT_DIFFS],
        )
        .await
        .map_err(database("reading the shadow differences"))?
    {
        report.diffs.push(DiffRow {
            kind: row.get(0),
            shape: row.get(1),
            occurrences: row.get(2),
            from_rows: row.get(3),
            to_rows: row.get(4),
            detail: serde_json::from_str(&row.get::<_, String>(5)).unwrap_or_default(),
            last_seen: row.get(6),
        });
    }
    Ok(report)
}

impl fmt::Display for ShadowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shadow run {}: {} -> {}  rate {}  budget {}{}{}  {} since {}{}",
            self.id,
            self.from,
            self.to,
            self.rate,
            self.budget,
            self.matching
                .as_deref()
                .map(|pattern| format!("  match {pattern:?}"))
                .unwrap_or_default(),
            if self.redact { "  redacted" } else { "" },
            self.state,
            self.started_at,
            self.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )?;
        let count = |name: &str| self.totals.get(name).copied().unwrap_or(0);
        writeln!(
            f,
            "statements: {} sampled, {} dropped (queue full), {} skipped, {} too large, {} not run (client's role refused); compared: {} matched, {} differ, {} non-deterministic, {} failed at {} only, {} timed out",
            count("sampled"),
            count("dropped"),
            count("skipped"),
            count("too_large"),
            count("role_refused"),
            count("matched"),
            count("diff"),
            count("nondeterministic"),
            count("error"),
            self.to,
            count("timeout")
        )?;
        for (proxy, counts) in &self.proxies {
            let line: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "  proxy {proxy}: {}", line.join(" "))?;
        }
        if self.diffs.is_empty() {
            return writeln!(f, "no differences");
        }
        writeln!(f, "differences:")?;
        for diff in &self.diffs {
            writeln!(
                f,
                "  {} x{}  rows {} -> {}  {}",
                diff.kind,
                diff.occurrences,
                diff.from_rows.map_or("-".into(), |n| n.to_string()),
                diff.to_rows.map_or("-".into(), |n| n.to_string()),
                diff.shape
            )?;
            writeln!(f, "    {}", diff.detail)?;
        }
        Ok(())
    }
}
