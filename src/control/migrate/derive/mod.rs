//! Deriving a migration's plan: the new version's definition from the previous version's plus
//! the operations, and for every phase the SQL that changes the physical schema.
//!
//! The physical rules (docs/migrations.md has the reasoning):
//! - the expand phase is additive only: new columns are added nullable and without a default
//!   that would rewrite the table; NOT NULL, CHECK and FOREIGN KEY arrive as `NOT VALID`
//!   constraints, validated after the backfill; unique indexes are built `CONCURRENTLY` after
//!   the backfill;
//! - a change that the old version could violate (a new type, NOT NULL, a check, uniqueness, a
//!   foreign key) gives the new version a column of its own (`_vg_{version}_{column}`), kept in
//!   step by the sync triggers (`up` for writes at older versions, `down` for writes at the new
//!   one) and swapped in at complete;
//! - contract (complete) drops what only the retired version used and renames the physical
//!   schema into the new version's shape; rollback drops what expand added.
//!
//! Everything here is pure: the facts about the live schema come in as a [`ServerSnapshot`].
//! This file holds the plan and the walk over the operations; `parts` the plan's pieces;
//! `columns`, `tables` and `constraints` derive each kind of operation (`partitions` an index
//! or unique constraint on a partitioned table), `sql` turns fragments into statements,
//! `expression_reads` checks the new version's expressions against the contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod columns;
mod constraints;
mod contracted;
mod expression_reads;
mod partitions;
mod parts;
mod renames;
mod sql;
mod step;
mod tables;

use super::error::MigrateError;
use super::file::Migration;
use super::operation::{AddColumn, DropColumn, Operation};
use crate::control::views::definition::VersionDefinition;
use crate::control::views::introspect::{BaseTable, ServerSnapshot};
use crate::control::views::spec::{Column, ColumnSource, ManagedTable};

/// Prefix of the physical columns a migration adds for a changed column.
pub const NEW_COLUMN_PREFIX: &str = crate::model::identifier::MIGRATION_NAME_PREFIX;
/// What the name of the expand's empty copy of a table starts with, on which an index is
/// built first so that what cannot be built fails in the expand.
pub const PROBE_PREFIX: &str = "_vg_probe";

/// Everything a migration does, phase by phase, derived before anything runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationPlan {
    pub version: String,
    pub from: String,
    /// The new version's definition while the migration is live.
    pub definition: VersionDefinition,
    /// Additive DDL, one transaction, before the new version's views are created.
    pub expand: Vec<Step>,
    pub syncs: Vec<TableSync>,
    pub backfills: Vec<Backfill>,
    /// `VALIDATE CONSTRAINT`s, after the backfill, each in its own transaction.
    pub validate: Vec<Step>,
    /// `CREATE INDEX CONCURRENTLY`s, after the backfill, outside any transaction.
    pub concurrent: Vec<Step>,
    /// Other tables' foreign keys into a rebuilt key, added `NOT VALID` and validated once
    /// the key's index is built, each in its own transaction.
    #[serde(default)]
    pub referencing: Vec<Step>,
    /// The contract, one transaction (after the old version's views and triggers are gone).
    pub complete: Vec<Step>,
    /// `DROP INDEX CONCURRENTLY`s after the contract.
    pub complete_concurrent: Vec<Step>,
    pub renames: Vec<Rename>,
    /// Undoing the expand, one transaction (after the new version's views and triggers are gone).
    pub rollback: Vec<Step>,
    /// `DROP INDEX CONCURRENTLY`s undoing `concurrent`, before `rollback`.
    pub rollback_concurrent: Vec<Step>,
    /// Undoing `referencing`, before `rollback_concurrent` (the foreign keys hold the indexes).
    #[serde(default)]
    pub rollback_referencing: Vec<Step>,
    /// Old columns the contract replaces by new ones.
    #[serde(default)]
    pub replaced: Vec<Replaced>,
    /// Columns, indexes and constraints the operations drop.
    #[serde(default)]
    pub dropped: Vec<Dropped>,
    /// The indexes the migration makes, as (schema, name): a name must be free, since a
    /// concurrent build's undo (run before it, so that a killed run can build again, and by a
    /// rollback) drops whatever index has it.
    #[serde(default)]
    pub built_indexes: Vec<(String, String)>,
    /// The indexes built partition by partition, for the partitions created since the start.
    #[serde(default)]
    pub partition_wise: Vec<PartitionWiseIndex>,
    /// The unique constraints made of their partitions', for the partitions created since.
    #[serde(default)]
    pub partition_wise_constraints: Vec<PartitionWiseConstraint>,
    /// The physical columns the expand adds, as (schema, table, column).
    #[serde(default)]
    pub added_columns: Vec<(String, String, String)>,
    /// The partitions of the tables it adds columns to, at the start (`detached.rs`).
    #[serde(default)]
    pub partitions_at_start: Vec<PartitionAtStart>,
}

