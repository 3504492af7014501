//! What the proxies' shadow workers write to the catalog: each proxy's counts for a run
//! (rewritten about once a second), the differences found (one row per statement shape and
//! kind, at most [`MAX_DIFF_SHAPES`] per run, occurrences counted), and the end of a run whose
//! budget is spent (a compare-and-set, so N proxies end it once).

use std::collections::BTreeMap;
use std::time::Instant;

use tokio_postgres::Client;

use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;

/// Distinct statement shapes recorded per run and kind; later ones are only counted.
pub const MAX_DIFF_SHAPES: i64 = 200;

/// Outcomes that spend the budget (a comparison ran).
pub const COMPARED: [&str; 5] = ["matched", "diff", "nondeterministic", "error", "timeout"];

fn database(context: &'static str) -> impl Fn(tokio_postgres::Error) -> ControlError {
    move |error| ControlError::database(context, &error)
}

/// A difference to record.
#[derive(Debug, Clone)]
pub struct DiffRecord<'a> {
    pub run: i64,
    pub kind: &'static str,
    pub shape: &'a str,
    pub shape_hash: &'a str,
    pub from_rows: Option<i64>,
    pub to_rows: Option<i64>,
    pub detail: serde_json::Value,
    /// Times seen since the last report.
    pub occurrences: i64,
}

/// Writes this proxy's counts for `run`; returns the comparisons made over every proxy.
pub async fn report_counts(
    client: &Client,
    run: i64,
    proxy_id: &str,
    counts: &BTreeMap<String, u64>,
) -> Result<u64, ControlError> {
    let json = serde_json::to_string(counts).unwrap_or_else(|_| "{}".into());
    client
        .execute(
            "INSERT INTO viewgate.shadow_counts (run_id, proxy_id, counts)
             VALUES ($1, $2, $3::text::jsonb)
             ON CONFLICT (run_id, proxy_id) DO UPDATE
               SET counts = excluded.counts, reported_at = now()",
            &[&run, &proxy_id, &json],
        )
        .await
        .map_err(database("reporting this proxy's shadow counts"))?;
    let keys: Vec<&str> = COMPARED.to_vec();
    let row = client
        .query_one(
            "SELECT coalesce(sum((c.counts ->> k)::bigint), 0)::bigint
             FROM viewgate.shadow_counts c, unnest($2::text[]) AS k
             WHERE c.run_id = $1",
            &[&run, &keys],
        )
        .await
        .map_err(database("summing the shadow run's counts"))?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Records one difference (or counts it again, `occurrences` more times).
pub async fn record_diff(client: &Client, diff: &DiffRecord<'_>) -> Result<(), ControlError> {
    let detail = diff.detail.to_string();
    client
        .execute(
            "INSERT INTO viewgate.shadow_diffs
               (run_id, shape_hash, kind, shape, from_rows, to_rows, detail, occurrences)
             SELECT $1, $2, $3, $4, $5, $6, $7::text::jsonb, $9
             WHERE (SELECT count(*) FROM viewgate.shadow_diffs WHERE run_id = $1 AND kind = $3) < $8
             ON CONFLICT (run_id, shape_hash, kind) DO UPDATE
               SET occurrences = viewgate.shadow_diffs.occurrences + excluded.occurrences,
                   last_seen = now()",
            &[
                &diff.run,
                &diff.shape_hash,
                &diff.kind,
                &diff.shape,
                &diff.from_rows,
                &diff.to_rows,
                &detail,
                &MAX_DIFF_SHAPES,
                &diff.occurrences,
            ],
        )
        .await
        .map_err(database("recording a shadow difference"))?;
    Ok(())
}

/// Ends `run` because its budget is spent; false when it had already ended.
pub async fn exhaust(client: &mut Client, run: i64, compared: u64) -> Result<bool, ControlError> {
    let started = Instant::now();
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the shadow run's end"))?;
    let reason = format!("budget spent: {compared} comparisons");
    let Some(row) = transaction
        .query_opt(
            "UPDATE viewgate.shadow_runs SET state = 'exhausted', finished_at = now(), reason = $2
             WHERE id = $1 AND state = 'running' RETURNING from_version, to_version",
            &[&run, &reason],
        )
        .await
        .map_err(database("ending the shadow run"))?
    else {
        return Ok(false);
    };
    let versions: Vec<String> = vec![row.get(0), row.get(1)];
    catalog::record_history(
        &transaction,
        &HistoryEntry {
            error: Some(format!("shadow run {run} ended: {reason}")),
            ..HistoryEntry::event("shadow", versions.clone(), started.elapsed())
        },
    )
    .await?;
    catalog::notify_change(&transaction, "shadow", &versions).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the shadow run's end"))?;
    Ok(true)
}
