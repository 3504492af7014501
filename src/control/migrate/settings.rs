//! How a migration runs, from its file's `[settings]` table: the backfill's batch size, pause,
//! yielding to the application and waiting for the standbys, how DDL waits for its locks,
//! whether logical subscribers are ready for the new shape and whether the disk has room for
//! WAL that inactive replication slots keep. Every setting has a
//! default that suits a live application, so most files leave the table out.

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
