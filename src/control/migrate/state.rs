//! The migrations' rows in the catalog (`viewgate.migrations`): which migrations exist, their
//! phase, their plan, and the backfill checkpoints. Every value is bound.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use super::derive::MigrationPlan;
use super::error::MigrateError;
use super::file::Migration;
use crate::control::error::ControlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Backfilling,
    Live,
    Completed,
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Backfilling => "backfilling",
            Phase::Live => "live",
            Phase::Completed => "completed",
            Phase::RolledBack => "rolled_back",
        }
    }

    fn parse(text: &str) -> Result<Self, MigrateError> {
        Ok(match text {
            "backfilling" => Phase::Backfilling,
            "live" => Phase::Live,
            "completed" => Phase::Completed,
            "rolled_back" => Phase::RolledBack,
            other => {
                return Err(MigrateError::State(format!(
                    "unknown migration phase {other:?} in the catalog"
                )));
            }
        })
    }
}

/// Where one table's backfill stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The key of the last row of the last committed batch; `None` before the first.
    pub cursor: Option<Vec<String>>,
    /// The largest key when the backfill started: rows after it were written under the triggers.
    pub high_water: Option<Vec<String>>,
    pub rows: u64,
    /// Rows to visit, as estimated when the backfill started.
    pub estimate: u64,
    pub done: bool,
    /// How the backfill was pacing itself when it committed its last batch (absent in
    /// checkpoints older builds wrote, and before the first batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing: Option<Pacing>,
}

/// The backfill's recent pace, as `migrate status` and `/metrics` show it: why a backfill is
/// slower than the database could go is the first thing an operator asks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pacing {
    /// Rows filled per second over the last few seconds, waits included.
    pub rows_per_second: f64,
    /// The share of those seconds spent in batches; the rest was spent yielding.
    pub working_share: f64,
    /// Rows in the next batch.
    pub batch_rows: u32,
    /// The bound, in milliseconds, the application's p99 through the proxies had before the
    /// backfill, which the backfill yields to keep; absent when it does not listen to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_p99_ms: Option<f64>,
    /// The standby the backfill is waiting for, and how far behind it is; absent while none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_standby: Option<String>,
}

/// A migration as the catalog records it.
#[derive(Debug, Clone)]
pub struct MigrationRecord {
    pub id: i64,
    pub version: String,
    pub from: String,
    pub file: String,
    pub checksum: String,
    pub migration: Migration,
    pub plan: MigrationPlan,
    pub phase: Phase,
    pub backfill: BTreeMap<String, Checkpoint>,
    pub started_at: String,
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    what: &str,
    text: &str,
) -> Result<T, MigrateError> {
    serde_json::from_str(text).map_err(|error| {
        MigrateError::State(format!(
            "the catalog's {what} cannot be read by this build: {error}"
        ))
    })
}

pub(super) fn encode<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

const SELECT: &str =
    "SELECT id, version, from_version, file, checksum, migration::text, plan::text,
       phase, backfill::text,
       to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
FROM viewgate.migrations";

fn record(row: &tokio_postgres::Row) -> Result<MigrationRecord, MigrateError> {
    Ok(MigrationRecord {
        id: row.get(0),
        version: row.get(1),
        from: row.get(2),
        file: row.get(3),
        checksum: row.get(4),
        migration: decode("migration", row.get(5))?,
        plan: decode("migration plan", row.get(6))?,
        phase: Phase::parse(row.get(7))?,
        backfill: decode("backfill checkpoint", row.get(8))?,
        started_at: row.get(9),
    })
}

/// Every migration that is not rolled back, oldest first.
pub async fn load_current(
    client: &impl GenericClient,
) -> Result<Vec<MigrationRecord>, MigrateError> {
    load_where(client, "WHERE phase <> 'rolled_back'").await
}

/// Every migration recorded, rolled back ones too, oldest first: what `migrate status` shows.
pub async fn load_history(
    client: &impl GenericClient,
) -> Result<Vec<MigrationRecord>, MigrateError> {
    load_where(client, "").await
}

/// The migrations `filter` (a constant `WHERE` clause, or none) keeps, oldest first.
async fn load_where(
    client: &impl GenericClient,
    filter: &'static str,
) -> Result<Vec<MigrationRecord>, MigrateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('viewgate.migrations') IS NOT NULL", &[])
        .await
        .map_err(|error| ControlError::database("looking for viewgate.migrations", &error))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(&format!("{SELECT} {filter} ORDER BY id"), &[])
        .await
        .map_err(|error| ControlError::database("reading viewgate.migrations", &error))?;
    rows.iter().map(record).collect()
}

