//! The order in which the contract and the rollback lock what they change: the versions' views
//! of the migration's tables first, then the tables, the order every writer through a view
//! takes them in.
//!
//! A client's `INSERT INTO models_v2` holds the view, then waits for `models`. The contract
//! took `models` first (dropping the sync triggers), then waited for `models_v2` (making the
//! view again after a rename): each waited for the other, and the lock timeout, which fires
//! long before Postgres's deadlock check, cancelled the contract, attempt after attempt. Seen
//! with one v2 client writing every 2 ms: `migrate complete` gave up after 40 attempts, for as
//! long as the new version took traffic, which is exactly when a contract runs. Taking every
//! view first leaves a writer waiting on a view with nothing of ours held.
//!
//! Not by `LOCK TABLE` on the views: Postgres locks a view's tables right after the view, so
//! the first view listed took `models` before the next view, and writers of a chain's third
//! version (or of the second, listed after the retired first) met the same deadlock (a
//! complete killed and run again 22 times before one went through). Each view is taken alone,
//! by `ALTER VIEW … OWNER TO` its owner, a statement that changes nothing and locks the view
//! only (ACCESS EXCLUSIVE), then the tables by `LOCK TABLE`.

use tokio_postgres::GenericClient;

use super::derive::MigrationPlan;
use super::error::MigrateError;
use super::steps::run_sql;
use crate::control::error::ControlError;

/// The statements that lock, in order: `ALTER VIEW … OWNER TO` its owner for each view (`$1`:
/// of the version that goes, whatever their table; of any version over a table of `$2`/`$3`,
/// schemas and names), then one `LOCK TABLE` of those tables; only what exists. Every name is
/// quoted by Postgres from its catalog.
const STATEMENTS_SQL: &str = "
WITH views AS (
    SELECT DISTINCT pg_catalog.format('%I.%I', o.view_schema, o.view_name) AS name
      FROM viewgate.version_objects o
     WHERE o.version = $1
        OR (o.base_schema, o.base_table) IN (
               SELECT * FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])))),
tables AS (
    SELECT pg_catalog.format('%I.%I', t.schema, t.name) AS name
      FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])) AS t(schema, name)
     WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.schema, t.name)) IS NOT NULL)
SELECT statement FROM (
    SELECT 0 AS rank, v.name AS sort,
           pg_catalog.format('ALTER VIEW %s OWNER TO %I', v.name,
                             pg_catalog.pg_get_userbyid(c.relowner)) AS statement
      FROM views v JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(v.name)
     WHERE c.relkind = 'v'
    UNION ALL
    SELECT 1, '', 'LOCK TABLE ' || pg_catalog.string_agg(name, ', ' ORDER BY name)
                  || ' IN ACCESS EXCLUSIVE MODE'
      FROM tables HAVING pg_catalog.count(*) > 0
) statements
 ORDER BY rank, sort";

/// The new version's tables as they are physically, (schema, name).
pub fn physical_tables(plan: &MigrationPlan) -> Vec<(String, String)> {
    plan.definition
        .tables
        .iter()
        .map(|table| (table.schema.clone(), table.name.clone()))
        .collect()
}

/// The phase that takes the locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Contract,
    Rollback,
}

impl Phase {
    /// Whether the phase takes its tables' ACCESS EXCLUSIVE lock anyway (sync triggers to
    /// drop, DDL on them). One that does not (an index built or dropped, nothing else) keeps
    /// off them: locking a view locks its tables too, and the phase would then wait for every
    /// reader of the table, a report's long transaction included, where it waited for none.
    fn locks_tables(self, plan: &MigrationPlan) -> bool {
        !plan.syncs.is_empty()
            || match self {
                Phase::Contract => !plan.complete.is_empty() || !plan.renames.is_empty(),
                Phase::Rollback => {
                    !plan.rollback.is_empty() || !plan.rollback_referencing.is_empty()
                }
            }
    }
}

/// Locks, in writers' order, the views of `going` (the version whose views are dropped) and
/// every version's views over the tables of `plan`'s version, then those tables, under the
/// transaction's lock timeout (a timeout stays retryable); nothing when `phase` does not lock
/// the tables anyway.
pub async fn lock_views_then_tables(
    transaction: &impl GenericClient,
    (version, going): (&str, &str),
    plan: &MigrationPlan,
    phase: Phase,
) -> Result<(), MigrateError> {
    if !phase.locks_tables(plan) {
        return Ok(());
    }
    let tables = physical_tables(plan);
    let schemas: Vec<&str> = tables.iter().map(|(schema, _)| schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|(_, name)| name.as_str()).collect();
    let statements: Vec<String> = transaction
        .query(STATEMENTS_SQL, &[&going, &schemas, &names])
        .await
        .map_err(|error| ControlError::database("listing what the phase locks", &error))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for statement in &statements {
        run_sql(
            transaction,
            version,
            "locking the versions' views, then their tables",
            statement,
        )
        .await?;
    }
    Ok(())
}
