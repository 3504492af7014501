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

use serde::{Deserialize, Serialize};

use super::constraints::quoted_list;
use super::sql::fit_identifier;
use super::{Deriver, Step};
use crate::control::migrate::error::MigrateError;
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::introspect::{Partition, PartitionKind, Partitioning};
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
    /// What a partition created while the migration runs needs to be given its own index.
    pub partition_wise: Option<PartitionWiseIndex>,
    /// The same for a constraint made of its partitions'.
    pub partition_wise_constraint: Option<PartitionWiseConstraint>,
}

/// An index the migration builds on a partitioned table partition by partition, recorded in
/// the plan: a partition created while the migration runs (pg_partman's next month) has none
/// of it, and the run builds it one before the table's index is checked valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWiseIndex {
    pub schema: String,
    pub table: String,
    pub index: String,
    pub unique: bool,
    /// From `USING` on.
    pub definition: String,
}

impl PartitionWiseIndex {
    fn unique(&self) -> &'static str {
        if self.unique { "UNIQUE " } else { "" }
    }
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
    if let Some(problem) = foreign_partition((schema, table), partitioning.partitions.iter()) {
        return Err(problem);
    }
    let wise = PartitionWiseIndex {
        schema: schema.to_owned(),
        table: table.to_owned(),
        index: index.to_owned(),
        unique: !unique.is_empty(),
        definition: definition.to_owned(),
    };
    let mut builds = PartitionBuilds::default();
    let root = quote_qualified(schema, index);
    builds.concurrent.push(
        Step::new(
            format!("make index {index} on {table} alone (valid once each partition has its own)"),
            format!(
                "CREATE {unique}INDEX {} ON ONLY {} {definition}",
                quote_ident(index),
                quote_qualified(schema, table)
            ),
        )
        .clearing(format!("DROP INDEX IF EXISTS {root}"))
        .building(schema, index),
    );
    builds.rollback.push(Step::new(
        format!("drop index {index} and the partitions' indexes attached to it"),
        format!("DROP INDEX IF EXISTS {root}"),
    ));
    builds.built.push((schema.to_owned(), index.to_owned()));
    let indexed = vec![(
        (schema.to_owned(), table.to_owned()),
        (schema.to_owned(), index.to_owned()),
    )];
    index_partitions(&mut builds, indexed, partitioning.partitions.iter(), &wise)?;
    builds.partition_wise = Some(wise);
    Ok(builds)
}

/// The steps that give each partition of `index`'s table that has none of it (created since
/// the plan was made) its own: `indexed` pairs each table of the tree that has one, (schema,
/// name), with it. The problem, when one cannot have it.
pub fn index_new_partitions(
    index: &PartitionWiseIndex,
    partitioning: &Partitioning,
    indexed: Vec<((String, String), (String, String))>,
) -> Result<PartitionBuilds, String> {
    let missing: Vec<&Partition> = partitioning
        .partitions
        .iter()
        .filter(|partition| {
            !indexed
                .iter()
                .any(|((schema, table), _)| *schema == partition.schema && *table == partition.name)
        })
        .collect();
    if let Some(problem) = foreign_partition((&index.schema, &index.table), missing.iter().copied())
    {
        return Err(problem);
    }
    let mut builds = PartitionBuilds::default();
    index_partitions(&mut builds, indexed, missing.into_iter(), index)?;
    Ok(builds)
}

/// Adds to `builds` the steps that give each of `partitions` (parents before children) its
/// index of `index`, attached to its parent's; `indexed` has the index of each table that has
/// one, and gains each partition's.
fn index_partitions<'p>(
    builds: &mut PartitionBuilds,
    mut indexed: Vec<((String, String), (String, String))>,
    partitions: impl Iterator<Item = &'p Partition>,
    index: &PartitionWiseIndex,
) -> Result<(), String> {
    let (unique, definition) = (index.unique(), &index.definition);
    for partition in partitions {
        let own = fit_identifier(format!("{}_{}", index.index, partition.name));
        let on = quote_qualified(&partition.schema, &partition.name);
        let Some((_, parent)) = indexed.iter().find(|(table, _)| *table == partition.parent) else {
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
            builds.concurrent.push(
                Step::new(
                    format!(
                        "make index {own} on partition {} alone, attached",
                        partition.name
                    ),
                    format!(
                        "CREATE {unique}INDEX {} ON ONLY {on} {definition}; {attach}",
                        quote_ident(&own)
                    ),
                )
                .building(&partition.schema, &own)
                .on_partition(partition),
            );
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
                .clearing(drop_own.clone())
                .building(&partition.schema, &own)
                .on_partition(partition),
            );
            builds.concurrent.push(
                Step::new(format!("attach index {own} to {}", parent.1), attach)
                    .on_partition(partition),
            );
            builds.rollback.push(Step::new(
                format!("drop index {own} if a build left it unattached"),
                drop_own,
            ));
        }
        builds.built.push((partition.schema.clone(), own.clone()));
        indexed.push((
            (partition.schema.clone(), partition.name.clone()),
            (partition.schema.clone(), own),
        ));
    }
    Ok(())
}

