//! Per-version and per-rule counters, shared by every session of one proxy.
//!
//! Sessions look their counters up only when their assignment changes (a new version, or a
//! different rule), and keep an `Arc` to them; per request they touch atomics only. The admin
//! API's /metrics, the heartbeat and the canary guard read the same counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;

use super::histogram::{HistogramSnapshot, LatencyHistogram};
use super::session_cards::{SessionCard, SessionCards};
use super::window::ErrorWindow;
use crate::router::Reason;

/// Everything one proxy counts, keyed by version name and rule id.
#[derive(Debug, Default)]
pub struct Telemetry {
    versions: DashMap<String, Arc<VersionStats>>,
    rules: DashMap<i64, Arc<RuleStats>>,
    /// Live sessions per version and the reason they run at it (declared, rule N, default…).
    reasons: DashMap<(String, Reason), Arc<AtomicI64>>,
    /// Outcomes of the requests of sessions the default version placed, per version, for the
    /// guard of a guarded cutover (`telemetry::cutover_guard`).
    defaults: DashMap<String, Arc<ErrorWindow>>,
    /// Who the live sessions are (`session_cards.rs`).
    cards: SessionCards,
}

#[derive(Debug, Default)]
pub struct VersionStats {
    /// Sessions whose current transaction (or next one) runs at this version.
    sessions: AtomicI64,
    queries: AtomicU64,
    /// Errors by SQLSTATE class (its first two characters). Errors are rare; a lock is fine.
    errors: Mutex<BTreeMap<String, u64>>,
    latency: LatencyHistogram,
}

#[derive(Debug, Default)]
pub struct RuleStats {
    /// Times the rule decided a session's version.
    hits: AtomicU64,
    /// Outcomes of the requests of sessions this rule placed, per version, for the guard.
    windows: DashMap<String, Arc<ErrorWindow>>,
}

/// Where a session's requests are counted: its version and, when a rule placed it there,
/// that rule's window for the version (when the default did, the default's window).
#[derive(Debug)]
pub struct Attribution {
    version: Arc<VersionStats>,
    /// The session's slot among the sessions at this version for this reason.
    reason_sessions: Arc<AtomicI64>,
    /// The guard's window: the rule's, or the default's; none for declared sessions.
    guard_window: Option<Arc<ErrorWindow>>,
}

impl Attribution {
    /// A request answered by ReadyForQuery, `elapsed` after it was sent.
    pub fn finished(&self, elapsed: Duration, failed: bool) {
        self.version.queries.fetch_add(1, Ordering::Relaxed);
        self.version.latency.record(elapsed);
        if let Some(window) = &self.guard_window {
            window.record(failed);
        }
    }

    /// An ErrorResponse with SQLSTATE `code`.
    pub fn failed(&self, code: &str) {
        let class = code.get(..2).unwrap_or("??").to_owned();
        let mut errors = self
            .version
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *errors.entry(class).or_default() += 1;
    }
}