/// Records a new migration in phase `backfilling`; returns its id.
pub async fn insert(
    client: &impl GenericClient,
    file: &str,
    checksum: &str,
    migration: &Migration,
    plan: &MigrationPlan,
    backfill: &BTreeMap<String, Checkpoint>,
) -> Result<i64, MigrateError> {
    let row = client
        .query_one(
            "INSERT INTO viewgate.migrations
               (version, from_version, file, checksum, migration, plan, phase, backfill)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, 'backfilling', $7::text::jsonb)
             RETURNING id",
            &[
                &migration.version,
                &migration.from,
                &file,
                &checksum,
                &encode(migration),
                &encode(plan),
                &encode(backfill),
            ],
        )
        .await
        .map_err(|error| ControlError::database("recording the migration", &error))?;
    Ok(row.get(0))
}

pub async fn set_phase(
    client: &impl GenericClient,
    id: i64,
    phase: Phase,
) -> Result<(), MigrateError> {
    let finished = matches!(phase, Phase::Completed | Phase::RolledBack);
    client
        .execute(
            "UPDATE viewgate.migrations
             SET phase = $2, updated_at = now(),
                 finished_at = CASE WHEN $3 THEN now() ELSE finished_at END
             WHERE id = $1",
            &[&id, &phase.as_str(), &finished],
        )
        .await
        .map_err(|error| ControlError::database("recording the migration's phase", &error))?;
    Ok(())
}

/// Records one table's checkpoint: `$1` the migration id, `$2` the table, `$3` the checkpoint
/// as JSON ([`checkpoint_json`]). The backfill runs it inside each batch's transaction.
pub const SAVE_CHECKPOINT: &str = "UPDATE viewgate.migrations
     SET backfill = jsonb_set(backfill, ARRAY[$2::text], $3::text::jsonb), updated_at = now()
     WHERE id = $1";

pub fn checkpoint_json(checkpoint: &Checkpoint) -> String {
    encode(checkpoint)
}

pub async fn save_checkpoint(
    client: &impl GenericClient,
    id: i64,
    table: &str,
    checkpoint: &Checkpoint,
) -> Result<(), MigrateError> {
    client
        .execute_typed(
            SAVE_CHECKPOINT,
            &[
                (&id, Type::INT8),
                (&table, Type::TEXT),
                (&encode(checkpoint), Type::TEXT),
            ],
        )
        .await
        .map_err(|error| ControlError::database("recording the backfill checkpoint", &error))?;
    Ok(())
}

pub async fn save_plan(
    client: &impl GenericClient,
    id: i64,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    client
        .execute(
            "UPDATE viewgate.migrations SET plan = $2::text::jsonb, updated_at = now() WHERE id = $1",
            &[&id, &encode(plan)],
        )
        .await
        .map_err(|error| ControlError::database("recording the migration plan", &error))?;
    Ok(())
}

/// What a migration command's session sets over the role's and the database's defaults,
/// which are the application's: a `statement_timeout` cancelled an index build or a validation
/// (after the whole backfill; rolled back whole), though neither holds a lock a writer waits
/// for, and every statement that does is bounded by the migration's own `lock_timeout`; a
/// `default_transaction_isolation` of serializable failed the backfill's batches as the
/// writers' serialization pivots (40001). Every step is written for read committed. An
/// `idle_session_timeout` ended the session while the backfill paused between batches, and
/// with it the rollback. `transaction_timeout` exists from PostgreSQL 17. (An
/// `idle_in_transaction_session_timeout` stays: a migration never idles in a transaction on
/// purpose, and if its process hangs in one, the timeout frees the application's locks.)
/// The backfill's cursor and high-water mark are keys printed as text and read back: an
/// `extra_float_digits` of 0 or less rounds a float to 15 digits, and keys differing past them
/// read back as one (nine rows of ten left unfilled, the migration reported done); above 0,
/// every float prints exactly, as by default. Likewise a date key printed under a day-first
/// `DateStyle` (`11/02/2025`) and read back by a resumed run after the style became
/// month-first was the second of November, and the rows between were left unfilled: dates
/// print in ISO (`SET DateStyle = ISO` changes the output alone; the field order stays the
/// database's, so a cursor an earlier build printed reads back as it did), intervals in
/// Postgres's own style, which reads back alike whatever the style (`sql_standard` changes
/// what a leading sign applies to). An `up` that makes text of a date sees ISO too, as most
/// drivers' sessions do.
const SESSION_SETTINGS: &str = "SET statement_timeout = 0;
    SET idle_session_timeout = 0;
    SET extra_float_digits = 3;
    SET DateStyle = ISO;
    SET IntervalStyle = postgres;
    SET default_transaction_isolation = 'read committed';
    SELECT pg_catalog.set_config('transaction_timeout', '0', false)
     WHERE pg_catalog.current_setting('server_version_num')::int >= 170000";

