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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::MigrateError;
use super::file::{
    AddColumn, AddConstraint, AlterColumn, ColumnDefinition, ConstraintKind, CreateIndex,
    CreateTable, DropColumn, ForeignKey, Migration, Operation, RawSql, RenameColumn,
};
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::definition::VersionDefinition;
use crate::control::views::introspect::{BaseTable, ServerSnapshot};
use crate::control::views::spec::{
    Column, ColumnSource, DEFAULT_SCHEMA, MAX_IDENTIFIER_BYTES, ManagedTable, VersionTable,
};

/// Prefix of the physical columns a migration adds for a changed column.
pub const NEW_COLUMN_PREFIX: &str = "_vg_";

/// One SQL statement of a phase, with what it does in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub description: String,
    pub sql: String,
}

impl Step {
    fn new(description: impl Into<String>, sql: impl Into<String>) -> Self {
        Step {
            description: description.into(),
            sql: sql.into(),
        }
    }
}

/// One column a sync trigger (or the backfill) computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    /// The physical column written.
    pub target: String,
    /// SQL over the logical column names of the side it reads from.
    pub expression: String,
}

/// The logical names one side of a table sees, and the physical columns behind them.
pub type ColumnMap = Vec<(String, String)>;

/// What keeps one base table's two representations in step while the migration is live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSync {
    pub schema: String,
    pub table: String,
    /// Columns written for writers at the previous version or older (and direct writers).
    pub up: Vec<Assign>,
    /// The previous version's names for the table's columns, which `up` reads.
    pub up_columns: ColumnMap,
    /// Columns written for writers at the new version or newer.
    pub down: Vec<Assign>,
    /// The new version's names for the table's columns, which `down` reads.
    pub down_columns: ColumnMap,
}

/// Existing rows of one table to fill before the new version goes live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub schema: String,
    pub table: String,
    /// The primary key: physical names and their types, walked in order.
    pub key: Vec<(String, String)>,
    pub assigns: Vec<Assign>,
    /// The previous version's names, which the assignments read.
    pub columns: ColumnMap,
}

/// A physical rename done at complete; the remaining versions' definitions follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rename {
    Column {
        schema: String,
        table: String,
        from: String,
        to: String,
    },
    Table {
        schema: String,
        from: String,
        to: String,
    },
}

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
    /// The contract, one transaction (after the old version's views and triggers are gone).
    pub complete: Vec<Step>,
    /// `DROP INDEX CONCURRENTLY`s after the contract.
    pub complete_concurrent: Vec<Step>,
    pub renames: Vec<Rename>,
    /// Undoing the expand, one transaction (after the new version's views and triggers are gone).
    pub rollback: Vec<Step>,
    /// `DROP INDEX CONCURRENTLY`s undoing `concurrent`, before `rollback`.
    pub rollback_concurrent: Vec<Step>,
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
}

