//! The shadow run's reporter: this proxy's counts for the run and the differences its workers
//! found, written to the catalog every [`SHADOW_REPORT_INTERVAL`]; the run ended once the
//! comparisons over every proxy reach its budget. Differences are gathered between reports
//! ([`note_diff`]) so a statement that differs every time costs one catalog write a second.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::shadow::record::{self, DiffRecord};
use crate::model::ShadowRun;
use crate::proxy::shadow_tap::ShadowCounters;
use crate::proxy::state::ProxyState;

/// How often the proxy reports its counts.
pub const SHADOW_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A difference found and not yet written to the catalog.
#[derive(Debug, Clone)]
pub(super) struct PendingDiff {
    pub(super) shape: String,
    pub(super) from_rows: Option<i64>,
    pub(super) to_rows: Option<i64>,
    pub(super) detail: serde_json::Value,
    pub(super) occurrences: i64,
}

/// Differences by (run, shape hash, kind), written by the reporter once a second, so a
/// statement that differs every time costs one catalog write a second, not one each.
pub(super) type PendingDiffs =
    Arc<std::sync::Mutex<HashMap<(i64, String, &'static str), PendingDiff>>>;

/// Distinct differences held between two reports; more are counted, not kept.
const MAX_PENDING_DIFFS: usize = 1000;

pub(super) fn note_diff(
    pending: &PendingDiffs,
    run: i64,
    hash: String,
    kind: &'static str,
    diff: PendingDiff,
) {
    let mut pending = pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let full = pending.len() >= MAX_PENDING_DIFFS;
    match pending.entry((run, hash, kind)) {
        std::collections::hash_map::Entry::Occupied(mut entry) => entry.get_mut().occurrences += 1,
        std::collections::hash_map::Entry::Vacant(entry) if !full => {
            entry.insert(diff);
        }
        std::collections::hash_map::Entry::Vacant(_) => {}
    }
}

/// Every interval while a run is on (and once after it ends): this proxy's counts for the run
/// and the differences noted since the last report, to the catalog; the run ended once the
/// comparisons over every proxy reach its budget.
pub(super) async fn report_loop(
    state: Arc<ProxyState>,
    url: String,
    proxy_id: String,
    pending: PendingDiffs,
) {
    let mut client: Option<Client> = None;
    // The run reported last and its counters, for one final report after it ends.
    let mut last: Option<(Arc<ShadowRun>, Arc<ShadowCounters>)> = None;
    // The run whose final report was written.
    let mut finished: Option<i64> = None;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = state.shutdown.begun() => return,
            _ = tokio::time::sleep(SHADOW_REPORT_INTERVAL) => {}
        }
        let current = state.routing.load().shadow().cloned();
        let report = match (current, last.take()) {
            (Some(run), _) => {
                let counters = state.shadow.run_counters(&run);
                last = Some((run.clone(), counters.clone()));
                Some((run, counters, true))
            }
            (None, Some((run, counters))) => Some((run, counters, false)),
            // A run that started and ended between two reports: its counters are still the
            // tap's latest.
            (None, None) => state
                .shadow
                .latest_run()
                .filter(|(run, _)| finished != Some(run.id))
                .map(|(run, counters)| (run, counters, false)),
        };
        if let Some((run, _, false)) = &report {
            finished = Some(run.id);
        }
        // Counted before the differences are taken: a worker notes a difference before it
        // counts it, so every difference these counts include is among those taken below and
        // written first. Taken the other way round, a report could count a difference whose
        // detail came a second later (a shadow test saw 3 diffs counted and 1 listed).
        let counts: Option<BTreeMap<String, u64>> = report.as_ref().map(|(_, counters, _)| {
            counters
                .snapshot()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect()
        });
        let diffs: Vec<_> = {
            let mut pending = pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            pending.drain().collect()
        };
        if report.is_none() && diffs.is_empty() {
            continue;
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connect(&url).await.ok();
        }
        let Some(connected) = client.as_mut() else {
            continue;
        };
        let result = async {
            for ((run, hash, kind), diff) in &diffs {
                record::record_diff(
                    connected,
                    &DiffRecord {
                        run: *run,
                        kind,
                        shape: &diff.shape,
                        shape_hash: hash,
                        from_rows: diff.from_rows,
                        to_rows: diff.to_rows,
                        detail: diff.detail.clone(),
                        occurrences: diff.occurrences,
                    },
                )
                .await?;
            }
            if let (Some((run, _, running)), Some(counts)) = (&report, &counts) {
                let compared = record::report_counts(connected, run.id, &proxy_id, counts).await?;
                if *running
                    && compared >= run.budget
                    && record::exhaust(connected, run.id, compared).await?
                {
                    tracing::info!(
                        run = run.id,
                        compared,
                        "shadow run ended: its budget is spent"
                    );
                }
            }
            Ok::<(), ControlError>(())
        }
        .await;
        match result {
            Ok(()) => warned = false,
            Err(error) if !warned => {
                tracing::warn!(%error, "could not report the shadow counts; retrying");
                warned = true;
            }
            Err(_) => {}
        }
    }
}
