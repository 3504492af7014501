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
//!
//! When proxies serve the application, the pacer also hears the application's own latency
//! (`writers`): the fraction of its requests slower than the bucket its p99 was in before the
//! backfill started. That fraction is compared with the same fraction measured while the
//! backfill was paused (the reference, re-measured now and then while the pacer holds back):
//! the backfill answers for what it adds to the tail, not for load it did not cause. Past the
//! reference plus [`TAIL_TOLERANCE`], the p99 promise is broken: the backfill halves its batch
//! (a shorter burst delays an unlucky request less) and doubles its pause per unit of batch
//! time (fewer requests meet a burst), AIMD-style; an interval within it lets the pause decay
//! and, once gone, batches grow back. This is the signal that keeps the writers' p99 flat: the
//! backfill's own time barely moves when a busy CPU delays the application instead of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::state::Pacing;
use crate::model::latency::{bucket_bound, quantile_bucket};

/// Batches whose times per row make the baseline (the fastest of them).
const BASELINE_BATCHES: usize = 64;
/// The sleep per unit of excess batch time.
const YIELD_GAIN: u32 = 4;
/// The longest wait between two batches (besides `batch_delay_ms`), however loaded the
/// database or however slow the application's tail.
const MAX_YIELD: Duration = Duration::from_secs(1);
/// The longest a batch should hold its row locks: half the longest wait a writer may see.
pub const BATCH_TIME_TARGET: Duration = Duration::from_millis(50);
/// The smallest batch the backfill shrinks to.
const MIN_BATCH_ROWS: u32 = 10;
/// The quantile of the application's latency the backfill keeps where it was.
const PROTECTED_QUANTILE: f64 = 0.99;
/// The share of requests the backfill may add above the protected quantile's bucket, over
/// the share there with the backfill paused.
pub const TAIL_TOLERANCE: f64 = 0.005;
/// Requests an interval must hold before its tail is judged (fewer say little about a p99).
pub const MIN_TAIL_SAMPLES: u64 = 200;
/// The pause when the tail is first judged broken, and its growth after: `2 × pause + step`.
const PAUSE_STEP: f64 = 0.5;
/// The longest pause per unit of batch time: the backfill then works 1/33 of the time.
const MAX_PAUSE_RATIO: f64 = 32.0;
/// How much of the pause a quiet interval keeps; below [`MIN_PAUSE_RATIO`] it is gone.
const PAUSE_DECAY: f64 = 0.7;
const MIN_PAUSE_RATIO: f64 = 0.2;
/// Standard deviations of chance a count of slow requests may exceed its allowance by before it
/// is blamed on the backfill: the count is a sample, and a noisy one must not stall it.
const NOISE_SIGMAS: f64 = 2.0;
/// The smallest batch the application's tail shrinks the backfill to: below it, round trips
/// per row, not the database's work, would set the backfill's pace.
const MIN_TAIL_BATCH_ROWS: u32 = 100;

#[derive(Debug)]
pub struct BatchPacer {
    fixed: Duration,
    yields: bool,
    /// The configured batch size: the most the batch grows back to.
    largest: u32,
    rows: u32,
    /// Recent batches' times per row, in nanoseconds.
    recent: VecDeque<u64>,
    /// The application's latency, when proxies report it.
    tail: Option<TailGuard>,
}