/// What is wrong with indexing `schema.table` if a partition is a foreign table, which can
/// have no index: the table's index would never become valid.
fn foreign_partition<'p>(
    (schema, table): (&str, &str),
    mut partitions: impl Iterator<Item = &'p Partition>,
) -> Option<String> {
    let foreign = partitions.find(|partition| partition.kind == PartitionKind::Foreign)?;
    Some(format!(
        "{schema}.{table} has partition {}.{}, a foreign table, which can have no index: the index on {table} would never become valid",
        foreign.schema, foreign.name
    ))
}

/// A unique constraint the migration makes of its partitions' own indexes, recorded in the
/// plan: a partition created since the plan was made (pg_partman's next month) has none, and
/// the contract's constraint on the table built that partition's under a lock blocking its
/// reads and writes. The run, and `migrate complete` before the contract, build it one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWiseConstraint {
    pub schema: String,
    pub table: String,
    /// Each partition's index is named `<index>_<partition>`.
    pub index: String,
    /// The partitions' indexes' column list.
    pub definition: String,
    pub name: String,
    /// `UNIQUE` or `PRIMARY KEY`.
    pub clause: String,
    /// The description of the contract's step adding the table's constraint: each partition's
    /// comes before it.
    pub table_step: String,
    /// The columns of each partition's index the contract renames (from, to), once it is the
    /// partition's constraint: those Postgres named after a column that replaces an old one
    /// (`_vg_<version>_<column>`) when it built the index, which takes the old column's name.
    /// The table's index, made by the contract after that rename, has the new names already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed_columns: Vec<(String, String)>,
}

impl PartitionWiseConstraint {
    /// Adds to `builds` and `contract` the steps of `leaf`'s part: its index built
    /// concurrently (and its undo), made its constraint by the contract.
    fn add_leaf(&self, leaf: &Partition, builds: &mut PartitionBuilds, contract: &mut Vec<Step>) {
        let own = self.own_index(leaf);
        let on = quote_qualified(&leaf.schema, &leaf.name);
        let drop_own = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quote_qualified(&leaf.schema, &own)
        );
        builds.concurrent.push(
            Step::new(
                format!(
                    "build unique index {own} on partition {} for {}, without blocking writes",
                    leaf.name, self.name
                ),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON {on} {}",
                    quote_ident(&own),
                    self.definition
                ),
            )
            .clearing(drop_own.clone())
            .building(&leaf.schema, &own)
            .on_partition(leaf),
        );
        builds
            .rollback
            .push(Step::new(format!("drop index {own}"), drop_own));
        builds.built.push((leaf.schema.clone(), own.clone()));
        contract.push(
            Step::new(
                format!("make {own} partition {}'s {}", leaf.name, self.clause),
                format!(
                    "ALTER TABLE {on} ADD CONSTRAINT {} {} USING INDEX {}",
                    quote_ident(&own),
                    self.clause,
                    quote_ident(&own)
                ),
            )
            .on_partition(leaf),
        );
        for (from, to) in &self.renamed_columns {
            contract
                .push(Step::renaming_index_column(&leaf.schema, &own, from, to).on_partition(leaf));
        }
    }

    /// The name of `leaf`'s index (in `leaf`'s schema).
    pub fn own_index(&self, leaf: &Partition) -> String {
        fit_identifier(format!("{}_{}", self.index, leaf.name))
    }
}

