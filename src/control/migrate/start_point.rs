//! Where a backfill starts: the largest key when the sync triggers began (every row past it
//! was written under them, so the backfill stops there) and an estimate of the rows up to it
//! (the progress bar's total). The expand reads them in the window in which it holds its
//! tables' locks, and every writer of those tables waits: each is one round trip, and the
//! estimate (which may count a small table) is read before the window opens.

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use super::derive::Backfill;
use super::error::MigrateError;
use super::state::Checkpoint;
use crate::control::error::ControlError;
use crate::control::quote::{quote_ident, quote_qualified};

/// Tables smaller than this are counted exactly for the progress estimate; larger ones are
/// estimated as the planner does: the rows per page of the last ANALYZE times the pages there
/// are now (a table that grew since is not taken at its old size).
const EXACT_COUNT_BELOW_BYTES: i64 = 8 * 1024 * 1024;
/// Bytes per row assumed for a large table the planner has never estimated.
const GUESSED_ROW_BYTES: i64 = 100;

/// Key of a checkpoint: `schema.table`.
pub fn checkpoint_key(backfill: &Backfill) -> String {
    format!("{}.{}", backfill.schema, backfill.table)
}

/// A checkpoint at the start of `backfill`: the largest key now ([`high_water`]) and
/// [`estimate_rows`].
pub async fn start_checkpoint(
    client: &impl GenericClient,
    backfill: &Backfill,
) -> Result<Checkpoint, MigrateError> {
    let estimate = estimate_rows(client, backfill).await?;
    Ok(fresh_checkpoint(
        high_water(client, backfill).await?,
        estimate,
    ))
}

/// The checkpoint of a backfill that has visited no row yet, to `high_water`.
pub fn fresh_checkpoint(high_water: Option<Vec<String>>, estimate: u64) -> Checkpoint {
    Checkpoint {
        cursor: None,
        done: high_water.is_none(),
        high_water,
        rows: 0,
        estimate,
        pacing: None,
    }
}

/// The largest key now, in one round trip (the expand reads it under its table locks, after
/// the sync triggers exist: every row past it was written under them).
pub async fn high_water(
    client: &impl GenericClient,
    backfill: &Backfill,
) -> Result<Option<Vec<String>>, MigrateError> {
    let table = quote_qualified(&backfill.schema, &backfill.table);
    let key = backfill
        .key
        .iter()
        .map(|(name, _)| format!("{}::text", quote_ident(name)))
        .collect::<Vec<_>>()
        .join(", ");
    let descending = backfill
        .key
        .iter()
        .map(|(name, _)| format!("{} DESC", quote_ident(name)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT ARRAY[{key}] FROM {table} ORDER BY {descending} LIMIT 1");
    Ok(client
        .query_typed_opt(&sql, &[])
        .await
        .map_err(|error| {
            let context = format!("reading the key range of {}", checkpoint_key(backfill));
            ControlError::database(context, &error)
        })?
        .map(|row| row.get(0)))
}

/// An estimate of the table's rows, exact below [`EXACT_COUNT_BELOW_BYTES`]: the progress
/// total. The expand reads it before it takes its table locks, under which a count is a scan
/// every writer of the table would wait for.
pub async fn estimate_rows(
    client: &impl GenericClient,
    backfill: &Backfill,
) -> Result<u64, MigrateError> {
    let table = quote_qualified(&backfill.schema, &backfill.table);
    let estimate: i64 = client
        .query_typed(
            &format!(
                "SELECT CASE WHEN pg_relation_size(c.oid) < {EXACT_COUNT_BELOW_BYTES}
                                  THEN (SELECT count(*) FROM {table})
                             WHEN c.reltuples > 0 AND c.relpages > 0
                                  THEN (c.reltuples / c.relpages
                                        * (pg_relation_size(c.oid)
                                           / current_setting('block_size')::bigint))::bigint
                             ELSE pg_relation_size(c.oid) / {GUESSED_ROW_BYTES} END
                 FROM pg_class c WHERE c.oid = $1::regclass"
            ),
            &[(&table, Type::TEXT)],
        )
        .await
        .map_err(|error| {
            let context = format!("estimating the rows of {}", checkpoint_key(backfill));
            ControlError::database(context, &error)
        })?
        .first()
        .map_or(0, |row| row.get(0));
    Ok(u64::try_from(estimate).unwrap_or(0))
}