struct Deriver<'a> {
    migration: &'a Migration,
    from: &'a VersionDefinition,
    snapshot: &'a ServerSnapshot,
    definition: VersionDefinition,
    plan_steps: Steps,
    /// Per base table (schema, name): its sync assignments (up, down).
    syncs: BTreeMap<(String, String), (Vec<Assign>, Vec<Assign>)>,
    backfills: BTreeMap<(String, String), Vec<Assign>>,
    /// Physical columns this migration adds, per base table.
    added_columns: BTreeMap<(String, String), Vec<String>>,
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
        match operation {
            Operation::AddColumn(op) => self.add_column(op),
            Operation::DropColumn(op) => self.drop_column(op),
            Operation::RenameColumn(op) => self.rename_column(op),
            Operation::AlterColumn(op) => self.alter_column(op),
            Operation::CreateTable(op) => self.create_table(op),
            Operation::DropTable(op) => self.drop_table(&op.table),
            Operation::RenameTable(op) => self.rename_table(&op.from, &op.to),
            Operation::CreateIndex(op) => self.create_index(op),
            Operation::DropIndex(op) => {
                let schema = op.schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
                self.plan_steps.complete_concurrent.push(Step::new(
                    format!("drop index {schema}.{}", op.name),
                    format!(
                        "DROP INDEX CONCURRENTLY IF EXISTS {}",
                        quote_qualified(schema, &op.name)
                    ),
                ));
                Ok(())
            }
            Operation::AddConstraint(op) => self.add_constraint(op),
            Operation::DropConstraint(op) => {
                let (_, managed, _) = self.table(&op.table)?;
                self.plan_steps.complete.push(Step::new(
                    format!("drop constraint {}", op.name),
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                        quote_qualified(&managed.schema, &managed.name),
                        quote_ident(&op.name)
                    ),
                ));
                Ok(())
            }
            Operation::SplitColumn(op) => {
                for part in &op.into {
                    self.add_column(&AddColumn {
                        table: op.table.clone(),
                        column: part.column.clone(),
                        up: Some(part.up.clone()),
                    })?;
                }
                self.drop_column(&DropColumn {
                    table: op.table.clone(),
                    column: op.column.clone(),
                    down: Some(op.down.clone()),
                })
            }
            Operation::MergeColumns(op) => {
                self.add_column(&AddColumn {
                    table: op.table.clone(),
                    column: op.into.clone(),
                    up: Some(op.up.clone()),
                })?;
                for column in &op.columns {
                    self.drop_column(&DropColumn {
                        table: op.table.clone(),
                        column: column.clone(),
                        down: op.down.get(column).cloned(),
                    })?;
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

    fn add_constraint(&mut self, op: &AddConstraint) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let table = quote_qualified(&managed.schema, &managed.name);
        let name = quote_ident(&op.name);
        let physical = self.physical_columns(index, &op.table, &op.columns)?;
        let column_list = physical
            .iter()
            .map(|column| quote_ident(column))
            .collect::<Vec<_>>()
            .join(", ");
        match op.kind {
            ConstraintKind::Check => {
                let names: Vec<(String, String)> = self.definition.version.tables[index]
                    .columns
                    .iter()
                    .filter_map(|column| match &column.source {
                        ColumnSource::Physical { base_column } => {
                            Some((column.name.clone(), base_column.clone()))
                        }
                        ColumnSource::Expression { .. } => None,
                    })
                    .collect();
                let check = over_physical(op.check.as_deref().unwrap_or_default(), &names);
                self.plan_steps.expand.push(Step::new(
                    format!(
                        "check {} for new rows, validated after the backfill",
                        op.name
                    ),
                    format!("ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check}) NOT VALID"),
                ));
                self.plan_steps
                    .validate
                    .push(validate_step(&table, &op.name));
                self.plan_steps.rollback.push(Step::new(
                    format!("drop constraint {}", op.name),
                    format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"),
                ));
            }
            ConstraintKind::ForeignKey => {
                let references = op
                    .references
                    .as_ref()
                    .ok_or_else(|| self.refuse("a foreign key needs `references`"))?;
                let target = quote_qualified(
                    references.schema.as_deref().unwrap_or(&managed.schema),
                    &references.table,
                );
                let target_columns = references
                    .columns
                    .iter()
                    .map(|column| quote_ident(column))
                    .collect::<Vec<_>>()
                    .join(", ");
                let on_delete = references
                    .on_delete
                    .map(|action| format!(" ON DELETE {}", action.sql()))
                    .unwrap_or_default();
                self.plan_steps.expand.push(Step::new(
                    format!("foreign key {} for new rows, validated after the backfill", op.name),
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column_list}) REFERENCES {target} ({target_columns}){on_delete} NOT VALID"
                    ),
                ));
                self.plan_steps
                    .validate
                    .push(validate_step(&table, &op.name));
                self.plan_steps.rollback.push(Step::new(
                    format!("drop constraint {}", op.name),
                    format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"),
                ));
            }
            ConstraintKind::Unique => {
                self.plan_steps.concurrent.push(Step::new(
                    format!("unique index {} built without blocking writes", op.name),
                    format!("CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({column_list})"),
                ));
                self.plan_steps.rollback_concurrent.push(Step::new(
                    format!("drop the unique index {}", op.name),
                    format!(
                        "DROP INDEX CONCURRENTLY IF EXISTS {}",
                        quote_qualified(&managed.schema, &op.name)
                    ),
                ));
                self.plan_steps.complete.push(Step::new(
                    format!("turn the unique index {} into a constraint", op.name),
                    format!("ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"),
                ));
            }
        }
        Ok(())
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
        let key = if managed.key.is_empty() {
            &live.primary_key
        } else {
            &managed.key
        };
        if key.is_empty() {
            return Err(self.refuse(format!(
                "table {}.{} has no primary key: the backfill walks rows by their key and cannot do so safely without one; add a primary key (or declare `key` in the spec) first",
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
                .is_some_and(|added| added.iter().any(|column| column == name))
    }

    fn note_added(&mut self, managed: &ManagedTable, column: &str) {
        self.added_columns
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

    /// Constraints of a new physical column: NOT NULL and CHECK and FOREIGN KEY as NOT VALID
    /// constraints validated after the backfill, uniqueness as an index built concurrently.
    #[allow(clippy::too_many_arguments)]
    fn column_constraints(
        &mut self,
        managed: &ManagedTable,
        physical: &str,
        logical: &str,
        not_null: bool,
        check: Option<&str>,
        unique: bool,
        references: Option<&ForeignKey>,
    ) -> Result<(), MigrateError> {
        let table = quote_qualified(&managed.schema, &managed.name);
        if not_null {
            let name = self.constraint_name(&managed.name, logical, "not_null")?;
            self.plan_steps.expand.push(Step::new(
                format!(
                    "NOT NULL on {logical}, checked for new rows now, validated after the backfill"
                ),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
                    quote_ident(&name),
                    quote_ident(physical)
                ),
            ));
            self.plan_steps.validate.push(validate_step(&table, &name));
            self.plan_steps.complete.push(Step::new(
                format!("make {logical} NOT NULL (the validated check spares a table scan)"),
                format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                    quote_ident(physical)
                ),
            ));
            self.plan_steps.complete.push(Step::new(
                format!("drop the check that stood in for NOT NULL on {logical}"),
                format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote_ident(&name)),
            ));
        }
        if let Some(check) = check {
            let name = self.constraint_name(&managed.name, logical, "check")?;
            self.plan_steps.expand.push(Step::new(
                format!("CHECK on {logical}, validated after the backfill"),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({}) NOT VALID",
                    quote_ident(&name),
                    check_over_physical(check, logical, physical)
                ),
            ));
            self.plan_steps.validate.push(validate_step(&table, &name));
        }
        if let Some(references) = references {
            let name = self.constraint_name(&managed.name, logical, "fkey")?;
            let target = quote_qualified(
                references.schema.as_deref().unwrap_or(&managed.schema),
                &references.table,
            );
            let on_delete = references
                .on_delete
                .map(|action| format!(" ON DELETE {}", action.sql()))
                .unwrap_or_default();
            self.plan_steps.expand.push(Step::new(
                format!("foreign key on {logical}, validated after the backfill"),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {target} ({}){on_delete} NOT VALID",
                    quote_ident(&name),
                    quote_ident(physical),
                    quote_ident(&references.column)
                ),
            ));
            self.plan_steps.validate.push(validate_step(&table, &name));
        }
        if unique {
            let index = self.constraint_name(&managed.name, logical, "key")?;
            let quoted_index = quote_qualified(&managed.schema, &index);
            self.plan_steps.concurrent.push(Step::new(
                format!("unique index on {logical}, built without blocking writes"),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
                    quote_ident(&index),
                    quote_ident(physical)
                ),
            ));
            self.plan_steps.rollback_concurrent.push(Step::new(
                format!("drop the unique index on {logical}"),
                format!("DROP INDEX CONCURRENTLY IF EXISTS {quoted_index}"),
            ));
            self.plan_steps.complete.push(Step::new(
                format!("turn the unique index on {logical} into a constraint"),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} UNIQUE USING INDEX {}",
                    quote_ident(&index),
                    quote_ident(&index)
                ),
            ));
        }
        Ok(())
    }

    fn constraint_name(
        &self,
        table: &str,
        column: &str,
        suffix: &str,
    ) -> Result<String, MigrateError> {
        let name = format!("{table}_{column}_{suffix}");
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(self.refuse(format!(
                "constraint name {name:?} would be longer than {MAX_IDENTIFIER_BYTES} bytes"
            )));
        }
        Ok(name)
    }

    fn add_column(&mut self, op: &AddColumn) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let live = self.live_table(&managed)?;
        let column = &op.column;
        if self.definition.version.tables[index]
            .columns
            .iter()
            .any(|existing| existing.name == column.name)
        {
            return Err(self.refuse(format!(
                "version {} already has a column {}",
                self.migration.from, column.name
            )));
        }
        if self.physical_taken(&managed, &live, &column.name) {
            return Err(self.refuse(format!(
                "base table {}.{} already has a column {} (hidden from version {}); pick another name or map it with a spec",
                managed.schema, managed.name, column.name, self.migration.from
            )));
        }
        let table = quote_qualified(&managed.schema, &managed.name);
        let physical = column.name.clone();
        self.plan_steps.expand.push(Step::new(
            format!(
                "add column {} to {}.{} (nullable, no table rewrite)",
                column.name, managed.schema, managed.name
            ),
            format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                quote_ident(&physical),
                column.sql_type
            ),
        ));
        if let Some(default) = &column.default {
            self.plan_steps.expand.push(Step::new(
                format!("default for {} on new rows", column.name),
                format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                    quote_ident(&physical)
                ),
            ));
        }
        self.note_added(&managed, &physical);
        self.column_constraints(
            &managed,
            &physical,
            &column.name,
            !column.nullable,
            column.check.as_deref(),
            column.unique,
            column.references.as_ref(),
        )?;
        if let Some(up) = &op.up {
            let assign = Assign {
                target: physical.clone(),
                expression: up.clone(),
            };
            self.sync_entry(&managed).0.push(assign.clone());
            self.backfill_entry(&managed).push(assign);
        } else if let Some(default) = &column.default {
            // Older versions' inserts get the base default; existing rows get it from the backfill.
            self.backfill_entry(&managed).push(Assign {
                target: physical.clone(),
                expression: default.clone(),
            });
        }
        self.plan_steps.rollback.push(Step::new(
            format!("drop column {}", column.name),
            format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                quote_ident(&physical)
            ),
        ));
        self.definition.version.tables[index].columns.push(Column {
            name: column.name.clone(),
            source: ColumnSource::Physical {
                base_column: physical,
            },
            default: None,
        });
        Ok(())
    }

    fn drop_column(&mut self, op: &DropColumn) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let live = self.live_table(&managed)?;
        let columns = &mut self.definition.version.tables[index].columns;
        let Some(position) = columns.iter().position(|column| column.name == op.column) else {
            return Err(self.refuse(format!("table {} has no column {}", op.table, op.column)));
        };
        let removed = columns.remove(position);
        let ColumnSource::Physical { base_column } = removed.source else {
            // An expression column has nothing physical of its own to drop.
            return Ok(());
        };
        let base = live.column(&base_column);
        let needs_value = base.is_some_and(|base| base.not_null && base.default.is_none());
        match &op.down {
            Some(down) => {
                let assign = Assign {
                    target: base_column.clone(),
                    expression: down.clone(),
                };
                self.sync_entry(&managed).1.push(assign);
            }
            None if needs_value => {
                return Err(self.refuse(format!(
                    "column {} is NOT NULL without a default, so rows the new version inserts need a value for older versions: give `down`",
                    op.column
                )));
            }
            None => {}
        }
        let table = quote_qualified(&managed.schema, &managed.name);
        self.plan_steps.complete.push(Step::new(
            format!("drop column {} (only older versions used it)", op.column),
            format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                quote_ident(&base_column)
            ),
        ));
        Ok(())
    }

    fn rename_column(&mut self, op: &RenameColumn) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let columns = &mut self.definition.version.tables[index].columns;
        if columns.iter().any(|column| column.name == op.to) {
            return Err(self.refuse(format!("table {} already has a column {}", op.table, op.to)));
        }
        let Some(column) = columns.iter_mut().find(|column| column.name == op.from) else {
            return Err(self.refuse(format!("table {} has no column {}", op.table, op.from)));
        };
        column.name = op.to.clone();
        if let ColumnSource::Physical { base_column } = &column.source
            && *base_column == op.from
        {
            let from = base_column.clone();
            self.physical_rename(&managed, &from, &op.to)?;
        }
        Ok(())
    }

    /// Renames a physical column at complete, unless another column already has the name.
    fn physical_rename(
        &mut self,
        managed: &ManagedTable,
        from: &str,
        to: &str,
    ) -> Result<(), MigrateError> {
        let live = self.live_table(managed)?;
        if self.physical_taken(managed, &live, to) {
            // The name is in use in the base table (by a column older versions see): the new
            // version keeps reading `from` under its new name, and nothing is renamed.
            return Ok(());
        }
        let table = quote_qualified(&managed.schema, &managed.name);
        self.plan_steps.complete.push(Step::new(
            format!("rename column {from} to {to}"),
            format!(
                "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                quote_ident(from),
                quote_ident(to)
            ),
        ));
        self.plan_steps.renames.push(Rename::Column {
            schema: managed.schema.clone(),
            table: managed.name.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
        });
        Ok(())
    }

    fn alter_column(&mut self, op: &AlterColumn) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let live = self.live_table(&managed)?;
        let new_name = op.rename_to.clone().unwrap_or_else(|| op.column.clone());
        let table_columns = &self.definition.version.tables[index].columns;
        let Some(position) = table_columns
            .iter()
            .position(|column| column.name == op.column)
        else {
            return Err(self.refuse(format!("table {} has no column {}", op.table, op.column)));
        };
        if new_name != op.column && table_columns.iter().any(|column| column.name == new_name) {
            return Err(self.refuse(format!(
                "table {} already has a column {new_name}",
                op.table
            )));
        }
        let ColumnSource::Physical { base_column } = table_columns[position].source.clone() else {
            return Err(self.refuse(format!(
                "column {} is an expression in version {}; only physical columns can be altered",
                op.column, self.migration.from
            )));
        };
        let old = live
            .column(&base_column)
            .cloned()
            .ok_or_else(|| self.refuse(format!("base column {base_column} does not exist")))?;
        let table = quote_qualified(&managed.schema, &managed.name);

        if op.needs_new_column() || op.nullable == Some(true) && old.not_null {
            let physical = format!(
                "{NEW_COLUMN_PREFIX}{}_{}",
                self.migration.version, base_column
            );
            if physical.len() > MAX_IDENTIFIER_BYTES {
                return Err(self.refuse(format!(
                    "the new version's column {physical:?} would be longer than {MAX_IDENTIFIER_BYTES} bytes; use a shorter version or column name"
                )));
            }
            if self.physical_taken(&managed, &live, &physical) {
                return Err(self.refuse(format!("base column {physical} already exists")));
            }
            let sql_type = op.sql_type.clone().unwrap_or_else(|| old.type_name.clone());
            let not_null = op.nullable.map_or(old.not_null, |nullable| !nullable);
            if old.not_null && !not_null && op.down.is_none() {
                return Err(self.refuse(format!(
                    "column {} becomes nullable, but older versions need a value for it: give `down` (e.g. COALESCE({new_name}, …))",
                    op.column
                )));
            }
            self.plan_steps.expand.push(Step::new(
                format!("add {physical}, the new version's {new_name}"),
                format!(
                    "ALTER TABLE {table} ADD COLUMN {} {sql_type}",
                    quote_ident(&physical)
                ),
            ));
            let default = op
                .default
                .clone()
                .or_else(|| (!op.drop_default).then(|| old.default.clone()).flatten());
            if let Some(default) = &default {
                self.plan_steps.expand.push(Step::new(
                    format!("default for {physical}"),
                    format!(
                        "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                        quote_ident(&physical)
                    ),
                ));
            }
            self.note_added(&managed, &physical);
            self.column_constraints(
                &managed,
                &physical,
                &new_name,
                not_null,
                op.check.as_deref(),
                op.unique == Some(true),
                op.references.as_ref(),
            )?;
            let up = Assign {
                target: physical.clone(),
                expression: op.up.clone().unwrap_or_else(|| quote_ident(&op.column)),
            };
            self.sync_entry(&managed).0.push(up.clone());
            self.backfill_entry(&managed).push(up);
            self.sync_entry(&managed).1.push(Assign {
                target: base_column.clone(),
                expression: op.down.clone().unwrap_or_else(|| quote_ident(&new_name)),
            });
            self.plan_steps.complete.push(Step::new(
                format!("drop the old {} (only older versions used it)", op.column),
                format!(
                    "ALTER TABLE {table} DROP COLUMN {}",
                    quote_ident(&base_column)
                ),
            ));
            self.plan_steps.rollback.push(Step::new(
                format!("drop {physical}"),
                format!(
                    "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                    quote_ident(&physical)
                ),
            ));
            let column = &mut self.definition.version.tables[index].columns[position];
            column.name = new_name.clone();
            column.source = ColumnSource::Physical {
                base_column: physical.clone(),
            };
            // The old column is gone by then, so its name is free for the new one.
            self.plan_steps.complete.push(Step::new(
                format!("rename {physical} to {new_name}"),
                format!(
                    "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                    quote_ident(&physical),
                    quote_ident(&new_name)
                ),
            ));
            self.plan_steps.renames.push(Rename::Column {
                schema: managed.schema.clone(),
                table: managed.name.clone(),
                from: physical,
                to: new_name,
            });
            return Ok(());
        }

        // Changes the old version cannot violate: a default, a name.
        let column = &mut self.definition.version.tables[index].columns[position];
        column.name = new_name.clone();
        if let Some(default) = &op.default {
            column.default = Some(default.clone());
            self.plan_steps.complete.push(Step::new(
                format!("default of {new_name} for every writer"),
                format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                    quote_ident(&base_column)
                ),
            ));
        }
        if op.drop_default {
            column.default = Some("NULL".to_owned());
            self.plan_steps.complete.push(Step::new(
                format!("drop the default of {new_name}"),
                format!(
                    "ALTER TABLE {table} ALTER COLUMN {} DROP DEFAULT",
                    quote_ident(&base_column)
                ),
            ));
        }
        if op.nullable == Some(true) {
            // Already nullable: nothing to do.
        }
        if new_name != op.column && base_column == op.column {
            self.physical_rename(&managed, &base_column, &new_name)?;
        }
        Ok(())
    }

    fn create_table(&mut self, op: &CreateTable) -> Result<(), MigrateError> {
        let schema = op
            .schema
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        if self
            .definition
            .version
            .tables
            .iter()
            .any(|table| table.name == op.table)
            || self
                .definition
                .tables
                .iter()
                .any(|table| table.name == op.table)
        {
            return Err(self.refuse(format!(
                "table {} already exists in version {}",
                op.table, self.migration.from
            )));
        }
        let table = quote_qualified(&schema, &op.table);
        let mut definitions: Vec<String> = op.columns.iter().map(column_sql).collect();
        let key: Vec<String> = op
            .columns
            .iter()
            .filter(|column| column.primary_key)
            .map(|column| quote_ident(&column.name))
            .collect();
        definitions.push(format!("PRIMARY KEY ({})", key.join(", ")));
        self.plan_steps.expand.push(Step::new(
            format!("create table {schema}.{}", op.table),
            format!(
                "CREATE TABLE {table} (\n    {}\n)",
                definitions.join(",\n    ")
            ),
        ));
        self.plan_steps.rollback.push(Step::new(
            format!("drop table {schema}.{}", op.table),
            format!("DROP TABLE IF EXISTS {table}"),
        ));
        self.definition.tables.push(ManagedTable {
            schema,
            name: op.table.clone(),
            key: op
                .columns
                .iter()
                .filter(|column| column.primary_key)
                .map(|column| column.name.clone())
                .collect(),
        });
        self.definition.version.tables.push(VersionTable {
            base: op.table.clone(),
            name: op.table.clone(),
            columns: op
                .columns
                .iter()
                .map(|column| Column {
                    name: column.name.clone(),
                    source: ColumnSource::Physical {
                        base_column: column.name.clone(),
                    },
                    default: None,
                })
                .collect(),
            hidden_defaults: BTreeMap::new(),
        });
        Ok(())
    }

    fn drop_table(&mut self, name: &str) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(name)?;
        self.definition.version.tables.remove(index);
        let still_used = self
            .definition
            .version
            .tables
            .iter()
            .any(|table| table.base == managed.name);
        if !still_used {
            self.definition
                .tables
                .retain(|table| table.name != managed.name);
            self.plan_steps.complete.push(Step::new(
                format!(
                    "drop table {}.{} (only older versions used it)",
                    managed.schema, managed.name
                ),
                format!(
                    "DROP TABLE IF EXISTS {}",
                    quote_qualified(&managed.schema, &managed.name)
                ),
            ));
        }
        Ok(())
    }

    fn rename_table(&mut self, from: &str, to: &str) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(from)?;
        if self
            .definition
            .version
            .tables
            .iter()
            .any(|table| table.name == to)
        {
            return Err(self.refuse(format!("version already has a table {to}")));
        }
        self.definition.version.tables[index].name = to.to_owned();
        let name_free = !self.definition.tables.iter().any(|table| table.name == to)
            && self.snapshot.table(&managed.schema, to).is_none();
        if managed.name == from && name_free {
            self.plan_steps.complete.push(Step::new(
                format!("rename table {from} to {to}"),
                format!(
                    "ALTER TABLE {} RENAME TO {}",
                    quote_qualified(&managed.schema, from),
                    quote_ident(to)
                ),
            ));
            self.plan_steps.renames.push(Rename::Table {
                schema: managed.schema.clone(),
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        Ok(())
    }

    fn create_index(&mut self, op: &CreateIndex) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let physical: Vec<String> = self
            .physical_columns(index, &op.table, &op.columns)?
            .iter()
            .map(|column| quote_ident(column))
            .collect();
        let unique = if op.unique { "UNIQUE " } else { "" };
        let method = op.method.as_deref().unwrap_or("btree");
        let predicate = op
            .predicate
            .as_ref()
            .map(|predicate| format!(" WHERE ({predicate})"))
            .unwrap_or_default();
        let qualified = quote_qualified(&managed.schema, &op.name);
        self.plan_steps.concurrent.push(Step::new(
            format!("build index {} without blocking writes", op.name),
            format!(
                "CREATE {unique}INDEX CONCURRENTLY {} ON {} USING {method} ({}){predicate}",
                quote_ident(&op.name),
                quote_qualified(&managed.schema, &managed.name),
                physical.join(", ")
            ),
        ));
        self.plan_steps.rollback_concurrent.push(Step::new(
            format!("drop index {}", op.name),
            format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"),
        ));
        Ok(())
    }

    fn raw_sql(&mut self, op: &RawSql) {
        if op.on_complete {
            self.plan_steps.complete.push(Step::new(
                "the migration's own SQL (at complete)",
                op.up.clone(),
            ));
            return;
        }
        self.plan_steps
            .expand
            .push(Step::new("the migration's own SQL", op.up.clone()));
        if let Some(down) = &op.down {
            // Undone before anything the migration added earlier is dropped.
            self.plan_steps
                .rollback
                .insert(0, Step::new("undo the migration's own SQL", down.clone()));
        }
    }

    fn finish(self) -> Result<MigrationPlan, MigrateError> {
        let from_map = |schema: &str, table: &str| column_map(self.from, schema, table);
        let to_map = |schema: &str, table: &str| column_map(&self.definition, schema, table);
        let syncs = self
            .syncs
            .iter()
            .map(|((schema, table), (up, down))| TableSync {
                schema: schema.clone(),
                table: table.clone(),
                up: up.clone(),
                up_columns: from_map(schema, table),
                down: down.clone(),
                down_columns: to_map(schema, table),
            })
            .collect();
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
            complete: self.plan_steps.complete,
            complete_concurrent: self.plan_steps.complete_concurrent,
            renames: self.plan_steps.renames,
            rollback,
            rollback_concurrent: self.plan_steps.rollback_concurrent,
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

fn validate_step(table: &str, constraint: &str) -> Step {
    Step::new(
        format!("validate {constraint} (existing rows, without blocking writes)"),
        format!(
            "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
            quote_ident(constraint)
        ),
    )
}

/// A check names columns by their logical names; on the base table it must name the physical
/// ones. Identifiers are replaced token by token in one pass (sqlparser's tokenizer), so
/// strings, comments and longer names that merely contain a name stay as they are.
pub fn over_physical(expression: &str, names: &[(String, String)]) -> String {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    if names.iter().all(|(logical, physical)| logical == physical) {
        return expression.to_owned();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, expression).tokenize() else {
        return expression.to_owned();
    };
    tokens
        .into_iter()
        .map(|token| {
            if let Token::Word(word) = &token {
                let name = match word.quote_style {
                    None => word.value.to_lowercase(),
                    Some('"') => word.value.clone(),
                    Some(_) => return token.to_string(),
                };
                if let Some((_, physical)) = names.iter().find(|(logical, _)| *logical == name) {
                    return quote_ident(physical);
                }
            }
            token.to_string()
        })
        .collect()
}

fn check_over_physical(check: &str, logical: &str, physical: &str) -> String {
    over_physical(check, &[(logical.to_owned(), physical.to_owned())])
}

fn column_sql(column: &ColumnDefinition) -> String {
    let mut sql = format!("{} {}", quote_ident(&column.name), column.sql_type);
    if !column.nullable && !column.primary_key {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if column.unique {
        sql.push_str(" UNIQUE");
    }
    if let Some(check) = &column.check {
        sql.push_str(&format!(" CHECK ({check})"));
    }
    if let Some(references) = &column.references {
        let target = match &references.schema {
            Some(schema) => quote_qualified(schema, &references.table),
            None => quote_ident(&references.table),
        };
        sql.push_str(&format!(
            " REFERENCES {target} ({})",
            quote_ident(&references.column)
        ));
        if let Some(action) = references.on_delete {
            sql.push_str(&format!(" ON DELETE {}", action.sql()));
        }
    }
    sql
}
