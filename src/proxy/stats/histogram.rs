//! A fixed-bucket latency histogram with atomic counters, rendered in Prometheus's format.
//!
//! Recording is two relaxed atomic adds and a short bucket search, cheap enough for every
//! request on the hot path; no metrics library sits between the session and its counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::model::latency::LATENCY_BUCKETS;
use crate::model::latency::{LATENCY_SLOTS, bucket_bound, bucket_of, quantile_bucket};

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last slot counts what exceeds every bound.
    counts: [AtomicU64; LATENCY_SLOTS],
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
        self.counts[bucket_of(elapsed.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
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
        quantile_bucket(&self.cumulative, quantile).map(bucket_bound)
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
        assert_eq!(snapshot.cumulative[4], 3, "3 ms is inside the 3 ms bucket");
        assert_eq!(*snapshot.cumulative.last().unwrap(), 4);
        assert!((snapshot.sum_seconds - 60.0038).abs() < 1e-9);
        assert_eq!(snapshot.quantile_bound(0.5), Some(0.0005));
        assert_eq!(snapshot.quantile_bound(0.75), Some(0.003));
        assert_eq!(snapshot.quantile_bound(0.99), Some(f64::INFINITY));
        assert_eq!(
            LatencyHistogram::default().snapshot().quantile_bound(0.5),
            None
        );
    }
}