/// Read-only copies for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSnapshot {
    pub version: String,
    pub sessions: i64,
    pub queries: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency: HistogramSnapshot,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        Arc::new(Telemetry::default())
    }

    fn version(&self, version: &str) -> Arc<VersionStats> {
        if let Some(stats) = self.versions.get(version) {
            return stats.clone();
        }
        self.versions.entry(version.to_owned()).or_default().clone()
    }

    fn rule(&self, rule: i64) -> Arc<RuleStats> {
        self.rules.entry(rule).or_default().clone()
    }

    /// The window of requests by sessions `rule` placed at `version`, if any were.
    pub fn rule_window(&self, rule: i64, version: &str) -> Option<Arc<ErrorWindow>> {
        self.rules
            .get(&rule)?
            .windows
            .get(version)
            .map(|w| w.clone())
    }

    /// The window of requests by sessions the default version placed at `version`, if any were.
    pub fn default_window(&self, version: &str) -> Option<Arc<ErrorWindow>> {
        self.defaults.get(version).map(|w| w.clone())
    }

    pub fn versions(&self) -> Vec<VersionSnapshot> {
        let mut snapshots: Vec<VersionSnapshot> = self
            .versions
            .iter()
            .map(|entry| {
                let stats = entry.value();
                VersionSnapshot {
                    version: entry.key().clone(),
                    sessions: stats.sessions.load(Ordering::Relaxed),
                    queries: stats.queries.load(Ordering::Relaxed),
                    errors: stats
                        .errors
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .clone(),
                    latency: stats.latency.snapshot(),
                }
            })
            .collect();
        snapshots.sort_by(|a, b| a.version.cmp(&b.version));
        snapshots
    }

    /// Every version's requests in one histogram: the application's latency as this proxy
    /// sees it, which the heartbeat publishes for the backfill to pace itself by.
    pub fn latency_total(&self) -> HistogramSnapshot {
        let mut total = LatencyHistogram::default().snapshot();
        for entry in self.versions.iter() {
            let snapshot = entry.value().latency.snapshot();
            for (sum, count) in total.cumulative.iter_mut().zip(&snapshot.cumulative) {
                *sum += count;
            }
            total.count += snapshot.count;
            total.sum_seconds += snapshot.sum_seconds;
        }
        total
    }

    /// Live sessions per version (versions with none left out).
    pub fn sessions_by_version(&self) -> BTreeMap<String, i64> {
        self.versions
            .iter()
            .map(|entry| (entry.key().clone(), entry.sessions.load(Ordering::Relaxed)))
            .filter(|(_, sessions)| *sessions > 0)
            .collect()
    }

    /// Live sessions per version and reason (`{"v2": {"rule 3": 5, "declared": 1}}`).
    pub fn sessions_by_reason(&self) -> BTreeMap<String, BTreeMap<String, i64>> {
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for entry in &self.reasons {
            let sessions = entry.value().load(Ordering::Relaxed);
            if sessions > 0 {
                let (version, reason) = entry.key();
                out.entry(version.clone())
                    .or_default()
                    .insert(reason.to_string(), sessions);
            }
        }
        out
    }

    /// The live sessions' cards.
    pub fn cards(&self) -> &SessionCards {
        &self.cards
    }

    /// Hits per rule id, in id order.
    pub fn rule_hits(&self) -> Vec<(i64, u64)> {
        let mut hits: Vec<(i64, u64)> = self
            .rules
            .iter()
            .map(|entry| (*entry.key(), entry.hits.load(Ordering::Relaxed)))
            .collect();
        hits.sort_unstable();
        hits
    }
}

/// One session's place in the counters: it holds one session in its version's gauge and
/// gives it back when the assignment changes or the session ends.
#[derive(Debug)]
pub struct SessionAccount {
    telemetry: Arc<Telemetry>,
    current: Option<(String, Reason, Arc<Attribution>)>,
    /// The session's card and its number among the cards, kept while the account lives.
    card: Option<(u64, Arc<SessionCard>)>,
}

