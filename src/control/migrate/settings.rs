//! How a migration runs, from its file's `[settings]` table: the backfill's batch size, pause,
//! yielding to the application and waiting for the standbys, how DDL waits for its locks,
//! whether logical subscribers are ready for the new shape and whether the disk has room for
//! WAL that inactive replication slots keep. Every setting has a
//! default that suits a live application, so most files leave the table out. `migrate start`
//! may set the backfill's pace for one run (`PaceOverride`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Rows one backfill batch updates when the file does not say.
pub const DEFAULT_BATCH_SIZE: u32 = 1_000;
/// Largest batch a file may ask for: one batch is one transaction holding its rows' locks.
pub const MAX_BATCH_SIZE: u32 = 100_000;
/// Pause between backfill batches when the file does not say.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::ZERO;
/// How long one expand or contract DDL attempt waits for its lock before it backs off.
pub const DEFAULT_MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_millis(50);
/// Attempts in all for one DDL transaction that keeps losing its lock race.
pub const DEFAULT_MIGRATION_ATTEMPTS: u32 = 40;
/// How far behind the primary a standby may fall before the backfill waits for it.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(5);

/// How the migration runs: backfill pace and DDL lock behaviour.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettings {
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    #[serde(default, rename = "batch_delay_ms", with = "millis")]
    pub batch_delay: Duration,
    #[serde(
        default = "default_lock_timeout",
        rename = "lock_timeout_ms",
        with = "millis"
    )]
    pub lock_timeout: Duration,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Whether the backfill waits longer between batches as its batches slow down under the
    /// application's load (`pace.rs`); on top of `batch_delay`.
    #[serde(default = "default_yield_to_writers")]
    pub yield_to_writers: bool,
    /// How far behind a streaming standby may fall before the backfill waits for it to catch
    /// up (`standbys.rs`); zero never waits.
    #[serde(
        default = "default_max_replica_lag",
        rename = "max_replica_lag_ms",
        with = "millis"
    )]
    pub max_replica_lag: Duration,
    /// Whether the logical subscribers of the publications streaming a table the migration
    /// reshapes are ready for it (`publications.rs`): their tables have the new columns, or
    /// they follow schema changes themselves. Without it such a migration is refused.
    #[serde(default)]
    pub subscribers_ready: bool,
    /// Whether the disk has room for the backfill's WAL while an inactive replication slot
    /// keeps it (`retained_wal.rs`). Without it such a migration is refused.
    #[serde(default)]
    pub inactive_slots_ok: bool,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            batch_size: DEFAULT_BATCH_SIZE,
            batch_delay: DEFAULT_BATCH_DELAY,
            lock_timeout: DEFAULT_MIGRATION_LOCK_TIMEOUT,
            max_attempts: DEFAULT_MIGRATION_ATTEMPTS,
            yield_to_writers: true,
            max_replica_lag: DEFAULT_MAX_REPLICA_LAG,
            subscribers_ready: false,
            inactive_slots_ok: false,
        }
    }
}

/// The backfill's pace as `migrate start` was told on its command line, over the file's
/// `[settings]` for that run only: an operator slows down (or speeds up) a backfill by
/// stopping it and starting it again, without editing the file, whose checksum the resumed
/// run must match (pgroll's `--backfill-batch-size` and `--backfill-batch-delay`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PaceOverride {
    pub batch_size: Option<u32>,
    pub batch_delay: Option<Duration>,
    pub yield_to_writers: Option<bool>,
}

impl PaceOverride {
    /// `settings` with the pace this override gives.
    pub fn over(&self, settings: MigrationSettings) -> MigrationSettings {
        MigrationSettings {
            batch_size: self.batch_size.unwrap_or(settings.batch_size),
            batch_delay: self.batch_delay.unwrap_or(settings.batch_delay),
            yield_to_writers: self.yield_to_writers.unwrap_or(settings.yield_to_writers),
            ..settings
        }
    }

    /// What it sets, as the file would say it (`batch_size = 200, …`); `None` when nothing.
    pub fn described(&self) -> Option<String> {
        let set: Vec<String> = [
            self.batch_size.map(|rows| format!("batch_size = {rows}")),
            self.batch_delay
                .map(|delay| format!("batch_delay_ms = {}", delay.as_millis())),
            self.yield_to_writers
                .map(|yields| format!("yield_to_writers = {yields}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!set.is_empty()).then(|| set.join(", "))
    }
}

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}
fn default_lock_timeout() -> Duration {
    DEFAULT_MIGRATION_LOCK_TIMEOUT
}
fn default_attempts() -> u32 {
    DEFAULT_MIGRATION_ATTEMPTS
}
fn default_yield_to_writers() -> bool {
    true
}
fn default_max_replica_lag() -> Duration {
    DEFAULT_MAX_REPLICA_LAG
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_sets_the_pace_alone_and_says_what_it_set() {
        let file = MigrationSettings {
            batch_size: 5_000,
            lock_timeout: Duration::from_millis(80),
            ..MigrationSettings::default()
        };
        let none = PaceOverride::default();
        assert_eq!(none.over(file), file);
        assert_eq!(none.described(), None);
        let slower = PaceOverride {
            batch_size: Some(200),
            batch_delay: Some(Duration::from_millis(50)),
            yield_to_writers: None,
        };
        let paced = slower.over(file);
        assert_eq!(
            (paced.batch_size, paced.batch_delay, paced.yield_to_writers),
            (200, Duration::from_millis(50), true)
        );
        assert_eq!(paced.lock_timeout, file.lock_timeout);
        assert_eq!(
            slower.described().as_deref(),
            Some("batch_size = 200, batch_delay_ms = 50")
        );
    }
}
