//! How long the backfill waits between batches: a fixed delay, plus, by default, a wait that
//! grows with the load it sees, so it runs at full speed on an idle database and yields to the
//! application's writes on a busy one.
//!
//! The signal is the backfill's own batch time, the way LEDBAT paces background transfers by
//! the queueing delay they observe: a batch that takes longer than the fastest recent batch is
//! waiting for CPU, I/O or row locks the application's writers hold. The backfill then sleeps
//! for a multiple of that excess, which gives the writers the time the batch took from them.
//! The fastest recent batch, not the first, is the baseline, so a table whose later rows are
//! wider does not read as load for long.

use std::collections::VecDeque;
use std::time::Duration;

/// Batches whose times make the baseline (the fastest of them).
const BASELINE_BATCHES: usize = 64;
/// The sleep per unit of excess batch time.
const YIELD_GAIN: u32 = 4;
/// The longest wait between two batches, however loaded the database.
const MAX_YIELD: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct BatchPacer {
    fixed: Duration,
    yields: bool,
    recent: VecDeque<Duration>,
}

impl BatchPacer {
    /// `fixed`: the configured delay between batches; `yields`: whether to add the wait that
    /// follows the load (`yield_to_writers` in the migration file).
    pub fn new(fixed: Duration, yields: bool) -> Self {
        BatchPacer {
            fixed,
            yields,
            recent: VecDeque::with_capacity(BASELINE_BATCHES),
        }
    }

    /// The wait before the next batch, given how long the last one took.
    pub fn after_batch(&mut self, took: Duration) -> Duration {
        if !self.yields {
            return self.fixed;
        }
        if self.recent.len() == BASELINE_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
        let baseline = self.recent.iter().min().copied().unwrap_or(took);
        let excess = took.saturating_sub(baseline);
        self.fixed + (excess * YIELD_GAIN).min(MAX_YIELD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_idle_database_gets_no_wait_and_a_loaded_one_a_growing_wait() {
        let mut pacer = BatchPacer::new(Duration::ZERO, true);
        assert_eq!(pacer.after_batch(8 * MS), Duration::ZERO);
        assert_eq!(pacer.after_batch(8 * MS), Duration::ZERO);
        assert_eq!(pacer.after_batch(10 * MS), 8 * MS);
        assert_eq!(pacer.after_batch(20 * MS), 48 * MS);
        assert_eq!(pacer.after_batch(2000 * MS), MAX_YIELD);
        assert_eq!(
            pacer.after_batch(8 * MS),
            Duration::ZERO,
            "load gone, no wait"
        );
    }

    #[test]
    fn the_baseline_forgets_old_batches_and_the_fixed_delay_always_applies() {
        let mut pacer = BatchPacer::new(5 * MS, true);
        pacer.after_batch(2 * MS);
        for _ in 0..BASELINE_BATCHES {
            pacer.after_batch(10 * MS);
        }
        assert_eq!(
            pacer.after_batch(10 * MS),
            5 * MS,
            "10 ms is the new normal"
        );
        let mut fixed = BatchPacer::new(5 * MS, false);
        assert_eq!(fixed.after_batch(2 * MS), 5 * MS);
        assert_eq!(fixed.after_batch(200 * MS), 5 * MS);
    }
}