/// Derives the plan of `migration` from `from` (the previous version's definition) and the live
/// schema (which must hold every base table `from` names).
pub fn derive(
    migration: &Migration,
    from: &VersionDefinition,
    snapshot: &ServerSnapshot,
) -> Result<MigrationPlan, MigrateError> {
    let mut deriver = Deriver {
        migration,
        from,
        snapshot,
        definition: VersionDefinition {
            layout: from.layout,
            tables: from.tables.clone(),
            version: crate::control::views::spec::Version {
                name: migration.version.clone(),
                tables: from.version.tables.clone(),
            },
        },
        plan_steps: Steps::default(),
        syncs: BTreeMap::new(),
        filled: BTreeMap::new(),
        defaulted: BTreeMap::new(),
        backfills: BTreeMap::new(),
        added_columns: BTreeMap::new(),
        operation: String::new(),
    };
    for (index, operation) in migration.operations.iter().enumerate() {
        deriver.operation = format!("operation {} ({})", index + 1, operation.kind());
        deriver.apply(operation)?;
    }
    deriver.finish()
}

#[derive(Default)]
struct Steps {
    expand: Vec<Step>,
    validate: Vec<Step>,
    concurrent: Vec<Step>,
    complete: Vec<Step>,
    complete_concurrent: Vec<Step>,
    renames: Vec<Rename>,
    rollback: Vec<Step>,
    rollback_concurrent: Vec<Step>,
    replaced: Vec<Replaced>,
    dropped: Vec<Dropped>,
    built_indexes: Vec<(String, String)>,
    partition_wise: Vec<PartitionWiseIndex>,
    partition_wise_constraints: Vec<PartitionWiseConstraint>,
}

struct Deriver<'a> {
    migration: &'a Migration,
    from: &'a VersionDefinition,
    snapshot: &'a ServerSnapshot,
    definition: VersionDefinition,
    plan_steps: Steps,
    /// Per base table (schema, name): its sync assignments (up, down).
    syncs: BTreeMap<(String, String), (Vec<Assign>, Vec<Assign>)>,
    /// Per base table: the new columns standing in for a retyped column a sequence numbers.
    filled: BTreeMap<(String, String), Vec<String>>,
    /// Per base table: the new columns whose default computes what their `up` would.
    defaulted: BTreeMap<(String, String), Vec<String>>,
    backfills: BTreeMap<(String, String), Vec<Assign>>,
    /// Physical columns this migration adds, with their types, per base table.
    added_columns: BTreeMap<(String, String), Vec<(String, String)>>,
    operation: String,
}

