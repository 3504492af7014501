//! A sliding window of query and error counts, one slot per second, for the canary guard.
//!
//! Slots are reused round-robin: a slot stamped with an older second is reset by the first
//! writer of the new second. Two writers racing on that reset can lose a few counts, which a
//! guard judging rates over many queries tolerates; in exchange recording is lock-free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest window a guard can judge (defined with the guard settings, in `model`);
/// longer ones are clamped to it.
pub use crate::model::guard::MAX_GUARD_WINDOW as MAX_WINDOW;
const SLOTS: usize = MAX_WINDOW.as_secs() as usize;

#[derive(Debug, Default)]
struct Slot {
    /// The second (since the window's origin) whose counts this slot holds, plus one; 0 = unused.
    stamp: AtomicU64,
    queries: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug)]
pub struct ErrorWindow {
    origin: Instant,
    slots: Box<[Slot]>,
}

/// Totals over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowTotals {
    pub queries: u64,
    pub errors: u64,
}

impl WindowTotals {
    pub fn error_rate(&self) -> f64 {
        if self.queries == 0 {
            0.0
        } else {
            self.errors as f64 / self.queries as f64
        }
    }
}

impl Default for ErrorWindow {
    fn default() -> Self {
        ErrorWindow {
            origin: Instant::now(),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl ErrorWindow {
    /// Counts one finished request, failed or not.
    pub fn record(&self, failed: bool) {
        self.record_at(Instant::now(), failed);
    }

    fn record_at(&self, now: Instant, failed: bool) {
        let stamp = self.stamp(now);
        let slot = &self.slots[(stamp as usize) % SLOTS];
        let seen = slot.stamp.load(Ordering::Acquire);
        if seen != stamp
            && slot
                .stamp
                .compare_exchange(seen, stamp, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.queries.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
        }
        slot.queries.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Totals over the last `window` (at one-second resolution, at most [`MAX_WINDOW`]).
    pub fn totals(&self, window: Duration) -> WindowTotals {
        self.totals_at(Instant::now(), window)
    }

    fn totals_at(&self, now: Instant, window: Duration) -> WindowTotals {
        let newest = self.stamp(now);
        let span = window.as_secs().clamp(1, SLOTS as u64);
        let oldest = newest.saturating_sub(span - 1);
        self.slots
            .iter()
            .filter(|slot| {
                let stamp = slot.stamp.load(Ordering::Acquire);
                stamp >= oldest && stamp <= newest && stamp != 0
            })
            .fold(WindowTotals::default(), |totals, slot| WindowTotals {
                queries: totals.queries + slot.queries.load(Ordering::Relaxed),
                errors: totals.errors + slot.errors.load(Ordering::Relaxed),
            })
    }

    fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_age_out_of_the_window() {
        let window = ErrorWindow::default();
        let start = window.origin;
        for _ in 0..8 {
            window.record_at(start, false);
        }
        window.record_at(start, true);
        window.record_at(start + Duration::from_secs(5), true);
        let at = |secs| start + Duration::from_secs(secs);
        let recent = window.totals_at(at(5), Duration::from_secs(10));
        assert_eq!(
            recent,
            WindowTotals {
                queries: 10,
                errors: 2
            }
        );
        assert!((recent.error_rate() - 0.2).abs() < 1e-9);
        let later = window.totals_at(at(12), Duration::from_secs(10));
        assert_eq!(
            later,
            WindowTotals {
                queries: 1,
                errors: 1
            }
        );
        assert_eq!(
            window.totals_at(at(30), Duration::from_secs(10)),
            WindowTotals::default()
        );
    }

    #[test]
    fn a_reused_slot_starts_from_zero() {
        let window = ErrorWindow::default();
        let start = window.origin;
        window.record_at(start, true);
        let lap = start + MAX_WINDOW;
        window.record_at(lap, false);
        assert_eq!(
            window.totals_at(lap, MAX_WINDOW),
            WindowTotals {
                queries: 1,
                errors: 0
            }
        );
    }
}