/// What the application's latency asks of the backfill.
#[derive(Debug)]
struct TailGuard {
    /// The latency bucket that held the application's p99 before the backfill.
    bucket: usize,
    /// The share of requests slower than that bucket with the backfill paused, last measured.
    reference: f64,
    /// Requests seen since the tail was last judged, and how many of them were slower.
    seen: u64,
    slower: u64,
    /// The pause after a batch, per unit of the batch's time.
    pause_ratio: f64,
    /// Whether the last judgement found the tail broken (batches do not grow meanwhile).
    broken: bool,
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
            tail: None,
        }
    }

    /// Whether the pacer yields to the application (`yield_to_writers`).
    pub fn yields(&self) -> bool {
        self.yields
    }

    /// Starts guarding the application's latency from its distribution before the backfill
    /// (cumulative counts per latency bucket); too few requests leave it unguarded.
    pub fn protect_tail(&mut self, baseline: &[u64]) {
        if !self.yields || baseline.last().copied().unwrap_or(0) < MIN_TAIL_SAMPLES {
            return;
        }
        if let Some(bucket) = quantile_bucket(baseline, PROTECTED_QUANTILE) {
            self.tail = Some(TailGuard {
                bucket,
                reference: share_slower(baseline, bucket),
                seen: 0,
                slower: 0,
                pause_ratio: 0.0,
                broken: false,
            });
        }
    }

    /// The bucket the guarded p99 lies in, if the tail is guarded.
    pub fn protected_bucket(&self) -> Option<usize> {
        self.tail.as_ref().map(|tail| tail.bucket)
    }

    /// Learns the application's tail with the backfill paused (cumulative counts per latency
    /// bucket over the pause): the reference the tail is judged against while it runs.
    pub fn quiet_latency(&mut self, counts: &[u64]) {
        if let Some(tail) = &mut self.tail
            && counts.last().copied().unwrap_or(0) >= MIN_TAIL_SAMPLES
        {
            tail.reference = share_slower(counts, tail.bucket);
        }
    }

    /// Learns from the application's requests since the last call (cumulative counts per
    /// latency bucket); judges the tail once enough of them have been seen.
    pub fn application_latency(&mut self, since: &[u64]) {
        let Some(tail) = &mut self.tail else {
            return;
        };
        let total = since.last().copied().unwrap_or(0);
        let within = since.get(tail.bucket).copied().unwrap_or(total);
        tail.seen += total;
        tail.slower += total.saturating_sub(within);
        if tail.seen < MIN_TAIL_SAMPLES {
            return;
        }
        // Slow requests are a sample: allow the reference's share, the tolerance, and chance
        // (Poisson's standard deviation of the expected count).
        let expected = tail.reference * tail.seen as f64;
        let allowed =
            expected + TAIL_TOLERANCE * tail.seen as f64 + NOISE_SIGMAS * expected.max(1.0).sqrt();
        let broken = tail.slower as f64 > allowed;
        tail.broken = broken;
        tail.seen = 0;
        tail.slower = 0;
        if broken {
            tail.pause_ratio = (tail.pause_ratio * 2.0 + PAUSE_STEP).min(MAX_PAUSE_RATIO);
            self.rows = (self.rows / 2).max(MIN_TAIL_BATCH_ROWS.min(self.rows));
        } else {
            tail.pause_ratio *= PAUSE_DECAY;
            if tail.pause_ratio < MIN_PAUSE_RATIO {
                tail.pause_ratio = 0.0;
            }
        }
    }

    /// The current pause per unit of batch time the application's tail asks for.
    pub fn pause_ratio(&self) -> f64 {
        self.tail.as_ref().map_or(0.0, |tail| tail.pause_ratio)
    }

    /// Rows in the next batch.
    pub fn batch_rows(&self) -> u32 {
        self.rows
    }

    /// Learns from a batch of `rows` rows that took `took`; returns the wait before the next.
    pub fn after_batch(&mut self, rows: u64, took: Duration) -> Duration {
        let asked = self.rows;
        let pause_ratio = self.pause_ratio();
        let tail_broken = self.tail.as_ref().is_some_and(|tail| tail.broken);
        if took > BATCH_TIME_TARGET {
            self.rows = (self.rows / 2).max(MIN_BATCH_ROWS.min(self.largest));
        } else if took < BATCH_TIME_TARGET / 4 && u64::from(asked) == rows && !tail_broken {
            self.rows = self.rows.saturating_mul(2).min(self.largest);
        }
        if !self.yields || rows == 0 {
            return self.fixed;
        }
        let tail_pause = took.mul_f64(pause_ratio);
        let per_row = u64::try_from(took.as_nanos() / u128::from(rows)).unwrap_or(u64::MAX);
        if self.recent.len() == BASELINE_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back(per_row);
        let baseline = self.recent.iter().min().copied().unwrap_or(per_row);
        let excess = Duration::from_nanos(per_row.saturating_sub(baseline).saturating_mul(rows));
        self.fixed + (excess * YIELD_GAIN).max(tail_pause).min(MAX_YIELD)
    }
}

