//! The data plane's whole part in shadow reads: while a shadow run is in progress, a session at
//! the run's `from` version offers each statement that looks like a read (its first keyword is
//! SELECT, WITH, VALUES or TABLE) and whose shape matches the run's `--match` pattern, if it has
//! one: the text of a simple-protocol Query, or a Bind of a statement the session prepared at
//! `from` (its text, the parameter types its Parse declared, and the Bind's parameter formats
//! and values, copied). The chosen fraction of them is copied into a bounded queue with
//! `try_send`, and a full queue drops the statement and counts it; so does a second that has
//! already queued `MAX_SHADOW_STATEMENTS_PER_SECOND`, which bounds the work a run adds to the
//! database whatever the client traffic (without it, 5 % of 20,000 statements a second kept
//! the workers, and Postgres, as busy as 100 %). Nothing here waits, fails or
//! changes the client's message: the message is forwarded as routed before and after. The
//! work (classifying, running at both versions, comparing, recording) is done by
//! `telemetry::shadow`, which drains the queue on its own connections.
//!
//! A Bind longer than `INSPECTED_BIND_MAX_LEN` streams through unread, and is not offered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::mpsc;

use super::shadow_session::{PreparedRead, ShadowSession};
use crate::model::ShadowRun;
use crate::protocol::{bind, frontend};
use crate::router::SessionRouter;
use crate::router::state::RoutingState;

/// Statements waiting for a shadow worker; more are dropped (and counted).
pub const SHADOW_QUEUE_LEN: usize = 256;
/// Statements a proxy queues for shadowing in any one second; more are dropped (and counted).
pub const MAX_SHADOW_STATEMENTS_PER_SECOND: u64 = 25;
/// Longer statements are not offered (their copy would cost the session too much).
pub const MAX_SHADOW_SQL_LEN: usize = 64 * 1024;

/// A sampled statement, as the session sent it, the run it was sampled for, and that run's
/// counters on this proxy.
#[derive(Debug)]
pub struct ShadowJob {
    pub run: Arc<ShadowRun>,
    pub sql: Arc<str>,
    /// The bound parameters of an extended-protocol statement; `None` for a simple Query.
    pub parameters: Option<BoundParameters>,
    /// The client's search_path when it was sampled (`None`: the server's default).
    pub search_path: Option<Arc<str>>,
    /// The client's login role: the shadow re-runs the statement with its rights.
    pub role: Arc<str>,
    pub counters: Arc<ShadowCounters>,
}

/// A Bind's parameters, copied, with the types the statement's Parse declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundParameters {
    pub types: Arc<[u32]>,
    /// As the Bind sent them: none (all text), one for all, or one per value.
    pub formats: Vec<i16>,
    pub values: Vec<Option<Vec<u8>>>,
}

impl BoundParameters {
    /// Whether parameter `index` is in binary format.
    pub fn is_binary(&self, index: usize) -> bool {
        match self.formats.as_slice() {
            [] => false,
            [all] => *all == 1,
            each => each.get(index) == Some(&1),
        }
    }
}

/// What the tap and the workers count, per proxy (for `/metrics` and the run's report).
#[derive(Debug, Default)]
pub struct ShadowCounters {
    /// Statements sampled and queued.
    pub sampled: AtomicU64,
    /// Sampled but dropped: the queue was full.
    pub dropped: AtomicU64,
    pub matched: AtomicU64,
    pub diff: AtomicU64,
    pub nondeterministic: AtomicU64,
    /// Failed at the new version only.
    pub error: AtomicU64,
    pub timeout: AtomicU64,
    /// Not compared: not read-only, volatile, parameters, same text at both versions, or
    /// failing at the old version too.
    pub skipped: AtomicU64,
    /// Not compared: a result over `MAX_SHADOW_ROWS` or `MAX_SHADOW_RESULT_BYTES`.
    pub too_large: AtomicU64,
    /// Not run: the catalog user could not take the client's role, or is a superuser and
    /// the client is not (`telemetry::shadow`).
    pub role_refused: AtomicU64,
}

impl ShadowCounters {
    /// Every counter by name, in a fixed order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        vec![
            ("sampled", load(&self.sampled)),
            ("dropped", load(&self.dropped)),
            ("matched", load(&self.matched)),
            ("diff", load(&self.diff)),
            ("nondeterministic", load(&self.nondeterministic)),
            ("error", load(&self.error)),
            ("timeout", load(&self.timeout)),
            ("skipped", load(&self.skipped)),
            ("too_large", load(&self.too_large)),
            ("role_refused", load(&self.role_refused)),
        ]
    }
}