/// The steps of constraint `name` (`clause`: `UNIQUE` or `PRIMARY KEY`, then `columns`, the
/// parenthesised list as the contract names them) on `schema.table`, partitioned as
/// `partitioning`, made of its partitions': a unique index `<index>_<partition>` (`definition`
/// from `USING` on) built concurrently on each partition that holds rows; at complete, each
/// made its partition's constraint, then the table's added on `table_then` (the table as the
/// contract names it) over them, building nothing; `renamed_columns`, the columns of each
/// partition's index renamed once it is the partition's constraint. The builds (with the
/// record that gives a partition created later its part), and the contract's steps.
pub fn constraint_on_partitions(
    (schema, table): (&str, &str),
    partitioning: &Partitioning,
    index: &str,
    definition: &str,
    (name, clause, columns): (&str, &str, &str),
    table_then: &str,
    renamed_columns: &[(String, String)],
) -> Result<(PartitionBuilds, Vec<Step>), String> {
    if let Some(problem) = foreign_partition((schema, table), partitioning.partitions.iter()) {
        return Err(problem);
    }
    let table_step = Step::new(
        format!("{clause} {name} of {table}, over its partitions'"),
        format!(
            "ALTER TABLE {table_then} ADD CONSTRAINT {} {clause} {columns}",
            quote_ident(name)
        ),
    );
    let wise = PartitionWiseConstraint {
        schema: schema.to_owned(),
        table: table.to_owned(),
        index: index.to_owned(),
        definition: definition.to_owned(),
        name: name.to_owned(),
        clause: clause.to_owned(),
        table_step: table_step.description.clone(),
        renamed_columns: renamed_columns.to_vec(),
    };
    let mut builds = PartitionBuilds::default();
    let mut contract = Vec::new();
    for leaf in partitioning
        .partitions
        .iter()
        .filter(|partition| partition.kind == PartitionKind::Leaf)
    {
        wise.add_leaf(leaf, &mut builds, &mut contract);
    }
    contract.push(table_step);
    builds.partition_wise_constraint = Some(wise);
    Ok((builds, contract))
}

/// The steps that give each of `leaves` (of `constraint`'s table) its part: the builds, and
/// the contract's steps, which go before the table's. The problem, when one cannot have it.
pub fn constrain_partitions(
    constraint: &PartitionWiseConstraint,
    leaves: &[&Partition],
) -> Result<(PartitionBuilds, Vec<Step>), String> {
    if let Some(problem) = foreign_partition(
        (&constraint.schema, &constraint.table),
        leaves.iter().copied(),
    ) {
        return Err(problem);
    }
    let mut builds = PartitionBuilds::default();
    let mut contract = Vec::new();
    for leaf in leaves {
        constraint.add_leaf(leaf, &mut builds, &mut contract);
    }
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
        self.plan_steps.partition_wise.extend(builds.partition_wise);
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
            // Built over columns that keep their names.
            &[],
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
        self.plan_steps
            .partition_wise_constraints
            .extend(builds.partition_wise_constraint);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(name: &str, parent: &str, kind: PartitionKind) -> Partition {
        Partition {
            schema: "public".into(),
            name: name.into(),
            parent: ("public".into(), parent.into()),
            kind,
        }
    }

    fn index(name: &str) -> (String, String) {
        ("public".into(), name.into())
    }

    #[test]
    fn a_new_partition_is_attached_to_its_parents_index_whatever_its_name() {
        let wise = PartitionWiseIndex {
            schema: "public".into(),
            table: "events".into(),
            index: "events_at".into(),
            unique: false,
            definition: "USING btree (at)".into(),
        };
        let partitioning = Partitioning {
            key: "RANGE (at)".into(),
            partitions: vec![
                partition("events_2026", "events", PartitionKind::Partitioned),
                partition("events_2026_a", "events_2026", PartitionKind::Leaf),
                partition("events_2026_b", "events_2026", PartitionKind::Leaf),
                partition("events_2027", "events", PartitionKind::Partitioned),
            ],
        };
        let indexed = vec![
            (("public".into(), "events".into()), index("events_at")),
            (
                ("public".into(), "events_2026".into()),
                index("renamed_by_hand"),
            ),
            (
                ("public".into(), "events_2026_a".into()),
                index("events_at_events_2026_a"),
            ),
        ];
        let builds = index_new_partitions(&wise, &partitioning, indexed).expect("builds");
        let sql: Vec<&str> = builds
            .concurrent
            .iter()
            .map(|step| step.sql.as_str())
            .collect();
        assert_eq!(
            sql,
            [
                r#"CREATE INDEX CONCURRENTLY "events_at_events_2026_b" ON "public"."events_2026_b" USING btree (at)"#,
                r#"ALTER INDEX "public"."renamed_by_hand" ATTACH PARTITION "public"."events_at_events_2026_b""#,
                r#"CREATE INDEX "events_at_events_2027" ON ONLY "public"."events_2027" USING btree (at); ALTER INDEX "public"."events_at" ATTACH PARTITION "public"."events_at_events_2027""#,
            ]
        );
        assert_eq!(
            builds.built,
            [
                index("events_at_events_2026_b"),
                index("events_at_events_2027")
            ]
        );
        assert!(builds.partition_wise.is_none());

        let foreign = Partitioning {
            partitions: vec![partition("events_remote", "events", PartitionKind::Foreign)],
            ..partitioning
        };
        let problem = index_new_partitions(&wise, &foreign, Vec::new()).expect_err("refused");
        assert!(
            problem.contains("events_remote, a foreign table"),
            "{problem}"
        );
    }
}
