//! The canary guard: when the sessions a routing rule placed on its canary version fail too
//! often, the canary's weight drops to 0 — in the catalog, so every proxy stops sending new
//! sessions there at their next transaction boundary — and the event is recorded and logged.
//!
//! The canary is the first entry of the rule's split (`--split v2=10,v1=90` guards v2); its
//! weight goes to the largest other entry. Each proxy judges its own traffic over the rule's
//! window (default [`DEFAULT_WINDOW`], at least [`DEFAULT_MIN_QUERIES`] requests before it
//! judges at all). The catalog update is a compare-and-set under a row lock, so two proxies
//! tripping at once change the rule once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::catalog::{self, HistoryEntry};
use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::model::{Assign, Guard};
use crate::proxy::state::ProxyState;
use crate::proxy::stats::window::WindowTotals;

/// How often the guard looks at the windows.
pub const GUARD_INTERVAL: Duration = Duration::from_millis(500);
/// The window when the rule sets a threshold but no window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Requests needed in the window before a rate means anything (defined with the settings).
pub use crate::model::guard::DEFAULT_MIN_QUERIES;

/// A tripped guard: which rule, which version, and what was seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub rule: i64,
    pub canary: String,
    pub totals: WindowTotals,
    pub threshold: f64,
    pub window: Duration,
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "canary guard of rule {}: version {} failed {} of {} requests ({:.1}%) in the last {}s, above the {:.1}% threshold; its weight is now 0",
            self.rule,
            self.canary,
            self.totals.errors,
            self.totals.queries,
            self.totals.error_rate() * 100.0,
            self.window.as_secs(),
            self.threshold * 100.0
        )
    }
}

/// Whether `totals` breach `guard`; `None` when the guard is off or has too few requests.
pub fn judge(guard: &Guard, totals: WindowTotals) -> Option<f64> {
    let threshold = guard.error_rate?;
    let min_queries = u64::from(guard.min_queries.unwrap_or(DEFAULT_MIN_QUERIES));
    (totals.queries >= min_queries.max(1) && totals.error_rate() > threshold).then_some(threshold)
}

/// The split with its canary (first entry) at weight 0, its weight moved to the heaviest other
/// entry; `None` when there is nothing to move (no other entry, or the canary is already 0).
pub fn without_canary(split: &[(String, u32)]) -> Option<Vec<(String, u32)>> {
    let (_, canary_weight) = split.first()?;
    if *canary_weight == 0 || split.len() < 2 {
        return None;
    }
    let heaviest = (1..split.len()).max_by_key(|&i| (split[i].1, std::cmp::Reverse(i)))?;
    let mut moved = split.to_vec();
    moved[heaviest].1 += canary_weight;
    moved[0].1 = 0;
    Some(moved)
}

/// Watches every guarded rule until shutdown; does nothing without a catalog.
pub async fn run(state: Arc<ProxyState>) {
    let Some(url) = state.config.load().catalog.clone() else {
        return;
    };
    // Rules this proxy already tripped, until the catalog's answer (a new routing state)
    // arrives; without this it would knock on the catalog every interval meanwhile.
    let mut tripped: HashSet<(u64, i64)> = HashSet::new();
    loop {
        tokio::select! {
            _ = state.shutdown.begun() => return,
            _ = tokio::time::sleep(GUARD_INTERVAL) => {}
        }
        let routing = state.routing.load();
        let generation = routing.generation();
        tripped.retain(|(seen, _)| *seen == generation);
        for rule in routing.rules() {
            let Some(canary) = rule.canary() else {
                continue;
            };
            if tripped.contains(&(generation, rule.id)) {
                continue;
            }
            let window = rule.guard.window.unwrap_or(DEFAULT_WINDOW);
            let Some(totals) = state
                .telemetry
                .rule_window(rule.id, canary)
                .map(|w| w.totals(window))
            else {
                continue;
            };
            let Some(threshold) = judge(&rule.guard, totals) else {
                continue;
            };
            let trip = Trip {
                rule: rule.id,
                canary: canary.to_owned(),
                totals,
                threshold,
                window,
            };
            tripped.insert((generation, rule.id));
            match record_trip(&url, &trip).await {
                Ok(true) => tracing::warn!(rule = trip.rule, canary = %trip.canary, "{trip}"),
                Ok(false) => tracing::info!(
                    rule = trip.rule,
                    "canary guard: the rule changed meanwhile; nothing to do"
                ),
                Err(error) => {
                    tracing::warn!(%error, rule = trip.rule, "canary guard tripped but could not change the rule")
                }
            }
        }
    }
}

