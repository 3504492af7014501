//! The application's UPDATE triggers and the backfill. The backfill fills the new columns
//! with an UPDATE of every existing row, which fires the table's UPDATE triggers: an
//! `updated_at` touch trigger bumped every row, an uppercasing trigger rewrote a column for the
//! old version, an audit trigger would write a row per row (red-team pass 41, finding 3).
//!
//! Where the migration's role may set `session_replication_role` (a superuser; from
//! PostgreSQL 15 a role granted `SET` on it, as managed services grant their admin role), the
//! backfill's batches run in replica mode, where triggers enabled the ordinary way do not fire
//! (viewgate's sync triggers are enabled ALWAYS, and do nothing for the backfill's writer).
//! Otherwise, and for a trigger that fires in replica mode too (enabled ALWAYS, or REPLICA),
//! the migration is refused before any change, naming the triggers and what to do. A trigger
//! restricted to columns (`UPDATE OF`, which names only old columns) or skipping the backfill's
//! writer by its WHEN clause never fires for the backfill. The triggers of every partition
//! count: a trigger made on one partition alone fires for the rows the backfill routes there.
//!
//! An `ON UPDATE` rule is the same, or worse: `DO ALSO` writes a row per row, `DO INSTEAD`
//! replaces the batch's UPDATE and leaves the rows unfilled. Rules are enabled as triggers are
//! (`ENABLE ALWAYS RULE`), and replica mode skips the ordinary ones alike; they are counted
//! with the triggers, as `rule <name>`.
//!
//! Replica mode also skips Postgres's own foreign-key triggers: the backfill changes no key,
//! and a foreign key on a new column is added NOT VALID and validated after the backfill.

use tokio_postgres::GenericClient;

use super::derive::Backfill;
use super::error::MigrateError;
use super::sync_sql::{BACKFILL_WRITER, FUNCTION_SCHEMA};
use crate::control::error::ControlError;
use crate::control::quote::quote_literal;
use crate::control::views::introspect::server_version_num;

/// First server version (`server_version_num`) where a parameter's `SET` can be granted.
const PARAMETER_PRIVILEGES_FROM: i32 = 150_000;

/// The application's UPDATE triggers on a table (and its partitions) that would fire for the
/// backfill's writes, by how they are enabled.
#[derive(Debug, Default)]
struct Firing {
    /// Enabled the ordinary way: they fire unless the session is in replica mode.
    ordinary: Vec<String>,
    /// Enabled ALWAYS or REPLICA: they fire in replica mode.
    in_replica_mode: Vec<String>,
    /// Enabled ALWAYS: they fire in an ordinary session too.
    always: Vec<String>,
}

async fn firing(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Firing, ControlError> {
    // tgtype bit 16 is UPDATE, a rule's ev_type '2'. 'O' fires in an ordinary session, 'R' in
    // replica mode, 'A' in both (rules are enabled as triggers are). pg_partition_tree lists
    // nothing for a table that is not partitioned.
    let rows = client
        .query(
            "SELECT DISTINCT name, enabled FROM (
             SELECT t.tgname::text AS name, t.tgenabled::text AS enabled
               FROM pg_catalog.pg_trigger t
               JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
               JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
              WHERE (t.tgrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                     OR t.tgrelid IN (
                        SELECT tree.relid FROM pg_catalog.pg_partition_tree(
                            pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))) AS tree))
                AND NOT t.tgisinternal AND t.tgenabled IN ('O', 'A', 'R')
                AND t.tgtype::int & 16 <> 0
                AND pg_catalog.cardinality(t.tgattr::int2[]) = 0
                AND pn.nspname <> $3
                AND (t.tgqual IS NULL
                     OR pg_catalog.strpos(pg_catalog.pg_get_triggerdef(t.oid), $4) = 0)
             UNION ALL
             SELECT 'rule ' || r.rulename::text, r.ev_enabled::text
               FROM pg_catalog.pg_rewrite r
              WHERE (r.ev_class = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                     OR r.ev_class IN (
                        SELECT tree.relid FROM pg_catalog.pg_partition_tree(
                            pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))) AS tree))
                AND r.ev_type = '2' AND r.rulename <> '_RETURN' AND r.ev_enabled IN ('O', 'A', 'R')
             ) AS firing
              ORDER BY 1",
            &[
                &schema,
                &table,
                &FUNCTION_SCHEMA,
                &quote_literal(BACKFILL_WRITER),
            ],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the UPDATE triggers of {schema}.{table}"),
                &error,
            )
        })?;
    let mut firing = Firing::default();
    for row in &rows {
        let name: String = row.get(0);
        let enabled: String = row.get(1);
        let lists: &mut [&mut Vec<String>] = match enabled.as_str() {
            "O" => &mut [&mut firing.ordinary],
            "A" => &mut [&mut firing.in_replica_mode, &mut firing.always],
            _ => &mut [&mut firing.in_replica_mode],
        };
        for list in lists {
            if !list.contains(&name) {
                list.push(name.clone());
            }
        }
    }
    Ok(firing)
}