impl Deriver<'_> {
    fn refuse(&self, problem: impl Into<String>) -> MigrateError {
        MigrateError::Refused {
            version: self.migration.version.clone(),
            operation: self.operation.clone(),
            problem: problem.into(),
        }
    }

    fn apply(&mut self, operation: &Operation) -> Result<(), MigrateError> {
        if let Some(table) = operation.table_changed_in_place() {
            self.refuse_table_inheritance(table)?;
        }
        match operation {
            Operation::AddColumn(op) => self.add_column(op),
            Operation::DropColumn(op) => {
                if let Some(column) = self.drop_column(op)? {
                    let (_, managed, _) = self.table(&op.table)?;
                    self.plan_steps.dropped.push(Dropped::Column {
                        schema: managed.schema,
                        table: managed.name,
                        column,
                    });
                }
                Ok(())
            }
            Operation::RenameColumn(op) => self.rename_column(op),
            Operation::AlterColumn(op) => self.alter_column(op),
            Operation::CreateTable(op) => self.create_table(op),
            Operation::DropTable(op) => self.drop_table(&op.table),
            Operation::RenameTable(op) => self.rename_table(&op.from, &op.to),
            Operation::CreateIndex(op) => self.create_index(op),
            Operation::DropIndex(op) => self.drop_index(op),
            Operation::AddConstraint(op) => self.add_constraint(op),
            Operation::DropConstraint(op) => self.drop_constraint(op),
            Operation::RenameConstraint(op) => self.rename_constraint(op),
            Operation::SetReplicaIdentity(op) => self.set_replica_identity(op),
            Operation::SplitColumn(op) => {
                for part in &op.into {
                    self.add_column(&AddColumn {
                        table: op.table.clone(),
                        column: part.column.clone(),
                        up: Some(part.up.clone()),
                    })?;
                }
                let dropped = self.drop_column(&DropColumn {
                    table: op.table.clone(),
                    column: op.column.clone(),
                    down: Some(op.down.clone()),
                })?;
                self.note_replaced(&op.table, dropped)
            }
            Operation::MergeColumns(op) => {
                self.add_column(&AddColumn {
                    table: op.table.clone(),
                    column: op.into.clone(),
                    up: Some(op.up.clone()),
                })?;
                for column in &op.columns {
                    let dropped = self.drop_column(&DropColumn {
                        table: op.table.clone(),
                        column: column.clone(),
                        down: op.down.get(column).cloned(),
                    })?;
                    self.note_replaced(&op.table, dropped)?;
                }
                Ok(())
            }
            Operation::RawSql(op) => {
                self.raw_sql(op);
                Ok(())
            }
        }
    }

    /// The physical columns behind the new version's `columns` of table `index`.
    fn physical_columns(
        &self,
        index: usize,
        table: &str,
        columns: &[String],
    ) -> Result<Vec<String>, MigrateError> {
        let version_columns = &self.definition.version.tables[index].columns;
        columns
            .iter()
            .map(
                |name| match version_columns.iter().find(|column| &column.name == name) {
                    Some(Column {
                        source: ColumnSource::Physical { base_column },
                        ..
                    }) => Ok(base_column.clone()),
                    Some(_) => Err(self.refuse(format!(
                        "column {name} is an expression; name its base columns"
                    ))),
                    None => Err(self.refuse(format!("table {table} has no column {name}"))),
                },
            )
            .collect()
    }

    /// The new version's table its clients call `name`, with its managed base table and what
    /// the server has for it.
    fn table(&self, name: &str) -> Result<(usize, ManagedTable, Option<BaseTable>), MigrateError> {
        let index = self
            .definition
            .version
            .tables
            .iter()
            .position(|table| table.name == name)
            .ok_or_else(|| {
                let known: Vec<_> = self
                    .definition
                    .version
                    .tables
                    .iter()
                    .map(|table| table.name.as_str())
                    .collect();
                self.refuse(format!(
                    "version {} has no table {name:?} (it has: {})",
                    self.migration.from,
                    known.join(", ")
                ))
            })?;
        let base = &self.definition.version.tables[index].base;
        let managed =
            self.definition.managed(base).cloned().ok_or_else(|| {
                self.refuse(format!("base table {base} is not in the definition"))
            })?;
        let live = self.snapshot.table(&managed.schema, &managed.name).cloned();
        Ok((index, managed, live))
    }

    fn live_table(&self, managed: &ManagedTable) -> Result<BaseTable, MigrateError> {
        self.snapshot
            .table(&managed.schema, &managed.name)
            .cloned()
            .ok_or_else(|| {
                if self.created_here(managed) {
                    return self.refuse(format!(
                        "table {} is created by this migration: give it its final columns in its create_table (later operations change only tables that exist before it)",
                        managed.name
                    ));
                }
                self.refuse(format!(
                    "base table {}.{} does not exist in the database",
                    managed.schema, managed.name
                ))
            })
    }

    fn key(
        &self,
        managed: &ManagedTable,
        live: &BaseTable,
    ) -> Result<Vec<(String, String)>, MigrateError> {
        // The backfill walks by the primary key where there is one, whatever key the spec
        // declares for the views' triggers: that one need not be unique or NOT NULL
        // (`preconditions.rs` checks it where the backfill must walk by it).
        let key = if live.primary_key.is_empty() {
            &managed.key
        } else {
            &live.primary_key
        };
        if key.is_empty() {
            return Err(self.refuse(format!(
                "table {}.{} has no primary key: the backfill walks rows by their key and cannot do so safely without one; add a primary key (or declare a unique, NOT NULL `key` in the spec) first",
                managed.schema, managed.name
            )));
        }
        key.iter()
            .map(|column| {
                live.column(column)
                    .map(|found| (column.clone(), found.type_name.clone()))
                    .ok_or_else(|| self.refuse(format!("key column {column} does not exist")))
            })
            .collect()
    }

    fn physical_taken(&self, managed: &ManagedTable, live: &BaseTable, name: &str) -> bool {
        live.column(name).is_some()
            || self
                .added_columns
                .get(&(managed.schema.clone(), managed.name.clone()))
                .is_some_and(|added| added.iter().any(|(column, _)| column == name))
    }

    /// Whether a column of the table has `name`, had it before an earlier operation of this
    /// migration dropped or renamed it, or is given it by one: a name that means a column.
    fn physical_name_claimed(&self, managed: &ManagedTable, live: &BaseTable, name: &str) -> bool {
        self.physical_taken(managed, live, name)
            || self.plan_steps.renames.iter().any(|rename| {
                matches!(rename, Rename::Column { schema, table, to, .. }
                    if *schema == managed.schema && *table == managed.name && to == name)
            })
    }

    fn note_added(&mut self, managed: &ManagedTable, column: &str, type_name: &str) {
        self.added_columns
            .entry((managed.schema.clone(), managed.name.clone()))
            .or_default()
            .push((column.to_owned(), type_name.to_owned()));
    }

    /// Records that the contract drops physical column `column` of the new version's table
    /// `table` in favour of this operation's new column(s).
    fn note_replaced(&mut self, table: &str, column: Option<String>) -> Result<(), MigrateError> {
        let Some(column) = column else {
            return Ok(());
        };
        let (_, managed, _) = self.table(table)?;
        self.plan_steps.replaced.push(Replaced {
            schema: managed.schema,
            table: managed.name,
            column,
            operation: self.operation.clone(),
            replacement: None,
            rebuilt: Vec::new(),
            dropped_along: Vec::new(),
        });
        Ok(())
    }

    fn note_defaulted(&mut self, managed: &ManagedTable, column: &str) {
        self.defaulted
            .entry((managed.schema.clone(), managed.name.clone()))
            .or_default()
            .push(column.to_owned());
    }

    fn sync_entry(&mut self, managed: &ManagedTable) -> &mut (Vec<Assign>, Vec<Assign>) {
        self.syncs
            .entry((managed.schema.clone(), managed.name.clone()))
            .or_default()
    }

    fn backfill_entry(&mut self, managed: &ManagedTable) -> &mut Vec<Assign> {
        self.backfills
            .entry((managed.schema.clone(), managed.name.clone()))
            .or_default()
    }

    fn finish(self) -> Result<MigrationPlan, MigrateError> {
        expression_reads::refuse_reads_of_contracted(
            &self.migration.version,
            &self.definition,
            &self.plan_steps,
        )?;
        let from_map = |schema: &str, table: &str| column_map(self.from, schema, table);
        let to_map = |schema: &str, table: &str| column_map(&self.definition, schema, table);
        let syncs: Vec<TableSync> = self
            .syncs
            .iter()
            .map(|((schema, table), (up, down))| TableSync {
                schema: schema.clone(),
                table: table.clone(),
                up: up.clone(),
                up_columns: from_map(schema, table),
                down: down.clone(),
                down_columns: to_map(schema, table),
                filled: self
                    .filled
                    .get(&(schema.clone(), table.clone()))
                    .cloned()
                    .unwrap_or_default(),
                defaulted: self
                    .defaulted
                    .get(&(schema.clone(), table.clone()))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        for sync in &syncs {
            sql::refuse_untranslatable(&self.migration.version, "up", &sync.up, &sync.up_columns)?;
            sql::refuse_untranslatable(
                &self.migration.version,
                "down",
                &sync.down,
                &sync.down_columns,
            )?;
        }
        let mut backfills = Vec::new();
        for ((schema, table), assigns) in &self.backfills {
            let managed = ManagedTable {
                schema: schema.clone(),
                name: table.clone(),
                key: self
                    .from
                    .managed(table)
                    .map(|managed| managed.key.clone())
                    .unwrap_or_default(),
            };
            let live = self.live_table(&managed)?;
            backfills.push(Backfill {
                schema: schema.clone(),
                table: table.clone(),
                key: self.key(&managed, &live)?,
                assigns: assigns.clone(),
                columns: from_map(schema, table),
            });
        }
        let mut rollback = self.plan_steps.rollback;
        // Drop what was added last first (a column's constraints go with it).
        rollback.reverse();
        Ok(MigrationPlan {
            version: self.migration.version.clone(),
            from: self.migration.from.clone(),
            definition: self.definition,
            expand: self.plan_steps.expand,
            syncs,
            backfills,
            validate: self.plan_steps.validate,
            concurrent: self.plan_steps.concurrent,
            referencing: Vec::new(),
            complete: self.plan_steps.complete,
            complete_concurrent: self.plan_steps.complete_concurrent,
            renames: self.plan_steps.renames,
            rollback,
            rollback_concurrent: self.plan_steps.rollback_concurrent,
            rollback_referencing: Vec::new(),
            replaced: self.plan_steps.replaced,
            dropped: self.plan_steps.dropped,
            built_indexes: self.plan_steps.built_indexes,
            partition_wise: self.plan_steps.partition_wise,
            partition_wise_constraints: self.plan_steps.partition_wise_constraints,
            added_columns: (self.added_columns.iter())
                .flat_map(|((schema, table), added)| {
                    added
                        .iter()
                        .map(|(column, _)| (schema.clone(), table.clone(), column.clone()))
                })
                .collect(),
            partitions_at_start: Vec::new(),
        })
    }
}

/// The logical names `definition` gives the physical columns of base table `schema.table`
/// (physical columns only: expressions have nothing to read in a trigger).
fn column_map(definition: &VersionDefinition, schema: &str, table: &str) -> ColumnMap {
    let Some(managed) = definition
        .tables
        .iter()
        .find(|managed| managed.schema == schema && managed.name == table)
    else {
        return Vec::new();
    };
    definition
        .version
        .tables
        .iter()
        .filter(|version_table| version_table.base == managed.name)
        .flat_map(|version_table| &version_table.columns)
        .filter_map(|column| match &column.source {
            ColumnSource::Physical { base_column } => {
                Some((column.name.clone(), base_column.clone()))
            }
            ColumnSource::Expression { .. } => None,
        })
        .collect()
}

pub use partitions::{
    PartitionBuilds, PartitionWiseConstraint, PartitionWiseIndex, constrain_partitions,
    constraint_on_partitions, index_new_partitions, index_on_partitions,
};
pub use parts::{Assign, Backfill, ColumnMap, Dropped, Rename, Replaced, Replacement, TableSync};
pub use renames::{rename_physical, rename_table_name};
pub use sql::{fit_identifier, mentions, over_physical, translatable};
pub use step::{IndexColumnRename, OnPartition, PartitionAtStart, Step};
