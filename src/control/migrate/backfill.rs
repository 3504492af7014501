//! The backfill: existing rows get the new version's columns, in batches walked by primary key,
//! each batch one short transaction that also commits its checkpoint, so a killed run resumes
//! from its last committed batch.
//!
//! Only rows that existed when the backfill started are visited: the walk stops at the largest
//! key seen then (the high-water mark). Rows written later got their values from the sync
//! triggers (pgroll's issue #583 is what happens otherwise: a backfill that never ends under
//! heavy inserts). A batch reads where it ends, then updates the key range up to there along
//! the key's index, locking its rows in key order, as single-row writers expect; the checkpoint
//! is the last key read. The batch writes as `viewgate_backfill`, so no sync trigger redoes its
//! work. A row lock waits at
//! most the migration's `lock_timeout`: a batch waiting behind an application transaction holds
//! every row it locked before, and a writer of any of them waited as long (2.7 s behind a row
//! held 5 s).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::derive::{Backfill, ColumnMap, mentions};
use super::error::MigrateError;
use super::pace::{BatchPacer, PaceWindow};
use super::progress::Progress;
use super::settings::MigrationSettings;
use super::standbys::{self, StandbyWatch};
use super::start_point::{self, checkpoint_key};
use super::state::{self, Checkpoint};
use super::sync_sql::BACKFILL_WRITER;
use super::writers::WriterLatency;
use crate::control::error::ControlError;
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::retry::with_lock_retries;
use crate::model::latency::bucket_bound;
use crate::net::postgres_error::describe_postgres_error;

/// Times one batch is tried again after a deadlock or a serialization failure with a writer.
const BATCH_ATTEMPTS: u32 = 5;
/// Rows left below which the backfill does not wait to observe the application's latency
/// first: the wait would outlast the backfill.
const TAIL_GUARD_MIN_ROWS: u64 = 100_000;
/// How often, while the application's tail holds the backfill back, it pauses to measure that
/// tail without itself: the load it is judged against may be someone else's.
const REFERENCE_EVERY: Duration = Duration::from_secs(10);

/// The alias of the row a batch's UPDATE fills.
const TARGET: &str = "_vg_target";
/// The planner settings of a batch's transaction: its UPDATE walks the key's index, so its
/// rows are locked in key order, whatever the planner would estimate of a key range whose
/// bounds it cannot read (a key type whose input depends on settings, as `timestamptz`'s).
const ONE_BATCH_PLAN: &str =
    "set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)";

/// The two statements of one batch, run in one transaction.
pub struct BatchSql {
    /// Where the batch ends: the last of the next `batch_size` keys after the cursor, up to
    /// the high-water mark, read without locks. Parameters: the cursor's key values (all NULL
    /// for the first batch), then the high-water mark's, then the batch's row count. No row
    /// when none is left.
    pub bound: String,
    /// The batch's rows filled, found by the key range from the cursor to that last key.
    /// Parameters: the cursor's key values, then the last key's. Its row count is the rows
    /// updated.
    pub update: String,
}

impl BatchSql {
    /// Both statements as `migrate plan` prints them.
    pub fn plan_text(&self) -> String {
        format!(
            "-- where the batch ends ($1.. = cursor, then high-water mark, then batch size)\n{};\n\
             -- then its rows, in the same transaction, along the key's index (enable_seqscan and \
             enable_bitmapscan off; $1.. = cursor, then the last key read)\n{};",
            self.bound, self.update
        )
    }
}