/// Sets the canary's weight to 0 in the catalog, records the event and announces it; false
/// when the rule no longer has that canary (another proxy, or an operator, was first).
async fn record_trip(url: &str, trip: &Trip) -> Result<bool, ControlError> {
    let started = Instant::now();
    let mut client = connect(url).await?;
    let database = |context: &'static str| {
        move |error: tokio_postgres::Error| ControlError::database(context, &error)
    };
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the canary guard's transaction"))?;
    let Some(row) = transaction
        .query_opt(
            "SELECT assign::text FROM viewgate.routing_rules WHERE id = $1 FOR UPDATE",
            &[&trip.rule],
        )
        .await
        .map_err(database("reading the guarded rule"))?
    else {
        return Ok(false);
    };
    let assign: String = row.get(0);
    let Ok(Assign::Split(split)) = serde_json::from_str(&assign)
        .map_err(|_| ())
        .and_then(|json| Assign::from_json(&json).map_err(|_| ()))
    else {
        return Ok(false);
    };
    let still_canary = split
        .first()
        .is_some_and(|(version, _)| *version == trip.canary);
    let Some(dropped) = without_canary(&split).filter(|_| still_canary) else {
        return Ok(false);
    };
    let dropped = Assign::Split(dropped);
    transaction
        .execute(
            "UPDATE viewgate.routing_rules SET assign = $2::text::jsonb WHERE id = $1",
            &[&trip.rule, &dropped.to_json().to_string()],
        )
        .await
        .map_err(database("dropping the canary's weight"))?;
    let versions: Vec<String> = dropped.versions().map(str::to_owned).collect();
    catalog::record_history(
        &transaction,
        &HistoryEntry {
            error: Some(trip.to_string()),
            ..HistoryEntry::event("guard", versions.clone(), started.elapsed())
        },
    )
    .await?;
    catalog::notify_change(&transaction, "guard", &versions).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the canary guard's change"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(entries: &[(&str, u32)]) -> Vec<(String, u32)> {
        entries.iter().map(|(v, w)| ((*v).to_owned(), *w)).collect()
    }

    #[test]
    fn the_canary_weight_goes_to_the_heaviest_other_entry() {
        assert_eq!(
            without_canary(&split(&[("v3", 10), ("v2", 30), ("v1", 60)])),
            Some(split(&[("v3", 0), ("v2", 30), ("v1", 70)]))
        );
        assert_eq!(
            without_canary(&split(&[("v2", 50), ("v1", 50)])),
            Some(split(&[("v2", 0), ("v1", 100)]))
        );
        assert_eq!(without_canary(&split(&[("v2", 0), ("v1", 100)])), None);
        assert_eq!(without_canary(&split(&[("v2", 100)])), None);
    }

    #[test]
    fn the_guard_judges_only_with_enough_requests_and_a_threshold() {
        let guard = Guard {
            error_rate: Some(0.1),
            window: None,
            min_queries: Some(10),
        };
        let totals = |queries, errors| WindowTotals { queries, errors };
        assert_eq!(judge(&guard, totals(9, 9)), None, "too few requests");
        assert_eq!(
            judge(&guard, totals(10, 1)),
            None,
            "at the threshold is not above it"
        );
        assert_eq!(judge(&guard, totals(10, 2)), Some(0.1));
        assert_eq!(
            judge(&Guard::default(), totals(1000, 1000)),
            None,
            "no guard"
        );
        let defaults = Guard {
            error_rate: Some(0.5),
            ..Guard::default()
        };
        assert_eq!(
            judge(&defaults, totals(u64::from(DEFAULT_MIN_QUERIES) - 1, 19)),
            None
        );
    }
}
