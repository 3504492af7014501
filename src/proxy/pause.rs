//! The pause gate: one per proxy, closed by `viewgate pause` and by an upstream cutover.
//!
//! While the gate is closed, a session at a transaction boundary that receives work from its
//! client *holds* that message: it stays unforwarded in the session's buffer and the session
//! stops reading from the client until the gate opens. The client just waits; it gets no
//! error. Sessions with work in flight ("busy": inside a transaction, owed a ReadyForQuery, or
//! an extended-protocol batch not yet closed by Sync) keep running until their boundary.
//! A pause is complete when no session is busy.
//!
//! The busy count is kept exactly, with two atomic operations per unit of work (enter at the
//! first message after a boundary, leave at the ReadyForQuery that reaches the next one).
//! Entering and closing race in the classic two-flag way: a session increments `busy`, then
//! checks `closed`; the pauser sets `closed`, then reads `busy`. With sequentially consistent
//! ordering at least one sees the other, so a pause never completes while a session that
//! slipped past the gate is running.
//!
//! The gate also measures what clients see: every held message (and every new session that
//! waited to connect) registers when its wait began, and the waits are reported when the gate
//! opens (a per-pause summary for the caller) and kept in a histogram for /metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::proxy::stats::histogram::LatencyHistogram;

/// Hold start times kept for one pause's summary; beyond this only the histogram counts.
const MAX_TRACKED_HOLDS: usize = 100_000;

pub struct PauseGate {
    /// `true` while open. Waiters subscribe; `closed` mirrors it for the hot path.
    open: watch::Sender<bool>,
    closed: AtomicBool,
    busy: AtomicUsize,
    /// Woken when a session leaves busy while the gate is closed.
    quiet: Notify,
    episode: Mutex<Episode>,
    histogram: LatencyHistogram,
}

/// The pause in progress: when it began and when each wait in it began.
#[derive(Default)]
struct Episode {
    since: Option<Instant>,
    holds: Vec<Instant>,
}

/// What clients waited during one pause, reported when the gate opens.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WaitSummary {
    /// How long the gate was closed.
    pub paused_ms: f64,
    /// Client messages (and new sessions) that waited at the gate.
    pub held: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Default for PauseGate {
    fn default() -> Self {
        PauseGate {
            open: watch::Sender::new(true),
            closed: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            quiet: Notify::new(),
            episode: Mutex::new(Episode::default()),
            histogram: LatencyHistogram::default(),
        }
    }
}

impl PauseGate {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sessions with work in flight now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// A session starts work. `false` when the gate is closed: the caller holds the message
    /// and waits for [`PauseGate::opened`] before trying again.
    pub fn try_enter(&self) -> bool {
        self.busy.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.leave();
            return false;
        }
        true
    }

    /// A session reached a transaction boundary (or ended) after `try_enter`.
    pub fn leave(&self) {
        let before = self.busy.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before > 0, "leave without enter");
        if before == 1 && self.is_closed() {
            self.quiet.notify_waiters();
        }
    }

    /// Closes the gate. Returns `false` if it was closed already.
    pub fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        let mut episode = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        *episode = Episode {
            since: Some(Instant::now()),
            holds: Vec::new(),
        };
        drop(episode);
        self.open.send_replace(false);
        true
    }

    /// Waits until no session is busy; `false` if `timeout` passed first (the gate stays
    /// closed: the caller decides whether to reopen it).
    pub async fn wait_quiet(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.quiet.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.busy() == 0;
            }
        }
    }

    /// Opens the gate and summarises the waits of the pause that ends. `None` if it was open.
    pub fn open(&self) -> Option<WaitSummary> {
        if !self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let now = Instant::now();
        let episode = std::mem::take(&mut *self.episode.lock().unwrap_or_else(|e| e.into_inner()));
        self.closed.store(false, Ordering::SeqCst);
        self.open.send_replace(true);
        let mut waits: Vec<f64> = episode
            .holds
            .iter()
            .map(|start| now.duration_since(*start).as_secs_f64() * 1000.0)
            .collect();
        waits.sort_by(f64::total_cmp);
        Some(WaitSummary {
            paused_ms: episode.since.map_or(0.0, |since| {
                now.duration_since(since).as_secs_f64() * 1000.0
            }),
            held: waits.len(),
            p50_ms: percentile(&waits, 0.50),
            p99_ms: percentile(&waits, 0.99),
            max_ms: waits.last().copied().unwrap_or(0.0),
        })
    }

    /// How long the gate has been closed, if it is.
    pub fn closed_for(&self) -> Option<Duration> {
        let episode = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        episode
            .since
            .filter(|_| self.is_closed())
            .map(|since| since.elapsed())
    }

    /// Client messages waiting at the gate now.
    pub fn held_now(&self) -> usize {
        self.episode
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .holds
            .len()
    }

    /// Notes that a wait began (a held message or a new session); call once per wait.
    pub fn hold_started(&self, at: Instant) {
        let mut episode = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        if episode.holds.len() < MAX_TRACKED_HOLDS {
            episode.holds.push(at);
        }
    }

    /// Notes that a wait that began at `started` is over.
    pub fn hold_ended(&self, started: Instant) {
        self.histogram.record(started.elapsed());
    }

    /// Resolves once the gate is open (at once if it is).
    pub async fn opened(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }

    pub fn histogram(&self) -> &LatencyHistogram {
        &self.histogram
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_completes_when_the_last_busy_session_leaves() {
        let gate = std::sync::Arc::new(PauseGate::default());
        assert!(gate.try_enter());
        assert!(gate.close());
        assert!(!gate.close(), "closing twice is refused");
        assert!(!gate.try_enter(), "no new work while closed");
        assert!(!gate.wait_quiet(Duration::from_millis(20)).await);
        let leaving = gate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            leaving.leave();
        });
        assert!(gate.wait_quiet(Duration::from_secs(5)).await);
        gate.hold_started(Instant::now());
        let summary = gate.open().unwrap();
        assert_eq!(summary.held, 1);
        assert!(gate.open().is_none(), "opening an open gate is a no-op");
        assert!(gate.try_enter());
        gate.opened().await;
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