/// The statements that fill one batch ([`BatchSql`]).
///
/// The batch's last key is read first, without locks, and is the checkpoint: a row locked
/// while a writer changes its key comes back from the lock under its new key (Postgres re-reads
/// the row's latest version), which as the checkpoint skipped every row between the two keys
/// (the forty-first red-team pass left 980 of 1,001 rows unfilled, reported done). The UPDATE
/// then takes the rows by the key range up to it, so a row whose key moved out of the range is
/// left out of this batch (Postgres checks the range again on the row's newest version): the
/// writer's UPDATE went through the sync triggers, which fill a new column still NULL, and a row
/// moved ahead of the cursor is met again by a later batch. One index range scan, where reading
/// the keys, locking them (`FOR NO KEY UPDATE`) and joining the UPDATE to them cost twice as
/// much a row (`docs/benchmarks.md`); [`ONE_BATCH_PLAN`] keeps it an index scan, so its rows
/// are locked in key order, as single-row writers expect (a partitioned table's partition by
/// partition).
///
/// The new values are computed in the UPDATE's own SET list, over the target row: if a writer
/// changed a row between this statement's snapshot and its lock, Postgres re-evaluates the SET
/// list on the row's newest version (EvalPlanQual), so the backfill never writes a value
/// computed from a stale row. `up` is written over the previous version's names
/// ([`over_previous_names`]).
pub fn batch_sql(backfill: &Backfill) -> BatchSql {
    let table = quote_qualified(&backfill.schema, &backfill.table);
    let key_count = backfill.key.len();
    let joined = |items: Vec<String>, separator: &str| items.join(separator);
    let key_list = |qualifier: &str| {
        joined(
            backfill
                .key
                .iter()
                .map(|(name, _)| format!("{qualifier}{}", quote_ident(name)))
                .collect(),
            ", ",
        )
    };
    let params = |offset: usize| {
        joined(
            backfill
                .key
                .iter()
                .enumerate()
                .map(|(index, (_, type_name))| {
                    format!("${}::text::{type_name}", offset + index + 1)
                })
                .collect(),
            ", ",
        )
    };
    let sets = joined(
        backfill
            .assigns
            .iter()
            .map(|assign| {
                format!(
                    "{} = (\n        {}\n    )",
                    quote_ident(&assign.target),
                    over_previous_names(&assign.expression, &backfill.columns)
                )
            })
            .collect(),
        ",\n    ",
    );
    // The scan's keys go by aliases, so that the last key's text reads them whatever they
    // are named.
    let alias = |index: usize| format!("_vg_k{index}");
    let aliased_keys = joined(
        backfill
            .key
            .iter()
            .enumerate()
            .map(|(index, (name, _))| format!("{} AS {}", quote_ident(name), alias(index)))
            .collect(),
        ", ",
    );
    let last_key = joined(
        (0..key_count)
            .map(|index| format!("{}::text", alias(index)))
            .collect(),
        ", ",
    );
    let descending = joined(
        (0..key_count)
            .map(|index| format!("{} DESC", alias(index)))
            .collect(),
        ", ",
    );
    let bound = format!(
        "SELECT ARRAY[{last_key}] FROM (
    SELECT {aliased_keys} FROM {table}
    WHERE ($1::text IS NULL OR ({keys}) > ({cursor}))
      AND ({keys}) <= ({high_water})
    ORDER BY {keys}
    LIMIT ${limit}::bigint
) AS _vg_scan
ORDER BY {descending}
LIMIT 1",
        keys = key_list(""),
        cursor = params(0),
        high_water = params(key_count),
        limit = 2 * key_count + 1,
    );
    let target_keys = key_list(&format!("{TARGET}."));
    let update = format!(
        "UPDATE {table} AS {TARGET} SET
    {sets}
WHERE ($1::text IS NULL OR ({target_keys}) > ({cursor}))
  AND ({target_keys}) <= ({last})",
        cursor = params(0),
        last = params(key_count),
    );
    BatchSql { bound, update }
}

