//! Autovacuum in the way of a migration's table lock. Postgres cancels an autovacuum that
//! blocks a lock request for `deadlock_timeout` (1 s by default), unless it runs to prevent
//! wraparound; a migration's DDL waits at most its `lock_timeout` (50 ms), never that long,
//! so the cancel never came: on a large table, whose autovacuum runs for minutes (and comes
//! right after a backfill, which leaves every row it updated dead), each attempt of the expand
//! or the contract timed out until they ran out. So before each attempt after the first, the
//! autovacuum workers holding a lock on the migration's tables are cancelled as Postgres
//! would cancel them, and the attempt waits for them to let go. Cancelling one needs a
//! superuser (or, from PostgreSQL 18, a member of `pg_signal_autovacuum_worker`); without it
//! the attempts go on as before.

use std::time::{Duration, Instant};

use tokio_postgres::GenericClient;

/// How long an attempt waits for a cancelled autovacuum to let go of its locks.
const LET_GO_WITHIN: Duration = Duration::from_secs(2);
/// How often it looks meanwhile.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// The autovacuum workers (not preventing wraparound) holding a lock on one of `tables`
/// (schema, name): pid and `schema.table`.
const HOLDERS_SQL: &str = "
SELECT DISTINCT a.pid, pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_stat_activity a
  JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.locktype = 'relation' AND l.granted
  JOIN pg_catalog.pg_class c ON c.oid = l.relation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN unnest($1::text[], $2::text[]) AS wanted(schema, name)
    ON wanted.schema = n.nspname AND wanted.name = c.relname
 WHERE a.backend_type = 'autovacuum worker'
   AND a.query NOT LIKE '%to prevent wraparound%'";

/// Cancels the autovacuum workers in the way of a lock on `tables` and waits (a moment) for
/// them to let go; best effort: what it could not cancel is logged, and the attempt that
/// follows times out as it would have.
pub async fn cancel_in_the_way(client: &impl GenericClient, tables: &[(String, String)]) {
    let (schemas, names): (Vec<&str>, Vec<&str>) = tables
        .iter()
        .map(|(schema, name)| (schema.as_str(), name.as_str()))
        .unzip();
    let holders = match client.query(HOLDERS_SQL, &[&schemas, &names]).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "could not look for autovacuum in the migration's way");
            return;
        }
    };
    let mut cancelled = Vec::new();
    for row in &holders {
        let (pid, table): (i32, String) = (row.get(0), row.get(1));
        match client
            .query_one("SELECT pg_catalog.pg_cancel_backend($1)", &[&pid])
            .await
        {
            Ok(_) => {
                tracing::info!(pid, %table, "cancelled the autovacuum holding a lock the migration needs");
                cancelled.push(pid);
            }
            Err(error) => tracing::warn!(
                pid, %table, %error,
                "autovacuum holds a lock the migration needs and could not be cancelled (that needs a superuser, or on PostgreSQL 18 a member of pg_signal_autovacuum_worker)"
            ),
        }
    }
    let deadline = Instant::now() + LET_GO_WITHIN;
    while !cancelled.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(LOOK_EVERY).await;
        match client.query(HOLDERS_SQL, &[&schemas, &names]).await {
            Ok(rows) => cancelled.retain(|pid| rows.iter().any(|row| row.get::<_, i32>(0) == *pid)),
            Err(_) => return,
        }
    }
}