/// The queue between the sessions and the shadow workers, and the proxy's counters.
#[derive(Debug)]
pub struct ShadowTap {
    sender: mpsc::Sender<ShadowJob>,
    /// Taken once by the workers (`telemetry::shadow`).
    receiver: Mutex<Option<mpsc::Receiver<ShadowJob>>>,
    /// Eligible statements seen, for exact-fraction sampling without a random generator.
    seen: AtomicU64,
    /// The second (since `started`) that `queued_this_second` counts for.
    current_second: AtomicU64,
    queued_this_second: AtomicU64,
    started: Instant,
    /// Since the proxy started, every run together (`/metrics`).
    pub counters: ShadowCounters,
    /// The current run's own counters on this proxy (its report), made by its first sample.
    /// Read on every sampled statement, so without a lock.
    run_counters: ArcSwapOption<(Arc<ShadowRun>, Arc<ShadowCounters>)>,
}

impl Default for ShadowTap {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(SHADOW_QUEUE_LEN);
        ShadowTap {
            sender,
            receiver: Mutex::new(Some(receiver)),
            seen: AtomicU64::new(0),
            current_second: AtomicU64::new(0),
            queued_this_second: AtomicU64::new(0),
            started: Instant::now(),
            counters: ShadowCounters::default(),
            run_counters: ArcSwapOption::empty(),
        }
    }
}