/// `expression` (written over the previous version's column names) as the batch's SET list
/// computes it over the target row, which holds those columns under their physical names.
/// Where the expression reads a column whose names differ, it runs over a row that gives the
/// columns it reads the previous version's names, so each of its words means what it means in
/// the sync triggers (whose variables carry those names): in a subquery, the subquery's own
/// columns first. Moving its words to the physical names instead read the row's column
/// `_vg_v2_name` where a subquery named its own table's `name`.
fn over_previous_names(expression: &str, columns: &ColumnMap) -> String {
    let renamed_read = columns
        .iter()
        .any(|(logical, physical)| logical != physical && mentions(expression, logical));
    if !renamed_read {
        return expression.to_owned();
    }
    let row = columns
        .iter()
        .filter(|(logical, _)| mentions(expression, logical))
        .map(|(logical, physical)| {
            format!(
                "{TARGET}.{} AS {}",
                quote_ident(physical),
                quote_ident(logical)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT ({expression}) FROM (SELECT {row}) AS _vg_row")
}

/// Runs (or resumes) the backfill of one table to its high-water mark, in replica mode when
/// `skipped_triggers` (the application's UPDATE triggers it would fire) is not empty.
pub async fn run(
    client: &mut Client,
    (migration_id, backfill): (i64, &Backfill),
    checkpoint: Option<Checkpoint>,
    settings: &MigrationSettings,
    skipped_triggers: &[String],
    progress: &mut dyn Progress,
) -> Result<Checkpoint, MigrateError> {
    let mut pacer = BatchPacer::new(
        settings.batch_delay,
        settings.yield_to_writers,
        settings.batch_size,
    );
    let key = checkpoint_key(backfill);
    let mut checkpoint = match checkpoint {
        Some(checkpoint) if checkpoint.high_water.is_some() || checkpoint.done => checkpoint,
        _ => {
            let fresh = start_point::start_checkpoint(client, backfill).await?;
            state::save_checkpoint(client, migration_id, &key, &fresh).await?;
            fresh
        }
    };
    let sql = batch_sql(backfill);
    if !skipped_triggers.is_empty() {
        progress.step(&format!(
            "backfill {key} in replica mode: the application's UPDATE trigger(s) {} do not fire for it",
            skipped_triggers.join(", ")
        ));
    }
    let mut writers = WriterLatency::default();
    let mut standbys = StandbyWatch::new(settings.max_replica_lag);
    if pacer.yields() && checkpoint.estimate.saturating_sub(checkpoint.rows) >= TAIL_GUARD_MIN_ROWS
    {
        guard_application_tail(client, &mut writers, &mut pacer).await;
    }
    let started = Instant::now();
    let mut last_reference = started;
    let mut pace = PaceWindow::new(started);
    let rows_at_start = checkpoint.rows;
    progress.backfill(&key, checkpoint.rows, checkpoint.estimate, 0.0);
    while !checkpoint.done {
        let Some(high_water) = checkpoint.high_water.clone() else {
            break;
        };
        // Committed with the batch: how it was pacing itself up to now.
        checkpoint.pacing = pace.pacing(&pacer);
        if let Some(pacing) = &checkpoint.pacing {
            progress.pacing(&key, pacing);
        }
        let batch_started = Instant::now();
        let rows = pacer.batch_rows();
        let batch = Batch {
            migration_id,
            key: &key,
            sql: &sql,
            checkpoint: &checkpoint,
            high_water: &high_water,
            rows,
            replica_mode: !skipped_triggers.is_empty(),
        };
        let (updated, last) =
            with_lock_retries(settings.max_attempts, settings.lock_timeout, async || {
                one_batch(client, &batch, settings.lock_timeout).await
            })
            .await
            .result
            .map_err(|error| match error {
                MigrateError::Control(gave_up) => MigrateError::Failed {
                    version: String::new(),
                    step: format!("backfilling {key}"),
                    message: gave_up.to_string(),
                    aftermath: String::new(),
                },
                other => other,
            })?;
        let took = batch_started.elapsed();
        pace.batch(updated, took, Instant::now());
        listen_to_application(client, &mut writers, &mut pacer, &mut last_reference).await;
        let wait = pacer.after_batch(updated, took);
        checkpoint.rows += updated;
        match last {
            Some(last) => checkpoint.cursor = Some(last),
            None => checkpoint.done = true,
        }
        let elapsed = started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            (checkpoint.rows - rows_at_start) as f64 / elapsed
        } else {
            0.0
        };
        // Done is done, whatever the estimate said: the bar finishes and the last line is
        // printed even when fewer rows were there than estimated.
        let estimate = match checkpoint.done {
            true => checkpoint.rows,
            false => checkpoint.estimate.max(checkpoint.rows),
        };
        progress.backfill(&key, checkpoint.rows, estimate, rate);
        if !wait.is_zero() && !checkpoint.done {
            tokio::time::sleep(wait).await;
        }
        if !checkpoint.done {
            let waiting = Waiting {
                migration_id,
                key: &key,
            };
            waiting
                .for_standbys(client, &mut standbys, &mut checkpoint, progress)
                .await?;
        }
    }
    Ok(checkpoint)
}

/// Which backfill waits for the standbys.
struct Waiting<'a> {
    migration_id: i64,
    key: &'a str,
}

impl Waiting<'_> {
    /// Between batches: waits while a standby is too far behind (`standbys.rs`), saying so to
    /// `progress` and in the checkpoint, which `migrate status` reads.
    async fn for_standbys(
        &self,
        client: &Client,
        standbys: &mut StandbyWatch,
        checkpoint: &mut Checkpoint,
        progress: &mut dyn Progress,
    ) -> Result<(), MigrateError> {
        let mut waited = false;
        while let Some(behind) = standbys.behind(client, waited).await {
            if !waited {
                tracing::info!(standby = %behind.standby, lag_s = behind.lag.as_secs_f64(), "the backfill waits for a standby to catch up");
            }
            waited = true;
            let mut pacing = checkpoint.pacing.clone().unwrap_or_default();
            pacing.waiting_for_standby = Some(behind.describe());
            progress.pacing(self.key, &pacing);
            checkpoint.pacing = Some(pacing);
            state::save_checkpoint(client, self.migration_id, self.key, checkpoint).await?;
            tokio::time::sleep(standbys::WAIT_POLL).await;
        }
        if let Some(pacing) = checkpoint.pacing.as_mut().filter(|_| waited) {
            pacing.waiting_for_standby = None;
            progress.pacing(self.key, pacing);
        }
        Ok(())
    }
}