/// Runs `work` holding the migration lock (refused at once if another migration command holds
/// it), and releases the lock after, whatever `work` returned.
pub async fn with_lock<T>(
    client: &mut tokio_postgres::Client,
    work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|error| ControlError::database("setting the migration's session up", &error))?;
    try_lock(client).await?;
    let result = work(client).await;
    unlock(client).await;
    result
}

/// Releases the migration lock taken by [`try_lock`]; the lock also goes with the session.
async fn unlock(client: &impl GenericClient) {
    if let Err(error) = client
        .execute(
            "SELECT pg_advisory_unlock(hashtext($1::text))",
            &[&MIGRATION_LOCK],
        )
        .await
    {
        tracing::warn!(%error, "could not release the migration lock; it goes with the connection");
    }
}

/// The name of the session-level advisory lock a migration command holds while it runs (as
/// `hashtext` of it, one bigint key).
const MIGRATION_LOCK: &str = "viewgate.migrate";

/// The process ID of the session holding the migration lock: a `migrate` command running now
/// (a `migrate start` backfilling, most likely); `None` when none runs.
pub async fn migration_command_pid(
    client: &impl GenericClient,
) -> Result<Option<i32>, MigrateError> {
    // pg_locks shows a one-bigint advisory key as its high and low 32 bits, objsubid 1.
    let row = client
        .query_opt(
            "SELECT l.pid FROM pg_catalog.pg_locks l
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                   WHERE d.datname = pg_catalog.current_database())
                AND l.classid = ((pg_catalog.hashtext($1::text)::bigint >> 32) & 4294967295)::oid
                AND l.objid = (pg_catalog.hashtext($1::text)::bigint & 4294967295)::oid
              LIMIT 1",
            &[&MIGRATION_LOCK],
        )
        .await
        .map_err(|error| {
            ControlError::database("looking for a running migration command", &error)
        })?;
    Ok(row.and_then(|row| row.get(0)))
}

/// Takes the migration lock for this session, or says another migration command holds it.
async fn try_lock(client: &impl GenericClient) -> Result<(), MigrateError> {
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext($1::text))",
            &[&MIGRATION_LOCK],
        )
        .await
        .map_err(|error| ControlError::database("taking the migration lock", &error))?
        .get(0);
    if locked {
        return Ok(());
    }
    Err(MigrateError::Busy {
        holder: describe_holder(client).await,
    })
}

/// What a statement's text is cut to in a description of the lock's holder.
const HOLDER_QUERY_CHARS: i32 = 120;

/// The session holding the migration lock, for the refusal: a process killed mid-statement
/// (`kill -9` of a `migrate start` while its index builds) leaves its session holding the lock
/// until that statement ends, and the operator must be able to tell that from a colleague's
/// run, and end it.
async fn describe_holder(client: &impl GenericClient) -> String {
    let Ok(Some(pid)) = migration_command_pid(client).await else {
        return "session that has ended since: run the command again".to_owned();
    };
    let described = client
        .query_opt(
            "SELECT pg_catalog.format('session of pid %s, %s from %s, connected since %s UTC, %s: %s',
                        a.pid, coalesce(nullif(a.application_name, ''), 'no application name'),
                        coalesce(pg_catalog.host(a.client_addr), 'a local socket'),
                        pg_catalog.to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                        coalesce(a.state, 'state unknown'),
                        pg_catalog.left(coalesce(a.query, ''), $2))
               FROM pg_catalog.pg_stat_activity a WHERE a.pid = $1",
            &[&pid, &HOLDER_QUERY_CHARS],
        )
        .await
        .ok()
        .flatten()
        .map_or_else(|| format!("session of pid {pid}"), |row| row.get(0));
    format!(
        "{described}. Wait for it to finish; if that command's process is gone, its session ends with its statement, or end it now: SELECT pg_terminate_backend({pid})"
    )
}
