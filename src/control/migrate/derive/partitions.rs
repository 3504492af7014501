//! An index on a partitioned table, built without blocking writes. Postgres builds no index
//! on a partitioned table `CONCURRENTLY`, and a plain build blocks every write to each
//! partition for the whole build. So the index is made `ON ONLY` the table (catalog only,
//! invalid until every partition has its own), built `CONCURRENTLY` on each partition that
//! holds rows and attached to its parent's (`ALTER INDEX … ATTACH PARTITION`); the last
//! attachment makes it valid. A partition partitioned in turn gets an index `ON ONLY` it,
//! attached to its parent's in the same transaction.
//!
//! A resumed or timed-out run starts over: dropping the table's index drops every index
//! attached to it, and a partition's index a killed build left unattached is dropped before
//! it is built again.
//!
//! A unique constraint cannot be made so (a partitioned table has no `ADD CONSTRAINT … USING
//! INDEX`); but Postgres adding one to a partitioned table takes each partition's matching
//! constraint instead of building: so each partition gets its unique index concurrently, and
//! the contract makes those the partitions' constraints and then adds the table's.

use super::constraints::quoted_list;
use super::sql::fit_identifier;
use super::{Deriver, Step};
use crate::control::migrate::error::MigrateError;
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::introspect::{PartitionKind, Partitioning};
use crate::control::views::spec::ManagedTable;

/// The steps that build an index partition by partition, and undo it.
#[derive(Debug, Default)]
pub struct PartitionBuilds {
    /// In order: the table's index `ON ONLY`, each partition's (built, or made `ON ONLY` for a
    /// partition partitioned in turn) and its attachment.
    pub concurrent: Vec<Step>,
    /// The table's index (with what is attached to it), then each partition's left unattached.
    pub rollback: Vec<Step>,
    /// Every index made, (schema, name).
    pub built: Vec<(String, String)>,
}

/// The steps that build index `index` (`CREATE [UNIQUE] INDEX <name> ON <table>
/// <definition>`, `definition` from `USING` on) on `schema.table`, partitioned as
/// `partitioning`; the problem, when it cannot be built so.
pub fn index_on_partitions(
    (schema, table): (&str, &str),
    partitioning: &Partitioning,
    index: &str,
    unique: &str,
    definition: &str,
) -> Result<PartitionBuilds, String> {
    if let Some(problem) = foreign_partition((schema, table), partitioning) {
        return Err(problem);
    }
    let mut builds = PartitionBuilds::default();
    let root = quote_qualified(schema, index);
    // The index of each table of the tree, by (schema, table): its own name in its schema.
    let mut names = vec![(
        (schema.to_owned(), table.to_owned()),
        (schema.to_owned(), index.to_owned()),
    )];
    builds.concurrent.push(
        Step::new(
            format!("make index {index} on {table} alone (valid once each partition has its own)"),
            format!(
                "CREATE {unique}INDEX {} ON ONLY {} {definition}",
                quote_ident(index),
                quote_qualified(schema, table)
            ),
        )
        .clearing(format!("DROP INDEX IF EXISTS {root}")),
    );
    builds.rollback.push(Step::new(
        format!("drop index {index} and the partitions' indexes attached to it"),
        format!("DROP INDEX IF EXISTS {root}"),
    ));
    for partition in &partitioning.partitions {
        let own = fit_identifier(format!("{index}_{}", partition.name));
        let on = quote_qualified(&partition.schema, &partition.name);
        let Some((_, parent)) = names.iter().find(|(table, _)| *table == partition.parent) else {
            return Err(format!(
                "partition {}.{} is listed before its parent {}.{}",
                partition.schema, partition.name, partition.parent.0, partition.parent.1
            ));
        };
        let attach = format!(
            "ALTER INDEX {} ATTACH PARTITION {}",
            quote_qualified(&parent.0, &parent.1),
            quote_qualified(&partition.schema, &own)
        );
        if partition.kind == PartitionKind::Partitioned {
            builds.concurrent.push(Step::new(
                format!(
                    "make index {own} on partition {} alone, attached",
                    partition.name
                ),
                format!(
                    "CREATE {unique}INDEX {} ON ONLY {on} {definition}; {attach}",
                    quote_ident(&own)
                ),
            ));
        } else {
            let drop_own = format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                quote_qualified(&partition.schema, &own)
            );
            builds.concurrent.push(
                Step::new(
                    format!(
                        "build index {own} on partition {} without blocking writes",
                        partition.name
                    ),
                    format!(
                        "CREATE {unique}INDEX CONCURRENTLY {} ON {on} {definition}",
                        quote_ident(&own)
                    ),
                )
                .clearing(drop_own.clone()),
            );
            builds.concurrent.push(Step::new(
                format!("attach index {own} to {}", parent.1),
                attach,
            ));
            builds.rollback.push(Step::new(
                format!("drop index {own} if a build left it unattached"),
                drop_own,
            ));
        }
        names.push((
            (partition.schema.clone(), partition.name.clone()),
            (partition.schema.clone(), own),
        ));
    }
    builds.built = names.into_iter().map(|(_, index)| index).collect();
    Ok(builds)
}