/// Starts guarding the application's p99 from its latency before the first batch.
async fn guard_application_tail(
    client: &Client,
    writers: &mut WriterLatency,
    pacer: &mut BatchPacer,
) {
    let Some(baseline) = writers.baseline(client).await else {
        return;
    };
    pacer.protect_tail(&baseline);
    if let Some(bucket) = pacer.protected_bucket() {
        tracing::info!(
            p99_at_most_ms = bucket_bound(bucket) * 1000.0,
            "the backfill yields whenever the application's p99 through the proxies rises above its bucket"
        );
    }
}

/// Between batches: tells the pacer what the application's requests met since the last read,
/// or, every [`REFERENCE_EVERY`] while it holds the backfill back, pauses to measure them
/// without the backfill.
async fn listen_to_application(
    client: &Client,
    writers: &mut WriterLatency,
    pacer: &mut BatchPacer,
    last_reference: &mut Instant,
) {
    if pacer.protected_bucket().is_none() {
        return;
    }
    if pacer.pause_ratio() > 0.0 && last_reference.elapsed() >= REFERENCE_EVERY {
        if let Some(quiet) = writers.quiet(client).await {
            pacer.quiet_latency(&quiet);
        }
        *last_reference = Instant::now();
    } else if writers.due()
        && let Some(since) = writers.read(client).await
    {
        pacer.application_latency(&since);
        tracing::debug!(
            pause_ratio = pacer.pause_ratio(),
            batch_rows = pacer.batch_rows(),
            "backfill pacing"
        );
    }
}

/// One batch to run: where the walk is and how far it goes.
struct Batch<'a> {
    migration_id: i64,
    key: &'a str,
    sql: &'a BatchSql,
    checkpoint: &'a Checkpoint,
    high_water: &'a [String],
    rows: u32,
    /// Whether the batch runs with `session_replication_role = replica`, so that the
    /// application's triggers enabled the ordinary way do not fire (`backfill_triggers.rs`).
    replica_mode: bool,
}