/// How long the pace `migrate status` shows is measured over.
pub const PACE_WINDOW: Duration = Duration::from_secs(5);

/// The backfill's pace over windows of [`PACE_WINDOW`]: rows per second and the share of
/// the time spent in batches, waits and reads of the application's latency included.
#[derive(Debug)]
pub struct PaceWindow {
    started: Instant,
    rows: u64,
    working: Duration,
    /// The figures of the last full window, or of the current one before any is full.
    last: Option<(f64, f64)>,
    full: bool,
}

impl PaceWindow {
    pub fn new(now: Instant) -> Self {
        PaceWindow {
            started: now,
            rows: 0,
            working: Duration::ZERO,
            last: None,
            full: false,
        }
    }

    /// A batch of `rows` rows that took `took` ended at `now`.
    pub fn batch(&mut self, rows: u64, took: Duration, now: Instant) {
        self.rows += rows;
        self.working += took;
        let span = now
            .saturating_duration_since(self.started)
            .max(self.working);
        if span.is_zero() {
            return;
        }
        let seconds = span.as_secs_f64();
        let figures = (
            self.rows as f64 / seconds,
            self.working.as_secs_f64() / seconds,
        );
        if span >= PACE_WINDOW {
            *self = PaceWindow {
                last: Some(figures),
                full: true,
                ..PaceWindow::new(now)
            };
        } else if !self.full {
            self.last = Some(figures);
        }
    }

    /// The pace to record, with the pacer's next batch size and protected bound.
    pub fn pacing(&self, pacer: &BatchPacer) -> Option<Pacing> {
        let (rows_per_second, working_share) = self.last?;
        Some(Pacing {
            rows_per_second,
            working_share,
            batch_rows: pacer.batch_rows(),
            protected_p99_ms: pacer
                .protected_bucket()
                .map(|bucket| bucket_bound(bucket) * 1000.0)
                .filter(|bound| bound.is_finite()),
            waiting_for_standby: None,
        })
    }
}