/// What is wrong with indexing `schema.table` if a partition is a foreign table, which can
/// have no index: the table's index would never become valid.
fn foreign_partition((schema, table): (&str, &str), partitioning: &Partitioning) -> Option<String> {
    let foreign = partitioning
        .partitions
        .iter()
        .find(|partition| partition.kind == PartitionKind::Foreign)?;
    Some(format!(
        "{schema}.{table} has partition {}.{}, a foreign table, which can have no index: the index on {table} would never become valid",
        foreign.schema, foreign.name
    ))
}

/// The steps of constraint `name` (`clause`: `UNIQUE` or `PRIMARY KEY`, then `columns`, the
/// parenthesised list as the contract names them) on `schema.table`, partitioned as
/// `partitioning`, made of its partitions': a unique index `<index>_<partition>` (`definition`
/// from `USING` on) built concurrently on each partition that holds rows; at complete, each
/// made its partition's constraint, then the table's added on `table_then` (the table as the
/// contract names it) over them, building nothing. The builds, and the contract's steps.
pub fn constraint_on_partitions(
    (schema, table): (&str, &str),
    partitioning: &Partitioning,
    index: &str,
    definition: &str,
    (name, clause, columns): (&str, &str, &str),
    table_then: &str,
) -> Result<(PartitionBuilds, Vec<Step>), String> {
    if let Some(problem) = foreign_partition((schema, table), partitioning) {
        return Err(problem);
    }
    let mut builds = PartitionBuilds::default();
    let mut contract = Vec::new();
    for leaf in partitioning
        .partitions
        .iter()
        .filter(|partition| partition.kind == PartitionKind::Leaf)
    {
        let own = fit_identifier(format!("{index}_{}", leaf.name));
        let on = quote_qualified(&leaf.schema, &leaf.name);
        let drop_own = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quote_qualified(&leaf.schema, &own)
        );
        builds.concurrent.push(
            Step::new(
                format!(
                    "build unique index {own} on partition {} for {name}, without blocking writes",
                    leaf.name
                ),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON {on} {definition}",
                    quote_ident(&own)
                ),
            )
            .clearing(drop_own.clone()),
        );
        builds
            .rollback
            .push(Step::new(format!("drop index {own}"), drop_own));
        builds.built.push((leaf.schema.clone(), own.clone()));
        contract.push(Step::new(
            format!("make {own} partition {}'s {clause}", leaf.name),
            format!(
                "ALTER TABLE {on} ADD CONSTRAINT {} {clause} USING INDEX {}",
                quote_ident(&own),
                quote_ident(&own)
            ),
        ));
    }
    contract.push(Step::new(
        format!("{clause} {name} of {table}, over its partitions'"),
        format!(
            "ALTER TABLE {table_then} ADD CONSTRAINT {} {clause} {columns}",
            quote_ident(name)
        ),
    ));
    Ok((builds, contract))
}

impl Deriver<'_> {
    /// Adds the steps that build index `index` on `managed`, partitioned as `partitioning`
    /// ([`index_on_partitions`]), and their undo.
    pub(super) fn build_on_partitions(
        &mut self,
        managed: &ManagedTable,
        partitioning: &Partitioning,
        index: &str,
        unique: &str,
        definition: &str,
    ) -> Result<(), MigrateError> {
        let builds = index_on_partitions(
            (&managed.schema, &managed.name),
            partitioning,
            index,
            unique,
            definition,
        )
        .map_err(|problem| self.refuse(problem))?;
        self.plan_steps.concurrent.extend(builds.concurrent);
        self.plan_steps.rollback_concurrent.extend(builds.rollback);
        self.plan_steps.built_indexes.extend(builds.built);
        Ok(())
    }

    /// Adds the steps of a unique constraint `name` over `columns` (physical, as they are now)
    /// on `managed`, partitioned as `partitioning` ([`constraint_on_partitions`]). Postgres
    /// makes a unique constraint on a partitioned table only with a build that blocks writes,
    /// unless each partition already has a matching one: it then takes theirs.
    pub(super) fn unique_on_partitions(
        &mut self,
        managed: &ManagedTable,
        partitioning: &Partitioning,
        name: &str,
        columns: &[String],
    ) -> Result<(), MigrateError> {
        let column_list = format!("({})", quoted_list(columns));
        self.probe_index(
            managed,
            Some(partitioning),
            name,
            "UNIQUE INDEX",
            &column_list,
        );
        let columns_then: Vec<String> = columns
            .iter()
            .map(|column| self.renamed_at_complete(managed, column))
            .collect();
        let (builds, contract) = constraint_on_partitions(
            (&managed.schema, &managed.name),
            partitioning,
            name,
            &column_list,
            (name, "UNIQUE", &format!("({})", quoted_list(&columns_then))),
            &self.table_at_complete(managed),
        )
        .map_err(|problem| self.refuse(problem))?;
        self.plan_steps.concurrent.extend(builds.concurrent);
        self.plan_steps.rollback_concurrent.extend(builds.rollback);
        self.plan_steps.built_indexes.extend(builds.built);
        // The table's constraint makes an index of its name at complete.
        self.plan_steps
            .built_indexes
            .push((managed.schema.clone(), name.to_owned()));
        self.plan_steps.complete.extend(contract);
        Ok(())
    }
}