/// Whether this session may set `session_replication_role`.
async fn may_set_replication_role(client: &impl GenericClient) -> Result<bool, ControlError> {
    let query = if server_version_num(client).await? >= PARAMETER_PRIVILEGES_FROM {
        "SELECT pg_catalog.has_parameter_privilege('session_replication_role', 'SET')"
    } else {
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    };
    let row = client.query_one(query, &[]).await.map_err(|error| {
        ControlError::database(
            "reading whether the role may set session_replication_role",
            &error,
        )
    })?;
    Ok(row.get(0))
}

/// Refuses a backfilled table with an UPDATE trigger of the application's that would fire for
/// the backfill's writes, as the migration's role may run them; otherwise the triggers the
/// backfill skips by running in replica mode (none: it runs as an ordinary session). Checked
/// when the plan is made and again before a resumed backfill, whose role or triggers may have
/// changed since.
pub async fn refuse_firing(
    client: &impl GenericClient,
    version: &str,
    backfill: &Backfill,
) -> Result<Vec<String>, MigrateError> {
    let (schema, table) = (backfill.schema.as_str(), backfill.table.as_str());
    let firing = firing(client, schema, table).await?;
    let replica_mode = may_set_replication_role(client).await?;
    let (names, how) = if replica_mode {
        (
            firing.in_replica_mode.clone(),
            " (enabled ALWAYS or REPLICA, so they fire even in replica mode, in which the backfill runs)",
        )
    } else {
        let mut names = firing.ordinary.clone();
        names.extend(firing.always.iter().cloned());
        names.sort();
        (names, "")
    };
    if names.is_empty() {
        return Ok(if replica_mode {
            firing.ordinary
        } else {
            Vec::new()
        });
    }
    let replica_remedy = if replica_mode {
        "; or enable it the ordinary way (`ALTER TABLE … ENABLE TRIGGER <name>`), which replica mode skips"
    } else {
        "; or let the migration's role set session_replication_role (a superuser may; on PostgreSQL 15 and later, `GRANT SET ON PARAMETER session_replication_role TO <role>`): the backfill then runs in replica mode, where triggers enabled the ordinary way do not fire"
    };
    Err(MigrateError::Unsafe {
        version: version.to_owned(),
        table: format!("{schema}.{table}"),
        objects: format!("UPDATE trigger(s) or rule(s) {}{how}", names.join(", ")),
        problem: "the backfill fills the new columns with an UPDATE of every existing row, which fires them: they would change rows no client wrote (an updated_at touch, a normalisation, an audit row per row)".into(),
        remedy: format!(
            "restrict each trigger to the columns it is about (`UPDATE OF <its columns>`: the backfill writes only new columns), or give it `WHEN (current_setting('viewgate.version', true) IS DISTINCT FROM {})`; drop or disable a rule for the migration's time{replica_remedy}, then start again",
            quote_literal(BACKFILL_WRITER)
        ),
    })
}