/// A key's values as a statement's parameters.
fn as_params(values: &[Option<String>]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|value| value as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// One batch and its checkpoint in one transaction, retried on deadlocks with writers; a row
/// lock it waits for longer than `lock_timeout` fails it with every lock it took let go, as a
/// lock timeout its caller retries after a backoff.
async fn one_batch(
    client: &mut Client,
    batch: &Batch<'_>,
    lock_timeout: Duration,
) -> Result<(u64, Option<Vec<String>>), MigrateError> {
    let Batch {
        migration_id,
        key,
        sql,
        checkpoint,
        high_water,
        rows,
        replica_mode,
    } = *batch;
    let limit = i64::from(rows);
    let key_count = high_water.len();
    let cursor: Vec<Option<String>> = match &checkpoint.cursor {
        Some(cursor) => cursor.iter().cloned().map(Some).collect(),
        None => vec![None; key_count],
    };
    let high: Vec<Option<String>> = high_water.iter().cloned().map(Some).collect();
    let lock_timeout = format!("{}ms", lock_timeout.as_millis().max(1));
    let at = || {
        checkpoint
            .cursor
            .as_ref()
            .map(|cursor| format!(" after key ({})", cursor.join(", ")))
            .unwrap_or_default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result: Result<(u64, Option<Vec<String>>), tokio_postgres::Error> = async {
            let transaction = client.transaction().await?;
            let settings = format!(
                "SELECT set_config('viewgate.version', $1, true), set_config('lock_timeout', $2, true), {ONE_BATCH_PLAN}{}",
                if replica_mode {
                    ", set_config('session_replication_role', 'replica', true)"
                } else {
                    ""
                }
            );
            transaction
                .execute(&settings, &[&BACKFILL_WRITER, &lock_timeout])
                .await?;
            let mut bound_params = as_params(&cursor);
            bound_params.extend(as_params(&high));
            bound_params.push(&limit);
            let last: Option<Vec<String>> = transaction
                .query_opt(&sql.bound, &bound_params)
                .await?
                .map(|row| row.get(0));
            let updated = match &last {
                Some(last) => {
                    let last: Vec<Option<String>> = last.iter().cloned().map(Some).collect();
                    let mut update_params = as_params(&cursor);
                    update_params.extend(as_params(&last));
                    transaction.execute(&sql.update, &update_params).await?
                }
                None => 0,
            };
            let mut next = checkpoint.clone();
            next.rows += updated;
            match &last {
                Some(last) => next.cursor = Some(last.clone()),
                None => next.done = true,
            }
            transaction
                .execute(
                    state::SAVE_CHECKPOINT,
                    &[&migration_id, &key, &state::checkpoint_json(&next)],
                )
                .await?;
            transaction.commit().await?;
            Ok((updated, last))
        }
        .await;
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(error)
                if attempt < BATCH_ATTEMPTS
                    && matches!(
                        error.code(),
                        Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
                            | Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE)
                    ) =>
            {
                tracing::warn!(%error, attempt, "backfill batch lost a lock race; retrying");
            }
            Err(error) if crate::control::error::is_lock_timeout(&error) => {
                return Err(
                    ControlError::database(format!("backfilling {key}{}", at()), &error).into(),
                );
            }
            Err(error) => {
                return Err(MigrateError::Failed {
                    version: String::new(),
                    step: format!("backfilling {key}{}", at()),
                    message: describe_postgres_error(&error),
                    aftermath: String::new(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::over_previous_names;

    #[test]
    fn up_runs_over_the_previous_names_only_where_they_differ() {
        let columns = vec![
            ("id".to_owned(), "id".to_owned()),
            ("name".to_owned(), "_vg_v2_name".to_owned()),
            ("size".to_owned(), "size".to_owned()),
        ];
        assert_eq!(over_previous_names("size * 2", &columns), "size * 2");
        assert_eq!(
            over_previous_names("(SELECT name FROM c WHERE c.key = size)", &columns),
            "SELECT ((SELECT name FROM c WHERE c.key = size)) FROM (SELECT _vg_target.\"_vg_v2_name\" AS \"name\", _vg_target.\"size\" AS \"size\") AS _vg_row",
            "only the columns it names"
        );
    }
}
