//! The tables the expand and the contract lock, and who held them when every attempt timed
//! out. A migration's DDL waits at most `lock_timeout_ms` for its lock, then backs off and
//! tries again; when the attempts run out, "find the blocking session in pg_locks" left the
//! operator to look for it after it may have gone. So the error names the sessions that held
//! a lock on those tables (or their partitions) as the last attempt gave up: a nightly
//! `pg_dump`, a report idle in its transaction, another tool's DDL.

use tokio_postgres::GenericClient;

use super::error::MigrateError;
use crate::control::error::ControlError;
use crate::control::views::definition;

/// Sessions named at most in one error; the longest-running first.
const HOLDERS_NAMED: i64 = 5;
/// Characters of a holder's current or last statement shown.
const STATEMENT_SHOWN: i32 = 120;

/// The base tables of `version`'s recorded definition, (schema, name): what the expand takes
/// locks on (none if the catalog has no definition, which the expand then refuses).
pub async fn tables_of(
    client: &impl GenericClient,
    version: &str,
) -> Result<Vec<(String, String)>, MigrateError> {
    Ok(definition::load(client, version)
        .await?
        .map(|definition| {
            definition
                .tables
                .into_iter()
                .map(|table| (table.schema, table.name))
                .collect()
        })
        .unwrap_or_default())
}

/// `error`, and when it is the give-up after lock timeouts, with the sessions holding a lock
/// on `tables` now named in it.
pub async fn name_holders(
    client: &impl GenericClient,
    tables: &[(String, String)],
    error: MigrateError,
) -> MigrateError {
    let MigrateError::Control(ControlError::LockTimeout {
        attempts,
        lock_timeout_ms,
        message,
    }) = error
    else {
        return error;
    };
    let holders = match holders(client, tables).await {
        Ok(holders) if !holders.is_empty() => {
            format!(
                "; held as the last attempt gave up by {}",
                holders.join("; ")
            )
        }
        Ok(_) => String::new(),
        Err(error) => {
            tracing::warn!(%error, "could not read who holds the migration's tables");
            String::new()
        }
    };
    MigrateError::Control(ControlError::LockTimeout {
        attempts,
        lock_timeout_ms,
        message: message + &holders,
    })
}

/// Warns, before attempt `attempt` (2 or later), which sessions hold a lock on `tables` now:
/// while the attempts go on, an operator can end a stuck report or a forgotten transaction
/// before the command gives up, rather than learn of it only from the final error.
pub async fn warn_holders(client: &impl GenericClient, tables: &[(String, String)], attempt: u32) {
    match holders(client, tables).await {
        Ok(holders) if !holders.is_empty() => tracing::warn!(
            attempt,
            "the last attempt waited for a lock on the migration's tables; held now by {}",
            holders.join("; ")
        ),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "could not read who holds the migration's tables"),
    }
}

/// Each other session holding a lock on one of `tables` or their partitions, described.
async fn holders(
    client: &impl GenericClient,
    tables: &[(String, String)],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let (schemas, names): (Vec<&str>, Vec<&str>) = tables
        .iter()
        .map(|(schema, name)| (schema.as_str(), name.as_str()))
        .unzip();
    let rows = client
        .query(
            "WITH wanted AS (
                SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', w.schema, w.name)) AS relid
                  FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS w(schema, name)),
             tree AS (
                SELECT t.relid FROM wanted, LATERAL pg_catalog.pg_partition_tree(wanted.relid) t
                UNION SELECT relid FROM wanted)
             SELECT a.pid,
                    COALESCE(NULLIF(a.application_name, ''), a.backend_type, 'unknown'),
                    COALESCE(a.usename::text, '?'),
                    COALESCE(a.state, '?'),
                    COALESCE(EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::float8, 0),
                    COALESCE(pg_catalog.left(pg_catalog.regexp_replace(a.query, '\\s+', ' ', 'g'), $3), ''),
                    pg_catalog.string_agg(DISTINCT l.mode || ' on ' || pg_catalog.format('%I.%I', n.nspname, c.relname), ', ')
               FROM pg_catalog.pg_locks l
               JOIN tree ON tree.relid = l.relation
               JOIN pg_catalog.pg_class c ON c.oid = l.relation
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
              WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_catalog.pg_backend_pid()
              GROUP BY 1, 2, 3, 4, 5, 6
              ORDER BY 5 DESC
              LIMIT $4",
            &[&schemas, &names, &STATEMENT_SHOWN, &HOLDERS_NAMED],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let (pid, who, user, state): (i32, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let seconds: f64 = row.get(4);
            let statement: String = row.get(5);
            let locks: String = row.get(6);
            format!(
                "pid {pid} ({who}, user {user}, {state}, in a transaction for {seconds:.0} s, {locks}): {statement}"
            )
        })
        .collect())
}
