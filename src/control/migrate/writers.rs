//! The application's latency as the proxies see it, read back from their heartbeats, so the
//! backfill can pace itself by what it must protect.
//!
//! Every proxy publishes, with each heartbeat, its requests' cumulative counts per latency
//! bucket (`model::latency`); while a backfill runs it beats every
//! [`BACKFILL_HEARTBEAT_INTERVAL`]. The difference between two reads, summed over the live
//! proxies, is the latency distribution of every request the application made in between, at
//! every version. No other tool has this signal: a backfill elsewhere can only guess the
//! application's pain from its own batch times or from server-wide load.
//!
//! Clients that write to Postgres without a proxy are not seen; their latency is protected only
//! by the backfill's own-time pacing (`pace`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::GenericClient;

use crate::model::heartbeat::{BACKFILL_HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL, STALE_AFTER_BEATS};
use crate::model::latency::LATENCY_SLOTS;

use super::pace::MIN_TAIL_SAMPLES;

/// How often the backfill reads the proxies' counts: twice per fast heartbeat.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How long the backfill waits, before its first batch, for the application's latency without
/// it: a slow beat (proxies that have not yet seen the backfill start) and two fast ones.
const BASELINE_WAIT: Duration = Duration::from_millis(
    HEARTBEAT_INTERVAL.as_millis() as u64 + 2 * BACKFILL_HEARTBEAT_INTERVAL.as_millis() as u64,
);

/// How long a pause to measure the application without the backfill first lets pass: a beat
/// taken within it may still count requests that met a batch.
const QUIET_DRAIN: Duration = Duration::from_millis(
    BACKFILL_HEARTBEAT_INTERVAL.as_millis() as u64 + SAMPLE_EVERY.as_millis() as u64,
);
/// How long such a pause then counts the application's requests (at most).
const QUIET_SPAN: Duration =
    Duration::from_millis(2 * BACKFILL_HEARTBEAT_INTERVAL.as_millis() as u64);

/// Requests that make a good enough baseline to stop waiting for more.
const BASELINE_SAMPLES: u64 = 5 * MIN_TAIL_SAMPLES;

/// Cumulative request counts per latency slot (the last slot is the total).
pub type Counts = [u64; LATENCY_SLOTS];

/// Reads the proxies' latency counts and returns what changed since the last read.
#[derive(Debug, Default)]
pub struct WriterLatency {
    /// Each live proxy's counts at the last read.
    previous: HashMap<String, Counts>,
    last_read: Option<Instant>,
}

impl WriterLatency {
    /// Whether a read is due ([`SAMPLE_EVERY`] since the last).
    pub fn due(&self) -> bool {
        self.last_read
            .is_none_or(|last| last.elapsed() >= SAMPLE_EVERY)
    }

    /// The requests the live proxies served since the last read, as cumulative counts per
    /// slot; `None` when no proxy reports latency (none runs, or the catalog predates the
    /// column) or the catalog cannot be read: the backfill then paces by its own time alone.
    /// The first read primes the counts and returns zeros.
    pub async fn read(&mut self, client: &impl GenericClient) -> Option<Counts> {
        self.last_read = Some(Instant::now());
        let stale_after = (HEARTBEAT_INTERVAL * STALE_AFTER_BEATS).as_secs_f64();
        let rows = client
            .query(
                "SELECT proxy_id, latency_buckets FROM viewgate.proxies
                 WHERE latency_buckets IS NOT NULL
                   AND last_seen > now() - make_interval(secs => $1)",
                &[&stale_after],
            )
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::debug!(%error, "could not read the proxies' latency; pacing without it");
                return None;
            }
        };
        if rows.is_empty() {
            self.previous.clear();
            return None;
        }
        let mut since = [0u64; LATENCY_SLOTS];
        let mut current = HashMap::with_capacity(rows.len());
        for row in rows {
            let proxy: String = row.get(0);
            let Some(counts) = counts_of(&row.get::<_, Vec<i64>>(1)) else {
                continue;
            };
            if let Some(before) = self.previous.get(&proxy) {
                // A proxy that restarted counts from zero again: skip it this once.
                if counts.iter().zip(before).all(|(now, then)| now >= then) {
                    for ((slot, now), then) in since.iter_mut().zip(&counts).zip(before) {
                        *slot += now - then;
                    }
                }
            }
            current.insert(proxy, counts);
        }
        self.previous = current;
        Some(since)
    }

    /// The application's latency before the first batch: what the proxies report over up to
    /// [`BASELINE_WAIT`], or over their lifetime when that interval saw too few requests.
    /// `None` when no proxy reports latency.
    pub async fn baseline(&mut self, client: &impl GenericClient) -> Option<Counts> {
        self.read(client).await?;
        let seen = self.observe(client, Duration::ZERO, BASELINE_WAIT).await?;
        if seen[LATENCY_SLOTS - 1] >= MIN_TAIL_SAMPLES {
            Some(seen)
        } else {
            Some(self.lifetime())
        }
    }

    /// The application's latency with the backfill paused: beats that may still cover
    /// batches are read and dropped first.
    pub async fn quiet(&mut self, client: &impl GenericClient) -> Option<Counts> {
        self.observe(client, QUIET_DRAIN, QUIET_SPAN).await
    }

    /// Reads the proxies' requests every [`SAMPLE_EVERY`]: drops what arrives within `drain`,
    /// then sums what arrives within `span` after it (or until there are enough).
    async fn observe(
        &mut self,
        client: &impl GenericClient,
        drain: Duration,
        span: Duration,
    ) -> Option<Counts> {
        let counting_from = Instant::now() + drain;
        let deadline = counting_from + span;
        let mut seen: Counts = [0; LATENCY_SLOTS];
        while Instant::now() < deadline && seen[LATENCY_SLOTS - 1] < BASELINE_SAMPLES {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let since = self.read(client).await?;
            if Instant::now() >= counting_from {
                for (slot, count) in seen.iter_mut().zip(since) {
                    *slot += count;
                }
            }
        }
        Some(seen)
    }

    /// Every live proxy's counts since it started, summed: the application's latency over the
    /// proxies' lifetime, a baseline when no quiet interval could be observed.
    pub fn lifetime(&self) -> Counts {
        let mut total = [0u64; LATENCY_SLOTS];
        for counts in self.previous.values() {
            for (slot, count) in total.iter_mut().zip(counts) {
                *slot += count;
            }
        }
        total
    }
}

/// The counts of one heartbeat, if they have the shape this build counts in.
fn counts_of(values: &[i64]) -> Option<Counts> {
    let mut counts = [0u64; LATENCY_SLOTS];
    if values.len() != LATENCY_SLOTS {
        return None;
    }
    for (slot, value) in counts.iter_mut().zip(values) {
        *slot = u64::try_from(*value).ok()?;
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_another_shape_or_negative_are_ignored() {
        assert!(counts_of(&[1, 2, 3]).is_none());
        let mut values = vec![0i64; LATENCY_SLOTS];
        values[LATENCY_SLOTS - 1] = 7;
        assert_eq!(counts_of(&values).unwrap()[LATENCY_SLOTS - 1], 7);
        values[0] = -1;
        assert!(counts_of(&values).is_none());
    }
}