impl SessionAccount {
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        SessionAccount {
            telemetry,
            current: None,
            card: None,
        }
    }

    /// An account whose session is listed by `card` until the account ends.
    pub fn listed(telemetry: Arc<Telemetry>, card: SessionCard) -> Self {
        let card = Arc::new(card);
        let id = telemetry.cards.insert(card.clone());
        SessionAccount {
            telemetry,
            current: None,
            card: Some((id, card)),
        }
    }

    /// The session's card, if it is listed.
    pub fn card(&self) -> Option<&Arc<SessionCard>> {
        self.card.as_ref().map(|(_, card)| card)
    }

    /// The session now runs at `version` for `reason`. Cheap when nothing changed, which is
    /// the common case at every transaction boundary.
    pub fn assign(&mut self, version: &str, reason: Reason) -> &Arc<Attribution> {
        let unchanged = matches!(&self.current, Some((v, r, _)) if v == version && *r == reason);
        if !unchanged {
            self.release();
            if let Some((_, card)) = &self.card {
                card.count_at(Some((version, reason)));
            }
        }
        let telemetry = &self.telemetry;
        let (_, _, attribution) = self.current.get_or_insert_with(|| {
            let stats = telemetry.version(version);
            stats.sessions.fetch_add(1, Ordering::Relaxed);
            let reason_sessions = telemetry
                .reasons
                .entry((version.to_owned(), reason))
                .or_default()
                .clone();
            reason_sessions.fetch_add(1, Ordering::Relaxed);
            let guard_window = match reason.rule_id() {
                Some(id) => {
                    let rule = telemetry.rule(id);
                    rule.hits.fetch_add(1, Ordering::Relaxed);
                    Some(rule.windows.entry(version.to_owned()).or_default().clone())
                }
                None if reason == Reason::Default => Some(
                    telemetry
                        .defaults
                        .entry(version.to_owned())
                        .or_default()
                        .clone(),
                ),
                None => None,
            };
            let attribution = Arc::new(Attribution {
                version: stats,
                reason_sessions,
                guard_window,
            });
            (version.to_owned(), reason, attribution)
        });
        attribution
    }

    /// The session no longer runs at any version (e.g. the catalog dropped them all).
    pub fn release(&mut self) {
        if let Some((_, _, attribution)) = self.current.take() {
            attribution.version.sessions.fetch_sub(1, Ordering::Relaxed);
            attribution.reason_sessions.fetch_sub(1, Ordering::Relaxed);
            if let Some((_, card)) = &self.card {
                card.count_at(None);
            }
        }
    }

    pub fn current(&self) -> Option<&Arc<Attribution>> {
        self.current.as_ref().map(|(_, _, attribution)| attribution)
    }
}

impl Drop for SessionAccount {
    fn drop(&mut self) {
        self.release();
        if let Some((id, _)) = &self.card {
            self.telemetry.cards.remove(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_follow_their_assignment_and_rules_count_hits() {
        let telemetry = Telemetry::new();
        let mut first = SessionAccount::new(telemetry.clone());
        let mut second = SessionAccount::new(telemetry.clone());
        first.assign("v1", Reason::Default);
        second.assign("v2", Reason::Rule(7));
        second.assign("v2", Reason::Rule(7));
        assert_eq!(
            telemetry.sessions_by_version(),
            BTreeMap::from([("v1".into(), 1), ("v2".into(), 1)])
        );
        first.assign("v2", Reason::Declared);
        assert_eq!(
            telemetry.sessions_by_version(),
            BTreeMap::from([("v2".into(), 2)])
        );
        assert_eq!(
            telemetry.sessions_by_reason(),
            BTreeMap::from([(
                "v2".into(),
                BTreeMap::from([("declared".into(), 1), ("rule 7".into(), 1)])
            )])
        );
        assert_eq!(
            telemetry.rule_hits(),
            vec![(7, 1)],
            "an unchanged assignment is no new hit"
        );
        second
            .assign("v2", Reason::Rule(7))
            .finished(Duration::from_millis(2), true);
        second.current().unwrap().failed("22012");
        let window = telemetry.rule_window(7, "v2").unwrap();
        let totals = window.totals(Duration::from_secs(10));
        assert_eq!((totals.queries, totals.errors), (1, 1));
        assert!(
            telemetry.default_window("v2").is_none(),
            "a rule's requests are not the default's"
        );
        first
            .assign("v1", Reason::Default)
            .finished(Duration::from_millis(1), false);
        let totals = telemetry
            .default_window("v1")
            .unwrap()
            .totals(Duration::from_secs(10));
        assert_eq!((totals.queries, totals.errors), (1, 0));
        first.assign("v2", Reason::Declared);
        drop(second);
        drop(first);
        assert!(telemetry.sessions_by_version().is_empty());
        assert!(telemetry.sessions_by_reason().is_empty());
        let v2 = telemetry.versions().pop().unwrap();
        assert_eq!(v2.queries, 1);
        assert_eq!(v2.errors, BTreeMap::from([("22".into(), 1)]));
        assert_eq!(v2.latency.count, 1);
        let total = telemetry.latency_total();
        assert_eq!(total.count, 2, "both versions' requests");
        assert_eq!(total.cumulative.last(), Some(&2));
        assert!((total.sum_seconds - 0.003).abs() < 1e-9);
    }
}