/// The share of the requests in `cumulative` slower than `bucket`'s bound.
fn share_slower(cumulative: &[u64], bucket: usize) -> f64 {
    let total = cumulative.last().copied().unwrap_or(0);
    if total == 0 {
        return 0.0;
    }
    let within = cumulative.get(bucket).copied().unwrap_or(total);
    total.saturating_sub(within) as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_pace_is_measured_over_whole_windows_and_shows_the_yielding() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let start = Instant::now();
        let pacer = BatchPacer::new(Duration::ZERO, true, 1000);
        let mut window = PaceWindow::new(start);
        assert_eq!(window.pacing(&pacer), None, "no batch yet");
        // 1000 rows in 100 ms, ending 400 ms in: a partial window is shown until one is full.
        window.batch(1000, 100 * MS, start + 400 * MS);
        let first = window.pacing(&pacer).unwrap();
        assert!(close(first.rows_per_second, 2500.0), "{first:?}");
        assert!(close(first.working_share, 0.25), "{first:?}");
        assert_eq!(first.batch_rows, 1000);
        assert_eq!(first.protected_p99_ms, None, "no application latency heard");
        // Nine more such batches to 5 s: 10,000 rows, 1 s of work.
        for n in 2..=10 {
            window.batch(1000, 100 * MS, start + 500 * MS * n);
        }
        let full = window.pacing(&pacer).unwrap();
        assert!(close(full.rows_per_second, 2000.0), "{full:?}");
        assert!(close(full.working_share, 0.2), "{full:?}");
        // A batch into the next window does not replace the full one's figures.
        window.batch(5000, 500 * MS, start + 5500 * MS);
        assert_eq!(window.pacing(&pacer).unwrap(), full);
    }

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

    /// Cumulative counts over the first buckets: `fast` requests in bucket 1, `slow` in 6.
    fn latency(fast: u64, slow: u64) -> Vec<u64> {
        let mut cumulative = vec![0; crate::model::latency::LATENCY_SLOTS];
        for (bucket, slot) in cumulative.iter_mut().enumerate() {
            *slot = match bucket {
                0 => 0,
                1..=5 => fast,
                _ => fast + slow,
            };
        }
        cumulative
    }

    #[test]
    fn a_broken_tail_shrinks_and_spaces_batches_and_a_quiet_one_lets_them_back() {
        let mut pacer = BatchPacer::new(Duration::ZERO, true, 1000);
        pacer.protect_tail(&latency(50, 0));
        assert_eq!(pacer.protected_bucket(), None, "too few requests to judge");
        pacer.protect_tail(&latency(995, 5));
        assert_eq!(
            pacer.protected_bucket(),
            Some(1),
            "p99 was in the 1 ms bucket"
        );
        pacer.application_latency(&latency(90, 10));
        assert_eq!(
            pacer.pause_ratio(),
            0.0,
            "100 requests are too few to judge"
        );
        pacer.application_latency(&latency(90, 10));
        assert_eq!(
            pacer.pause_ratio(),
            PAUSE_STEP,
            "10 % slower than the old p99"
        );
        assert_eq!(pacer.batch_rows(), 500);
        assert_eq!(
            pacer.after_batch(500, 10 * MS),
            5 * MS,
            "the pause follows the batch's time"
        );
        assert_eq!(
            pacer.batch_rows(),
            500,
            "no growth while the tail asks for pauses"
        );
        for _ in 0..10 {
            pacer.application_latency(&latency(150, 50));
        }
        assert_eq!(pacer.pause_ratio(), MAX_PAUSE_RATIO);
        assert_eq!(pacer.batch_rows(), MIN_TAIL_BATCH_ROWS);
        assert_eq!(
            pacer.after_batch(u64::from(MIN_TAIL_BATCH_ROWS), 40 * MS),
            MAX_YIELD,
            "however slow the batch, the wait is bounded"
        );
        for _ in 0..20 {
            pacer.application_latency(&latency(999, 1));
        }
        assert_eq!(pacer.pause_ratio(), 0.0, "quiet intervals end the pause");
        pacer.after_batch(u64::from(MIN_TAIL_BATCH_ROWS), MS);
        assert_eq!(
            pacer.batch_rows(),
            2 * MIN_TAIL_BATCH_ROWS,
            "batches grow back"
        );

        pacer.application_latency(&latency(190, 10));
        assert_eq!(
            pacer.pause_ratio(),
            PAUSE_STEP,
            "5 % slower, the backfill's doing"
        );
        pacer.quiet_latency(&latency(380, 20));
        pacer.application_latency(&latency(190, 10));
        assert!(
            pacer.pause_ratio() < PAUSE_STEP,
            "5 % slower with the backfill paused too: not its doing"
        );
        pacer.application_latency(&latency(180, 20));
        assert!(pacer.pause_ratio() > PAUSE_STEP, "10 % is");
        let mut flat_out = BatchPacer::new(Duration::ZERO, false, 1000);
        flat_out.protect_tail(&latency(995, 5));
        assert_eq!(
            flat_out.protected_bucket(),
            None,
            "yield_to_writers = false"
        );
    }

    #[test]
    fn chance_is_not_blamed_on_the_backfill() {
        let mut pacer = BatchPacer::new(Duration::ZERO, true, 1000);
        pacer.protect_tail(&latency(990, 10));
        pacer.application_latency(&latency(986, 14));
        assert_eq!(pacer.pause_ratio(), 0.0, "1.4 % against 1 %: within chance");
        pacer.application_latency(&latency(975, 25));
        assert!(pacer.pause_ratio() > 0.0, "2.5 % against 1 % is not");
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
