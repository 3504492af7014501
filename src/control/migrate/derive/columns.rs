//! Operations on columns: add, drop, rename, alter (a column of the new version's own when the
//! old version could violate the change), and the physical renames complete will do.

use super::sql::{is_constant, same_expression};
use super::{Assign, Deriver, NEW_COLUMN_PREFIX, Rename, Replaced, Replacement, Step};
use crate::control::migrate::error::MigrateError;
use crate::control::migrate::operation::{AddColumn, AlterColumn, DropColumn, RenameColumn};
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::spec::{Column, ColumnSource, ManagedTable};
use crate::model::identifier::MAX_IDENTIFIER_BYTES;

impl Deriver<'_> {
    pub(super) fn add_column(&mut self, op: &AddColumn) -> Result<(), MigrateError> {
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
        // A constant default without `up` is given to existing rows by the catalog alone.
        let catalog_default = column
            .default
            .as_deref()
            .filter(|default| op.up.is_none() && is_constant(default));
        self.plan_steps.expand.push(Step::new(
            match catalog_default {
                Some(_) => format!(
                    "add column {} to {}.{} with its constant default (existing rows get it from the catalog, no table rewrite)",
                    column.name, managed.schema, managed.name
                ),
                None => format!(
                    "add column {} to {}.{} (nullable, no table rewrite)",
                    column.name, managed.schema, managed.name
                ),
            },
            format!(
                "ALTER TABLE {table} ADD COLUMN {} {}{}",
                quote_ident(&physical),
                column.sql_type,
                catalog_default
                    .map(|default| format!(" DEFAULT {default}"))
                    .unwrap_or_default()
            ),
        ));
        if let Some(default) = column
            .default
            .as_ref()
            .filter(|_| catalog_default.is_none())
        {
            self.plan_steps.expand.push(Step::new(
                format!("default for {} on new rows", column.name),
                format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                    quote_ident(&physical)
                ),
            ));
        }
        self.note_added(&managed, &physical, &column.sql_type);
        let not_null = self.column_constraints(
            &managed,
            &physical,
            &column.name,
            !column.nullable,
            column.check.as_deref(),
            column.unique,
            column.references.as_ref(),
        )?;
        // The column has its name already.
        if let Some(not_null) = not_null {
            self.plan_steps.complete.extend(not_null.steps(&physical));
        }
        let own_default = column
            .default
            .as_ref()
            .filter(|_| catalog_default.is_none());
        if let Some(up) = &op.up {
            let assign = Assign {
                target: physical.clone(),
                expression: up.clone(),
            };
            self.sync_entry(&managed).0.push(assign.clone());
            self.backfill_entry(&managed).push(assign);
            if own_default.is_some_and(|default| same_expression(default, up)) {
                self.note_defaulted(&managed, &physical);
            }
        } else if let Some(default) = own_default {
            // Older versions' inserts get the base default; existing rows get it from the
            // backfill. Until the backfill reaches a row, its column is NULL, and the NOT NULL
            // check refuses any UPDATE of it (the live version's writers'): the sync triggers
            // fill it there with the default's expression.
            let assign = Assign {
                target: physical.clone(),
                expression: default.clone(),
            };
            if !column.nullable {
                self.sync_entry(&managed).0.push(assign.clone());
                self.note_defaulted(&managed, &physical);
            }
            self.backfill_entry(&managed).push(assign);
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

    /// Returns the physical column the contract drops, if any.
    pub(super) fn drop_column(&mut self, op: &DropColumn) -> Result<Option<String>, MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let live = self.live_table(&managed)?;
        let columns = &mut self.definition.version.tables[index].columns;
        let Some(position) = columns.iter().position(|column| column.name == op.column) else {
            return Err(self.refuse(format!("table {} has no column {}", op.table, op.column)));
        };
        let removed = columns.remove(position);
        let ColumnSource::Physical { base_column } = removed.source else {
            // An expression column has nothing physical of its own to drop.
            return Ok(None);
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
        // Named as the contract's earlier steps leave the table and the column (a rename
        // before the drop would otherwise make `IF EXISTS` drop nothing).
        let table = self.table_at_complete(&managed);
        let column_then = self.renamed_at_complete(&managed, &base_column);
        self.plan_steps.complete.push(Step::new(
            format!("drop column {} (only older versions used it)", op.column),
            format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                quote_ident(&column_then)
            ),
        ));
        Ok(Some(base_column))
    }

    pub(super) fn rename_column(&mut self, op: &RenameColumn) -> Result<(), MigrateError> {
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
    pub(super) fn physical_rename(
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
        let table = self.table_at_complete(managed);
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

    pub(super) fn alter_column(&mut self, op: &AlterColumn) -> Result<(), MigrateError> {
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
        let old = live.column(&base_column).cloned().ok_or_else(|| {
            let added_here = self
                .added_columns
                .get(&(managed.schema.clone(), managed.name.clone()))
                .is_some_and(|added| added.iter().any(|(column, _)| *column == base_column));
            self.refuse(if added_here {
                format!(
                    "column {} is made by an earlier operation of this migration: give it its final shape there (one alter_column changes type, nullability, default and checks at once)",
                    op.column
                )
            } else {
                format!("base column {base_column} does not exist")
            })
        })?;
        let table = quote_qualified(&managed.schema, &managed.name);
        // The contract's steps name the table and the old column as its earlier steps leave
        // them (the fifty-first red-team pass: a rename, then an alter that dropped the old
        // column by the name the rename had taken away).
        let table_then = self.table_at_complete(&managed);
        let old_at_complete = self.renamed_at_complete(&managed, &base_column);

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
            let key = if managed.key.is_empty() {
                &live.primary_key
            } else {
                &managed.key
            };
            let computes = table_columns
                .iter()
                .any(|column| matches!(column.source, ColumnSource::Expression { .. }));
            if computes && key.contains(&base_column) {
                return Err(self.refuse(format!(
                    "column {} is in the key by which the write triggers of version {}'s view find rows (the view computes a column), and they would have no key column while the old and the new one both live; retype the key in a migration from a version whose view has only plain columns",
                    op.column, self.migration.version
                )));
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
            // The stand-in of a NOT NULL column a sequence numbers (an identity, a serial)
            // takes no default until the contract: the sync triggers fill it from the number
            // the old column took (`sequence_fill.rs`), one number a row. (Where either side
            // may be NULL, a NULL could be meant, and the default is inherited as any other.)
            let numbered = old.identity
                || old
                    .default
                    .as_deref()
                    .is_some_and(|default| default.trim_start().starts_with("nextval("));
            let stand_in =
                numbered && old.not_null && not_null && op.default.is_none() && !op.drop_default;
            if stand_in {
                self.filled
                    .entry((managed.schema.clone(), managed.name.clone()))
                    .or_default()
                    .push(physical.clone());
            }
            let default = op.default.clone().or_else(|| {
                (!op.drop_default && !stand_in && !old.identity)
                    .then(|| old.default.clone())
                    .flatten()
            });
            if let Some(default) = &default {
                // Postgres checks an inherited default against the new type only here (text
                // to an enum: 42804): the step says where it came from and what replaces it.
                let whose = if op.default.is_none() {
                    format!(
                        ", {base_column}'s as it is (give the operation a `default` of the new type to replace it)"
                    )
                } else {
                    String::new()
                };
                self.plan_steps.expand.push(Step::new(
                    format!("default for {physical}{whose}"),
                    format!(
                        "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                        quote_ident(&physical)
                    ),
                ));
            }
            self.note_added(&managed, &physical, &sql_type);
            let not_null_at_complete = self.column_constraints(
                &managed,
                &physical,
                &new_name,
                not_null,
                op.check.as_deref(),
                op.unique == Some(true),
                op.references.as_ref(),
            )?;
            // `up` reads the previous version's columns, where an earlier operation of this
            // migration may have called this one otherwise.
            let name_before = self
                .from
                .table_named(&op.table)
                .and_then(|table| {
                    table.columns.iter().find(|column| {
                        matches!(&column.source, ColumnSource::Physical { base_column: b } if *b == base_column)
                    })
                })
                .map_or(op.column.as_str(), |column| column.name.as_str());
            let up = Assign {
                target: physical.clone(),
                expression: op.up.clone().unwrap_or_else(|| quote_ident(name_before)),
            };
            self.sync_entry(&managed).0.push(up.clone());
            self.backfill_entry(&managed).push(up);
            self.sync_entry(&managed).1.push(Assign {
                target: base_column.clone(),
                expression: op.down.clone().unwrap_or_else(|| quote_ident(&new_name)),
            });
            self.plan_steps.replaced.push(Replaced {
                schema: managed.schema.clone(),
                table: managed.name.clone(),
                column: base_column.clone(),
                operation: self.operation.clone(),
                replacement: Some(Replacement {
                    column: physical.clone(),
                    sql_type: sql_type.clone(),
                    same_type: op
                        .sql_type
                        .as_ref()
                        .is_none_or(|sql_type| sql_type.trim() == old.type_name),
                    unique: op.unique == Some(true),
                    check: op.check.is_some(),
                    not_null,
                    identity: false,
                }),
                rebuilt: Vec::new(),
                dropped_along: Vec::new(),
            });
            if let Some(serial) = old.default.as_ref().filter(|_| stand_in && !old.identity) {
                // Its sequence is the new column's by now (`rebuild/sequences.rs`).
                self.plan_steps.complete.push(Step::new(
                    format!("number {physical} by the old {}'s default", op.column),
                    format!(
                        "ALTER TABLE {table_then} ALTER COLUMN {} SET DEFAULT {serial}",
                        quote_ident(&physical)
                    ),
                ));
            }
            self.plan_steps.complete.push(Step::new(
                format!("drop the old {} (only older versions used it)", op.column),
                format!(
                    "ALTER TABLE {table_then} DROP COLUMN {}",
                    quote_ident(&old_at_complete)
                ),
            ));
            self.plan_steps.rollback.push(Step::new(
                format!("drop {physical}"),
                format!(
                    "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                    quote_ident(&physical)
                ),
            ));
            // The new column takes the old one's name once the old is dropped, or the name
            // `rename_to` gives it if no column of the table has had that name. A name another
            // column has (or had, before an earlier operation of this migration dropped or
            // renamed it) is left to that column: versions that remain name it by text, and
            // would read and write the new column under it (the fifty-first red-team pass).
            // The new version then reads the column under its new name, as `physical_rename`
            // leaves a taken name.
            let final_name = if new_name == old_at_complete
                || !self.physical_name_claimed(&managed, &live, &new_name)
            {
                new_name.clone()
            } else {
                old_at_complete
            };
            let column = &mut self.definition.version.tables[index].columns[position];
            column.name = new_name;
            column.source = ColumnSource::Physical {
                base_column: physical.clone(),
            };
            self.plan_steps.complete.push(Step::new(
                format!("rename {physical} to {final_name}"),
                format!(
                    "ALTER TABLE {table_then} RENAME COLUMN {} TO {}",
                    quote_ident(&physical),
                    quote_ident(&final_name)
                ),
            ));
            // Once it has the name it keeps (`NotNullAtComplete`).
            if let Some(not_null) = not_null_at_complete {
                self.plan_steps.complete.extend(not_null.steps(&final_name));
            }
            self.plan_steps.renames.push(Rename::Column {
                schema: managed.schema.clone(),
                table: managed.name.clone(),
                from: physical,
                to: final_name,
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
                    "ALTER TABLE {table_then} ALTER COLUMN {} SET DEFAULT {default}",
                    quote_ident(&old_at_complete)
                ),
            ));
        }
        if op.drop_default {
            column.default = Some("NULL".to_owned());
            self.plan_steps.complete.push(Step::new(
                format!("drop the default of {new_name}"),
                format!(
                    "ALTER TABLE {table_then} ALTER COLUMN {} DROP DEFAULT",
                    quote_ident(&old_at_complete)
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
}
