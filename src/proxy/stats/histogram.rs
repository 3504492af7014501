//! A fixed-bucket latency histogram with atomic counters, rendered in Prometheus's format.
//!
//! Recording is two relaxed atomic adds and a short bucket search, cheap enough for every
//! request on the hot path; no metrics library sits between the session and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from half a millisecond, where a proxied point
/// query lands on a local network, to ten seconds, where a statement is surely stuck.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last slot counts what exceeds every bound.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A consistent-enough copy for rendering: cumulative counts per bucket plus +Inf.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative: Vec<u64> = self
            .counts
            .iter()
            .map(|count| {
                running += count.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            count: running,
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl HistogramSnapshot {
    /// The value below which `quantile` of the observations fall, at bucket resolution (the
    /// upper bound of the bucket holding it); `None` without observations.
    pub fn quantile_bound(&self, quantile: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (quantile * self.count as f64).ceil().max(1.0) as u64;
        let bucket = self.cumulative.iter().position(|seen| *seen >= rank)?;
        Some(
            LATENCY_BUCKETS
                .get(bucket)
                .copied()
                .unwrap_or(f64::INFINITY),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(300));
        histogram.record(Duration::from_micros(500));
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 4);
        assert_eq!(
            snapshot.cumulative[0], 2,
            "0.5 ms is inside the 0.5 ms bucket"
        );
        assert_eq!(snapshot.cumulative[3], 3);
        assert_eq!(*snapshot.cumulative.last().unwrap(), 4);
        assert!((snapshot.sum_seconds - 60.0038).abs() < 1e-9);
        assert_eq!(snapshot.quantile_bound(0.5), Some(0.0005));
        assert_eq!(snapshot.quantile_bound(0.75), Some(0.005));
        assert_eq!(snapshot.quantile_bound(0.99), Some(f64::INFINITY));
        assert_eq!(
            LatencyHistogram::default().snapshot().quantile_bound(0.5),
            None
        );
    }
}
