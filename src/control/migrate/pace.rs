//! How the backfill spaces and sizes its batches: it runs flat out on an idle database, yields
//! to the application's writes on a busy one, and never holds a batch's row locks for long.
//!
//! The wait between batches is the configured `batch_delay_ms`, plus, by default, a wait that
//! follows the load. Its signal is the backfill's own time per row, the way LEDBAT paces
//! background transfers by the queueing delay they observe: a batch slower per row than the
//! fastest recent one is waiting for CPU, I/O or row locks the application's writers hold, and
//! the backfill then sleeps for a multiple of that excess, giving the writers back the time the
//! batch took from them. The fastest *recent* batch is the baseline, so a table whose later rows
//! are wider does not read as load for long.
//!
//! A batch holds the row locks of all its rows until it commits, and a writer that needs one of
//! them waits. So the batch shrinks (halves) while batches take longer than
//! [`BATCH_TIME_TARGET`], and grows back (doubles, up to `batch_size`) once they are quick.

use std::collections::VecDeque;
use std::time::Duration;

/// Batches whose times per row make the baseline (the fastest of them).
const BASELINE_BATCHES: usize = 64;
/// The sleep per unit of excess batch time.
const YIELD_GAIN: u32 = 4;
/// The longest wait between two batches, however loaded the database.
const MAX_YIELD: Duration = Duration::from_secs(1);
/// The longest a batch should hold its row locks: half the longest wait a writer may see.
pub const BATCH_TIME_TARGET: Duration = Duration::from_millis(50);
/// The smallest batch the backfill shrinks to.
const MIN_BATCH_ROWS: u32 = 10;

#[derive(Debug)]
pub struct BatchPacer {
    fixed: Duration,
    yields: bool,
    /// The configured batch size: the most the batch grows back to.
    largest: u32,
    rows: u32,
    /// Recent batches' times per row, in nanoseconds.
    recent: VecDeque<u64>,
}

impl BatchPacer {
    /// `fixed`: the configured delay between batches; `yields`: whether to add the wait that
    /// follows the load (`yield_to_writers` in the migration file); `batch_size`: the rows per
    /// batch when batches are quick.
    pub fn new(fixed: Duration, yields: bool, batch_size: u32) -> Self {
        let largest = batch_size.max(1);
        BatchPacer {
            fixed,
            yields,
            largest,
            rows: largest,
            recent: VecDeque::with_capacity(BASELINE_BATCHES),
        }
    }

    /// Rows in the next batch.
    pub fn batch_rows(&self) -> u32 {
        self.rows
    }

    /// Learns from a batch of `rows` rows that took `took`; returns the wait before the next.
    pub fn after_batch(&mut self, rows: u64, took: Duration) -> Duration {
        let asked = self.rows;
        if took > BATCH_TIME_TARGET {
            self.rows = (self.rows / 2).max(MIN_BATCH_ROWS.min(self.largest));
        } else if took < BATCH_TIME_TARGET / 4 && u64::from(asked) == rows {
            self.rows = self.rows.saturating_mul(2).min(self.largest);
        }
        if !self.yields || rows == 0 {
            return self.fixed;
        }
        let per_row = u64::try_from(took.as_nanos() / u128::from(rows)).unwrap_or(u64::MAX);
        if self.recent.len() == BASELINE_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back(per_row);
        let baseline = self.recent.iter().min().copied().unwrap_or(per_row);
        let excess = Duration::from_nanos(per_row.saturating_sub(baseline).saturating_mul(rows));
        self.fixed + (excess * YIELD_GAIN).min(MAX_YIELD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_idle_database_gets_no_wait_and_a_loaded_one_a_growing_wait() {
        let mut pacer = BatchPacer::new(Duration::ZERO, true, 1000);
        assert_eq!(pacer.after_batch(1000, 8 * MS), Duration::ZERO);
        assert_eq!(pacer.after_batch(1000, 8 * MS), Duration::ZERO);
        assert_eq!(pacer.after_batch(1000, 10 * MS), 8 * MS);
        assert_eq!(pacer.after_batch(1000, 20 * MS), 48 * MS);
        assert_eq!(pacer.after_batch(1000, 2000 * MS), MAX_YIELD);
        assert_eq!(pacer.batch_rows(), 500, "a slow batch halves the next");
        assert_eq!(
            pacer.after_batch(500, 4 * MS),
            Duration::ZERO,
            "load gone, no wait"
        );
        assert_eq!(pacer.batch_rows(), 1000, "a quick batch grows back");
    }

    #[test]
    fn batches_shrink_until_they_are_short_and_never_below_the_floor() {
        let mut pacer = BatchPacer::new(Duration::ZERO, false, 20_000);
        pacer.after_batch(20_000, 160 * MS);
        pacer.after_batch(10_000, 80 * MS);
        assert_eq!(pacer.batch_rows(), 5000);
        pacer.after_batch(5000, 40 * MS);
        assert_eq!(pacer.batch_rows(), 5000, "within the target: kept");
        for _ in 0..20 {
            pacer.after_batch(u64::from(pacer.batch_rows()), 500 * MS);
        }
        assert_eq!(pacer.batch_rows(), MIN_BATCH_ROWS);
        let mut tiny = BatchPacer::new(Duration::ZERO, false, 3);
        tiny.after_batch(3, 500 * MS);
        assert_eq!(
            tiny.batch_rows(),
            3,
            "a configured size below the floor stays"
        );
    }

    #[test]
    fn the_baseline_forgets_old_batches_and_the_fixed_delay_always_applies() {
        let mut pacer = BatchPacer::new(5 * MS, true, 1000);
        pacer.after_batch(1000, 2 * MS);
        for _ in 0..BASELINE_BATCHES {
            pacer.after_batch(1000, 10 * MS);
        }
        assert_eq!(
            pacer.after_batch(1000, 10 * MS),
            5 * MS,
            "10 ms is the new normal"
        );
        let mut fixed = BatchPacer::new(5 * MS, false, 1000);
        assert_eq!(fixed.after_batch(1000, 2 * MS), 5 * MS);
        assert_eq!(fixed.after_batch(1000, 40 * MS), 5 * MS);
    }
}
