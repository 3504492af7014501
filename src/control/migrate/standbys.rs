//! The backfill waits for the standbys. A backfill writes every row of a table again, as fast
//! as the primary takes it; a streaming standby replays that WAL with one process and can fall
//! minutes behind, and then reads served there go stale and a failover to it waits for (or,
//! promoted at once, loses) what it has not replayed. gh-ost and pt-online-schema-change
//! throttle on their replicas' lag for the same reason. Between batches, at most every
//! [`CHECK_EVERY`], the backfill reads each physical standby's replay position from
//! `pg_stat_replication` and waits while one is more than `max_replica_lag_ms` behind. A
//! logical consumer's position (its slot's confirmed one) advances only as it confirms, which
//! one idle on the tables it reads (a CDC connector) may not do for minutes: it is not waited
//! for.
//!
//! The lag is measured against the primary's own WAL positions, sampled at each check: a
//! standby is as far behind as the oldest sample past its replay position is old. Postgres's
//! `replay_lag` column changes only when the standby reports progress, so a standby whose replay
//! stopped keeps showing the small lag it had; it serves here only as the head start of a
//! standby already behind when first seen (a delayed standby's `recovery_min_apply_delay`),
//! which is allowed that much more. A standby still over its allowance after
//! [`GIVE_UP_AFTER`] is no longer waited for (said once, naming it): a standby that stopped
//! replaying would otherwise stall the backfill for good, and the file's settings cannot
//! change under a running migration. Without the privilege to read other sessions'
//! replication figures (`pg_read_all_stats`), no standby's position is visible; that is said
//! once too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// The shortest time between two reads of the standbys' positions while none is behind.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often the standbys are read again while the backfill waits for one.
pub const WAIT_POLL: Duration = Duration::from_millis(500);
/// How long a standby may stay over its allowance before the backfill stops waiting for it.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// Samples of the primary's WAL position kept: at one a [`CHECK_EVERY`], minutes of history.
const MAX_SAMPLES: usize = 4096;

const READ_STANDBYS: &str =
    "SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::bigint,
        s.pid, s.state::text, s.application_name::text, pg_catalog.host(s.client_addr),
        pg_catalog.pg_wal_lsn_diff(s.replay_lsn, '0/0')::bigint,
        (extract(epoch FROM s.replay_lag) * 1000)::bigint
   FROM (SELECT 1) AS one
   LEFT JOIN pg_catalog.pg_stat_replication s
          ON NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots r
                          WHERE r.active_pid = s.pid AND r.slot_type = 'logical')";

/// A standby the backfill waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Behind {
    /// `walreceiver (10.0.0.7)`: its application name and address.
    pub standby: String,
    pub lag: Duration,
    pub allowed: Duration,
}

impl Behind {
    /// What the backfill is doing about it, for progress and `migrate status`.
    pub fn describe(&self) -> String {
        format!(
            "waiting for standby {}, {:.1} s behind (over {:.1} s: the migration file's `max_replica_lag_ms`)",
            self.standby,
            self.lag.as_secs_f64(),
            self.allowed.as_secs_f64()
        )
    }
}

/// One walsender as a check reads it.
struct Standby {
    pid: i32,
    name: String,
    replay: i64,
    /// Postgres's own `replay_lag`, when it has one.
    reported_lag: Option<Duration>,
}

/// The standbys' lag, followed across a backfill.
pub struct StandbyWatch {
    max_lag: Duration,
    /// (when, the primary's WAL position then), oldest first.
    samples: VecDeque<(Instant, i64)>,
    /// Per walsender pid: the lag it is allowed over `max_lag` (its lag when first seen).
    head_start: HashMap<i32, Duration>,
    /// Per walsender pid: since when it has been over its allowance.
    over_since: HashMap<i32, Instant>,
    given_up: HashSet<i32>,
    last_check: Option<Instant>,
    said_unreadable: bool,
}

impl StandbyWatch {
    pub fn new(max_lag: Duration) -> Self {
        StandbyWatch {
            max_lag,
            samples: VecDeque::new(),
            head_start: HashMap::new(),
            over_since: HashMap::new(),
            given_up: HashSet::new(),
            last_check: None,
            said_unreadable: false,
        }
    }

