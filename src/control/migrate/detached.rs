//! Partitions detached while a migration is live (pg_partman's retention with
//! `retention_keep_table`, an archive moved out by hand). A detached partition keeps the
//! columns the expand added and loses the sync triggers (Postgres drops the cloned ones), so
//! after a rollback it still had the new version's columns and could not be attached again
//! (`contains column … not found in parent`), and after the contract it kept the new
//! version's copy of a replaced column beside the old one, no longer maintained. The start
//! records the partitions of each table it adds columns to; the rollback drops every added
//! column from those detached since, and the contract drops the replacements (the detached
//! table keeps its old shape), in their transactions.

use tokio_postgres::GenericClient;

use super::derive::{MigrationPlan, PartitionAtStart, Step};
use super::error::MigrateError;
use crate::control::error::ControlError;
use crate::control::quote::{quote_ident, quote_qualified};

/// Records in `plan` the partitions of each table it adds columns to.
pub async fn record_partitions(
    client: &impl GenericClient,
    plan: &mut MigrationPlan,
) -> Result<(), MigrateError> {
    let mut roots: Vec<(String, String)> = plan
        .added_columns
        .iter()
        .map(|(schema, table, _)| (schema.clone(), table.clone()))
        .collect();
    roots.dedup();
    for (schema, table) in roots {
        let rows = client
            .query(
                "SELECT pn.nspname::text, p.relname::text, cn.nspname::text, c.relname::text
                   FROM pg_catalog.pg_partition_tree(
                            pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))) t
                   JOIN pg_catalog.pg_class c ON c.oid = t.relid
                   JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
                   JOIN pg_catalog.pg_class p ON p.oid = t.parentrelid
                   JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
                  ORDER BY t.level, 3, 4",
                &[&schema, &table],
            )
            .await
            .map_err(|error| {
                ControlError::database(format!("reading the partitions of {schema}.{table}"), &error)
            })?;
        plan.partitions_at_start
            .extend(rows.iter().map(|row| PartitionAtStart {
                root: (schema.clone(), table.clone()),
                parent: (row.get(0), row.get(1)),
                partition: (row.get(2), row.get(3)),
            }));
    }
    Ok(())
}

/// What is dropped from a partition detached since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tidy {
    /// Every column the expand added.
    Rollback,
    /// The replacements of the columns the contract replaces.
    Contract,
}

/// The steps that drop from each partition detached since the start (and still there) what
/// `tidy` says: run in the rollback's or the contract's transaction.
pub async fn tidy_steps(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    tidy: Tidy,
) -> Result<Vec<Step>, MigrateError> {
    let mut steps = Vec::new();
    for recorded in &plan.partitions_at_start {
        let columns: Vec<&str> = match tidy {
            Tidy::Rollback => plan
                .added_columns
                .iter()
                .filter(|(schema, table, _)| {
                    (schema, table) == (&recorded.root.0, &recorded.root.1)
                })
                .map(|(_, _, column)| column.as_str())
                .collect(),
            Tidy::Contract => plan
                .replaced
                .iter()
                .filter(|old| (&old.schema, &old.table) == (&recorded.root.0, &recorded.root.1))
                .filter_map(|old| old.replacement.as_ref())
                .map(|replacement| replacement.column.as_str())
                .collect(),
        };
        if columns.is_empty() {
            continue;
        }
        let (partition, parent) = (&recorded.partition, &recorded.parent);
        let detached: bool = client
            .query_one(
                "SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text)) IS NOT NULL
                    AND NOT EXISTS (
                        SELECT 1 FROM pg_catalog.pg_inherits
                         WHERE inhrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                           AND inhparent = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $3::text, $4::text)))",
                &[&partition.0, &partition.1, &parent.0, &parent.1],
            )
            .await
            .map_err(|error| {
                ControlError::database(
                    format!("looking up partition {}.{}", partition.0, partition.1),
                    &error,
                )
            })?
            .get(0);
        if !detached {
            continue;
        }
        let drops: Vec<String> = columns
            .iter()
            .map(|column| format!("DROP COLUMN IF EXISTS {}", quote_ident(column)))
            .collect();
        steps.push(Step::new(
            format!(
                "drop {} from {}.{}, detached from {}.{} while the migration was live",
                columns.join(", "),
                partition.0,
                partition.1,
                parent.0,
                parent.1
            ),
            format!(
                "ALTER TABLE {} {}",
                quote_qualified(&partition.0, &partition.1),
                drops.join(", ")
            ),
        ));
    }
    Ok(steps)
}