impl ShadowTap {
    /// The workers' end of the queue; `None` after the first call.
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<ShadowJob>> {
        self.receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Run `run`'s counters on this proxy (new ones the first time a run is seen).
    pub fn run_counters(&self, run: &Arc<ShadowRun>) -> Arc<ShadowCounters> {
        if let Some(current) = &*self.run_counters.load()
            && current.0.id == run.id
        {
            return current.1.clone();
        }
        // Sessions meeting a new run together agree on one set of counters.
        self.run_counters.rcu(|current| match current {
            Some(current) if current.0.id == run.id => Some(current.clone()),
            _ => Some(Arc::new((run.clone(), Arc::new(ShadowCounters::default())))),
        });
        match &*self.run_counters.load() {
            Some(now) if now.0.id == run.id => now.1.clone(),
            // A newer run took its place meanwhile: this statement counts for no run.
            _ => Arc::default(),
        }
    }

    /// The latest run this proxy sampled for, and its counters.
    pub fn latest_run(&self) -> Option<(Arc<ShadowRun>, Arc<ShadowCounters>)> {
        self.run_counters
            .load_full()
            .map(|current| (current.0.clone(), current.1.clone()))
    }

    /// Counts one outcome for the proxy and for the job's run.
    pub fn count(&self, job: &ShadowJob, pick: impl Fn(&ShadowCounters) -> &AtomicU64) {
        pick(&self.counters).fetch_add(1, Ordering::Relaxed);
        pick(&job.counters).fetch_add(1, Ordering::Relaxed);
    }

    /// Offers a client message the session just routed, and keeps the session's shadow memory
    /// (`session`) up to date. Cheap when no run is in progress: a tag comparison and one load
    /// of the routing state's snapshot (plus, for a named Parse that looks like a read, a copy
    /// of its text).
    pub fn offer(
        &self,
        routing: &ArcSwap<RoutingState>,
        router: &SessionRouter,
        session: &mut ShadowSession,
        tag: u8,
        frame: &[u8],
    ) {
        let Some(version) = router.version() else {
            return;
        };
        match tag {
            frontend::QUERY => {
                let Some(sql) = frontend::statement_text(tag, frame) else {
                    return;
                };
                session.query(sql);
                let routing = routing.load();
                if let Some(run) = routing.shadow().filter(|run| run.from == version) {
                    self.sample(run, sql, || (Arc::from(sql), None), session);
                }
            }
            frontend::PARSE => {
                let (Some(name), Some(sql)) = (
                    frontend::parse_name(frame),
                    frontend::statement_text(tag, frame),
                ) else {
                    return;
                };
                let remember = sql.len() <= MAX_SHADOW_SQL_LEN
                    && looks_like_a_read(sql)
                    && (!name.is_empty()
                        || routing
                            .load()
                            .shadow()
                            .is_some_and(|run| run.from == version));
                let read = remember
                    .then(|| bind::parse_parameter_types(frame))
                    .flatten()
                    .map(|types| PreparedRead {
                        sql: Arc::from(sql),
                        parameter_types: Arc::from(types),
                        version: Arc::from(version),
                    });
                session.parsed(name, read);
            }
            frontend::CLOSE => {
                if let Some(name) = frontend::closed_statement(frame) {
                    session.closed(name);
                }
            }
            frontend::BIND => {
                let routing = routing.load();
                let Some(run) = routing.shadow() else {
                    return;
                };
                // A Bind seen by its header only (a large one) does not decode.
                let Some(bound) = bind::bind(frame) else {
                    return;
                };
                let Some(read) = session
                    .statement(bound.statement)
                    .filter(|read| *read.version == *run.from)
                    .cloned()
                else {
                    return;
                };
                let copy = || {
                    let parameters = BoundParameters {
                        types: read.parameter_types.clone(),
                        formats: bound.formats.clone(),
                        values: bound
                            .values
                            .iter()
                            .map(|value| value.map(<[u8]>::to_vec))
                            .collect(),
                    };
                    (read.sql.clone(), Some(parameters))
                };
                self.sample(run, &read.sql, copy, session);
            }
            _ => {}
        }
    }

    /// Samples a statement at the run's `from` version: matched against the run's pattern,
    /// counted for the rate, copied (by `copy`) only when sampled.
    fn sample(
        &self,
        run: &Arc<ShadowRun>,
        sql: &str,
        copy: impl FnOnce() -> (Arc<str>, Option<BoundParameters>),
        session: &mut ShadowSession,
    ) {
        if sql.len() > MAX_SHADOW_SQL_LEN || !looks_like_a_read(sql) {
            return;
        }
        if let Some(pattern) = &run.pattern {
            match session.readable_shape(sql) {
                Some(readable) if pattern.matches(&readable) => {}
                _ => return,
            }
        }
        // The n-th eligible statement is sampled when n·rate crosses an integer: exactly the
        // rate over any long stretch, spread evenly, no lock and no random generator.
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if ((n + 1) as f64 * run.rate).floor() <= (n as f64 * run.rate).floor() {
            return;
        }
        let counters = self.run_counters(run);
        // Past this second's cap nothing is copied: the statement is only counted.
        let queued = self.take_from_this_second() && {
            let (sql, parameters) = copy();
            let job = ShadowJob {
                run: run.clone(),
                sql,
                parameters,
                search_path: session.search_path().cloned(),
                role: session.role().clone(),
                counters: counters.clone(),
            };
            self.sender.try_send(job).is_ok()
        };
        for counters in [&self.counters, &*counters] {
            let counter = if queued {
                &counters.sampled
            } else {
                &counters.dropped
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ShadowTap {
    /// Counts one statement against this second's cap; whether it is within it. Two sessions
    /// crossing into a new second together may both reset the count: the cap can be passed by
    /// a statement or two, never by more.
    fn take_from_this_second(&self) -> bool {
        self.take_from_second(self.started.elapsed().as_secs())
    }

    fn take_from_second(&self, second: u64) -> bool {
        if self.current_second.swap(second, Ordering::Relaxed) != second {
            self.queued_this_second.store(0, Ordering::Relaxed);
        }
        self.queued_this_second.fetch_add(1, Ordering::Relaxed) < MAX_SHADOW_STATEMENTS_PER_SECOND
    }
}

/// Whether the statement's first keyword (after spaces and comments) starts a read. A cheap
/// filter only: the worker parses the statement before running it.
pub fn looks_like_a_read(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after
                .split_once('\n')
                .map_or("", |(_, next)| next)
                .trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after
                .split_once("*/")
                .map_or("", |(_, next)| next)
                .trim_start();
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .take(7)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(word.as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::shadow_run::SHADOW_OUTCOMES;

    #[test]
    fn the_counters_are_the_samples_and_the_outcomes() {
        let names: Vec<&str> = ShadowCounters::default()
            .snapshot()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !["sampled", "dropped"].contains(name))
            .collect();
        assert_eq!(names, SHADOW_OUTCOMES);
    }

    #[test]
    fn each_second_queues_at_most_the_cap() {
        let tap = ShadowTap::default();
        for second in [0, 1, 5] {
            let taken = (0..MAX_SHADOW_STATEMENTS_PER_SECOND * 3)
                .filter(|_| tap.take_from_second(second))
                .count();
            assert_eq!(
                taken as u64, MAX_SHADOW_STATEMENTS_PER_SECOND,
                "second {second}"
            );
        }
    }

    #[test]
    fn reads_are_told_by_their_first_keyword() {
        assert!(looks_like_a_read("select 1"));
        assert!(looks_like_a_read(
            "  -- hint\n /* c */ WITH x AS (SELECT 1) SELECT * FROM x"
        ));
        assert!(looks_like_a_read("TABLE t"));
        assert!(!looks_like_a_read("UPDATE t SET a = 1"));
        assert!(!looks_like_a_read("SELECTED"));
        assert!(!looks_like_a_read("/* unterminated"));
        assert!(!looks_like_a_read(""));
    }
}
