//! Tables the migration reshapes that a publication streams to logical subscribers.
//!
//! PostgreSQL's logical replication matches a table's columns by name. A subscriber whose
//! table lacks a column the publisher sends stops applying (`logical replication target
//! relation … is missing replicated column`), retries forever, and the publisher keeps every
//! WAL segment since for its slot, until its disk fills: the expand's first new column did
//! that on the first change streamed after it (a write, or the backfill's first batch). A
//! column renamed at the contract is the same to a subscriber, a table renamed is missing, and
//! a column dropped leaves the subscriber's NOT NULL column without a value. The publisher
//! cannot see the subscribers' tables, so a migration that reshapes a published table this way
//! is refused before any change, naming each publication and what its subscribers need,
//! unless the file says they are ready (`subscribers_ready = true`: their tables were given
//! the columns first, or they follow schema changes themselves, as Debezium does). A
//! publication with a column list streams no column the migration adds. `migrate complete`
//! asks again for its renames and drops (a publication may have been made since the start).

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::derive::{MigrationPlan, Rename};
use super::error::MigrateError;
use crate::control::error::ControlError;

/// What the migration does to one table that a subscriber's table must follow.
#[derive(Default)]
struct Reshape {
    added: Vec<String>,
    /// Column renames (from, to) and the table's own (to).
    renamed: Vec<String>,
    dropped: Vec<String>,
}

/// Which of the plan's reshapes to ask about: all of them at the start, the contract's alone
/// at `migrate complete`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Everything,
    TheContract,
}

/// Refuses `plan` while a publication streams a table it reshapes, unless the file's
/// `subscribers_ready` says the subscribers are ready.
pub async fn refuse_unready_subscribers(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    subscribers_ready: bool,
    asked: Asked,
) -> Result<(), MigrateError> {
    if subscribers_ready {
        return Ok(());
    }
    for ((schema, table), reshape) in reshapes(plan, asked) {
        let publications = client
            .query(
                "WITH tree AS (
                    SELECT relid FROM pg_catalog.pg_partition_tree(
                        pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)))
                    UNION SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)))
                 SELECT t.pubname::text,
                        pg_catalog.bool_or(COALESCE(
                            pg_catalog.jsonb_typeof(pg_catalog.to_jsonb(r) -> 'prattrs') <> 'null',
                            false))
                   FROM pg_catalog.pg_publication_tables t
                   JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname
                   JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
                   JOIN tree ON tree.relid = c.oid
                   JOIN pg_catalog.pg_publication p ON p.pubname = t.pubname
                   LEFT JOIN pg_catalog.pg_publication_rel r
                     ON r.prpubid = p.oid AND r.prrelid = c.oid
                  GROUP BY t.pubname
                  ORDER BY 1",
                &[&schema, &table],
            )
            .await
            .map_err(|error| {
                ControlError::database(
                    format!("reading the publications of {schema}.{table}"),
                    &error,
                )
            })?;
        let mut streamed = Vec::new();
        let mut needs = Vec::new();
        for row in &publications {
            let name: String = row.get(0);
            let column_list: bool = row.get(1);
            let reaches = !reshape.renamed.is_empty()
                || !column_list && (!reshape.added.is_empty() || !reshape.dropped.is_empty());
            if reaches {
                streamed.push(name);
            }
        }
        if streamed.is_empty() {
            continue;
        }
        if !reshape.added.is_empty() {
            needs.push(format!(
                "the expand adds column(s) {} (their tables need them, nullable, before `migrate start`)",
                reshape.added.join(", ")
            ));
        }
        if !reshape.renamed.is_empty() {
            needs.push(format!(
                "the contract renames {} (their tables must be renamed alike as `migrate complete` runs: disable the subscriptions across it)",
                reshape.renamed.join(", ")
            ));
        }
        if !reshape.dropped.is_empty() {
            needs.push(format!(
                "the contract drops column(s) {} (their tables must let them be NULL, or drop them, before `migrate complete`)",
                reshape.dropped.join(", ")
            ));
        }
        return Err(MigrateError::Refused {
            version: plan.version.clone(),
            operation: "the publications".into(),
            problem: format!(
                "table {schema}.{table} is streamed to logical subscribers by publication {}: {}. A subscriber whose table does not follow stops applying changes, and this database keeps its WAL until it does. Once the subscribers are ready (or if they follow schema changes themselves, as Debezium does), set `subscribers_ready = true` in the file's [settings]",
                streamed.join(", "),
                needs.join("; ")
            ),
        });
    }
    Ok(())
}

/// The plan's reshapes by table, (schema, table) as the table is named before the contract.
fn reshapes(plan: &MigrationPlan, asked: Asked) -> BTreeMap<(String, String), Reshape> {
    let mut by_table: BTreeMap<(String, String), Reshape> = BTreeMap::new();
    if asked == Asked::Everything {
        for (schema, table, column) in &plan.added_columns {
            by_table
                .entry((schema.clone(), table.clone()))
                .or_default()
                .added
                .push(column.clone());
        }
    }
    for rename in &plan.renames {
        let (schema, table, described) = match rename {
            Rename::Column {
                schema,
                table,
                from,
                to,
            } => (schema, table, format!("column {from} to {to}")),
            Rename::Table { schema, from, to } => (schema, from, format!("the table to {to}")),
            // A constraint's name is not replicated.
            Rename::Constraint { .. } => continue,
        };
        by_table
            .entry((schema.clone(), table.clone()))
            .or_default()
            .renamed
            .push(described);
    }
    for (schema, table, column) in plan.contracted_columns() {
        by_table
            .entry((schema.to_owned(), table.to_owned()))
            .or_default()
            .dropped
            .push(column.to_owned());
    }
    by_table
}