    /// The standby furthest over its allowance now, if one is; reads the standbys at most
    /// every [`CHECK_EVERY`] unless `waiting` (the caller is already waiting for one).
    pub async fn behind(&mut self, client: &Client, waiting: bool) -> Option<Behind> {
        if self.max_lag.is_zero() {
            return None;
        }
        let now = Instant::now();
        if !waiting
            && self
                .last_check
                .is_some_and(|last| now.duration_since(last) < CHECK_EVERY)
        {
            return None;
        }
        self.last_check = Some(now);
        let (primary, standbys) = match self.read(client).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, "could not read the standbys' positions");
                return None;
            }
        };
        self.sample(now, primary);
        self.judge(now, &standbys)
    }

    async fn read(
        &mut self,
        client: &Client,
    ) -> Result<(i64, Vec<Standby>), tokio_postgres::Error> {
        let rows = client.query(READ_STANDBYS, &[]).await?;
        let primary: i64 = rows.first().map_or(0, |row| row.get(0));
        let mut standbys = Vec::new();
        let mut unreadable = 0;
        for row in &rows {
            let Some(pid) = row.get::<_, Option<i32>>(1) else {
                continue;
            };
            let state: Option<String> = row.get(2);
            let replay: Option<i64> = row.get(5);
            match (state.as_deref(), replay) {
                (None, _) => unreadable += 1,
                (Some("streaming"), Some(replay)) => {
                    let name: Option<String> = row.get(3);
                    let address: Option<String> = row.get(4);
                    standbys.push(Standby {
                        pid,
                        name: format!(
                            "{} ({})",
                            name.unwrap_or_default(),
                            address.as_deref().unwrap_or("local socket")
                        ),
                        replay,
                        reported_lag: row
                            .get::<_, Option<i64>>(6)
                            .and_then(|millis| u64::try_from(millis).ok())
                            .map(Duration::from_millis),
                    });
                }
                // Starting up, catching up after an outage, or a base backup: not streaming.
                _ => {}
            }
        }
        if unreadable > 0 && !self.said_unreadable {
            self.said_unreadable = true;
            tracing::warn!(
                walsenders = unreadable,
                "the backfill cannot see how far behind the standbys are: the migration's role needs pg_read_all_stats (or to be a superuser) to read pg_stat_replication; it does not wait for them"
            );
        }
        Ok((primary, standbys))
    }

    fn sample(&mut self, now: Instant, primary: i64) {
        if self
            .samples
            .back()
            .is_some_and(|&(_, position)| position == primary)
        {
            return;
        }
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, primary));
    }

    /// How far behind a standby replaying at `replay` is: as old as the oldest sample past
    /// it (at least; the WAL it has not replayed was written after the sample before).
    fn lag(&self, now: Instant, replay: i64) -> Duration {
        self.samples
            .iter()
            .find(|&&(_, position)| position > replay)
            .map_or(Duration::ZERO, |&(when, _)| now.duration_since(when))
    }

    fn judge(&mut self, now: Instant, standbys: &[Standby]) -> Option<Behind> {
        let mut worst: Option<Behind> = None;
        for standby in standbys {
            if self.given_up.contains(&standby.pid) {
                continue;
            }
            let head_start = *self
                .head_start
                .entry(standby.pid)
                .or_insert_with(|| standby.reported_lag.unwrap_or_default());
            let allowed = self.max_lag + head_start;
            let lag = self.lag(now, standby.replay);
            if lag <= allowed {
                self.over_since.remove(&standby.pid);
                continue;
            }
            let since = *self.over_since.entry(standby.pid).or_insert(now);
            if now.duration_since(since) >= GIVE_UP_AFTER {
                self.given_up.insert(standby.pid);
                tracing::warn!(
                    standby = %standby.name,
                    lag_s = lag.as_secs_f64(),
                    "the standby has stayed over max_replica_lag_ms for {} s: the backfill no longer waits for it",
                    GIVE_UP_AFTER.as_secs()
                );
                continue;
            }
            if worst
                .as_ref()
                .is_none_or(|worst| lag - allowed > worst.lag - worst.allowed)
            {
                worst = Some(Behind {
                    standby: standby.name.clone(),
                    lag,
                    allowed,
                });
            }
        }
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(pid: i32, replay: i64, reported_lag: Option<Duration>) -> Standby {
        Standby {
            pid,
            name: format!("walreceiver-{pid} (local socket)"),
            replay,
            reported_lag,
        }
    }

    #[test]
    fn a_standby_is_as_far_behind_as_the_oldest_position_it_has_not_replayed() {
        let mut watch = StandbyWatch::new(Duration::from_secs(5));
        let start = Instant::now();
        for second in 0..10 {
            watch.sample(
                start + Duration::from_secs(second),
                100 * (second as i64 + 1),
            );
        }
        let now = start + Duration::from_secs(10);
        assert_eq!(watch.lag(now, 1_000), Duration::ZERO, "caught up");
        assert_eq!(watch.lag(now, 950), Duration::from_secs(1));
        assert_eq!(watch.lag(now, 250), Duration::from_secs(8));
        assert_eq!(
            watch.judge(now, &[standby(1, 950, None)]),
            None,
            "within the allowance"
        );
        let behind = watch
            .judge(now, &[standby(1, 950, None), standby(2, 250, None)])
            .expect("one standby is 8 s behind");
        assert_eq!(behind.lag, Duration::from_secs(8));
        assert!(behind.describe().contains("walreceiver-2"));
    }

    #[test]
    fn a_standby_behind_when_first_seen_is_allowed_that_much_more_and_one_stuck_is_given_up() {
        let mut watch = StandbyWatch::new(Duration::from_secs(5));
        let start = Instant::now();
        watch.sample(start, 100);
        let delayed = standby(7, 50, Some(Duration::from_secs(3600)));
        assert_eq!(watch.judge(start, std::slice::from_ref(&delayed)), None);
        let later = start + Duration::from_secs(60);
        assert_eq!(
            watch.judge(later, std::slice::from_ref(&delayed)),
            None,
            "an hour's head start"
        );

        let stuck = standby(8, 50, None);
        assert!(watch.judge(later, std::slice::from_ref(&stuck)).is_some());
        let much_later = later + GIVE_UP_AFTER;
        assert_eq!(
            watch.judge(much_later, std::slice::from_ref(&stuck)),
            None,
            "no longer waited for"
        );
    }
}
