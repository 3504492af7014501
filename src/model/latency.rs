//! The latency buckets every proxy counts its requests in, and what can be read from such
//! counts: a contract between the proxies, which publish them (`/metrics`, the heartbeat), and
//! the control plane, which reads them back from the catalog to pace a backfill by the
//! application's own latency (`control::migrate::writers`).

/// Upper bounds of the buckets, in seconds: from half a millisecond, where a proxied point
/// query lands on a local network, to ten seconds, where a statement is surely stuck. Between
/// 1 and 10 ms, where a healthy OLTP statement's tail lies, neighbouring bounds are at most
/// 1.5× apart, so a tail that grows by half moves at least one bucket.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Slots in a count vector: one per bound, plus the overflow past the last.
pub const LATENCY_SLOTS: usize = LATENCY_BUCKETS.len() + 1;

/// The index of the first bucket holding `seconds` (the overflow slot past every bound).
pub fn bucket_of(seconds: f64) -> usize {
    LATENCY_BUCKETS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(LATENCY_BUCKETS.len())
}

/// The index of the bucket holding the `quantile` of the observations in `cumulative`
/// (cumulative counts per slot, the last being the total); `None` without observations.
pub fn quantile_bucket(cumulative: &[u64], quantile: f64) -> Option<usize> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    cumulative.iter().position(|seen| *seen >= rank)
}

/// The upper bound, in seconds, of a bucket index (infinite for the overflow slot).
pub fn bucket_bound(bucket: usize) -> f64 {
    LATENCY_BUCKETS
        .get(bucket)
        .copied()
        .unwrap_or(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_rise_and_quantiles_land_in_the_bucket_that_holds_them() {
        assert!(LATENCY_BUCKETS.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(bucket_of(0.0005), 0);
        assert_eq!(bucket_of(0.0021), 4);
        assert_eq!(bucket_of(60.0), LATENCY_BUCKETS.len());
        let mut cumulative = [0u64; LATENCY_SLOTS];
        // 98 observations at 1 ms, two at 4 ms.
        for slot in cumulative.iter_mut().skip(1) {
            *slot = 98;
        }
        for slot in cumulative.iter_mut().skip(5) {
            *slot = 100;
        }
        assert_eq!(quantile_bucket(&cumulative, 0.5), Some(1));
        assert_eq!(quantile_bucket(&cumulative, 0.98), Some(1));
        assert_eq!(quantile_bucket(&cumulative, 0.99), Some(5));
        assert_eq!(bucket_bound(5), 0.004);
        assert_eq!(quantile_bucket(&[0u64; LATENCY_SLOTS], 0.5), None);
        assert_eq!(bucket_bound(LATENCY_BUCKETS.len()), f64::INFINITY);
    }
}
