//! The heartbeat's timing, agreed between the proxies that write `viewgate.proxies`
//! (`telemetry::heartbeat`) and `viewgate status`, which judges their rows (`control::overview`).

use std::time::Duration;

/// How often a proxy reports; `viewgate status` calls a proxy stale after
/// [`STALE_AFTER_BEATS`] missed beats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
pub const STALE_AFTER_BEATS: u32 = 3;
/// How often a proxy reports while a backfill runs: the backfill paces itself by the latency
/// the proxies report (`control::migrate::writers`), so it must hear of a slowdown quickly.
pub const BACKFILL_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// The phase a migration is in while its backfill runs (`viewgate.migrations.phase`).
pub const BACKFILLING_PHASE: &str = "backfilling";
