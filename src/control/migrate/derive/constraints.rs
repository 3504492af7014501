//! Constraints and indexes: NOT NULL, CHECK and FOREIGN KEY added `NOT VALID` and validated
//! after the backfill, uniqueness and indexes built `CONCURRENTLY`.

use super::sql::{check_over_physical, fit_identifier, over_physical};
use super::{Deriver, Dropped, PROBE_PREFIX, Rename, Step, column_map};
use crate::control::migrate::error::MigrateError;
use crate::control::migrate::operation::{
    AddConstraint, ConstraintKind, CreateIndex, DropConstraint, DropIndex, ForeignKey,
    MultiColumnReference, ReferentialAction, RenameConstraint,
};
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::introspect::{BaseTable, Partitioning};
use crate::control::views::spec::ManagedTable;
use crate::model::identifier::MAX_IDENTIFIER_BYTES;

/// The contract's steps that make a new column NOT NULL, where a validated check stood in
/// for it until then, and drop the check. They are placed once the column has the name it
/// keeps: PostgreSQL 18 catalogues a NOT NULL constraint under the column's name as it is when
/// the constraint is made (`<table>_<column>_not_null`), so a replacement made NOT NULL before
/// its rename kept `<table>__vg_v2_<column>_not_null` for good.
pub(super) struct NotNullAtComplete {
    table_then: String,
    logical: String,
    check: String,
}

impl NotNullAtComplete {
    /// The steps, for the column named `column` by then.
    pub(super) fn steps(&self, column: &str) -> [Step; 2] {
        let Self {
            table_then,
            logical,
            check,
        } = self;
        [
            Step::new(
                format!("make {logical} NOT NULL (the validated check spares a table scan)"),
                format!(
                    "ALTER TABLE {table_then} ALTER COLUMN {} SET NOT NULL",
                    quote_ident(column)
                ),
            ),
            Step::new(
                format!("drop the check that stood in for NOT NULL on {logical}"),
                format!(
                    "ALTER TABLE {table_then} DROP CONSTRAINT {}",
                    quote_ident(check)
                ),
            ),
        ]
    }
}

impl Deriver<'_> {
    /// Constraints of a new physical column: NOT NULL and CHECK and FOREIGN KEY as NOT VALID
    /// constraints validated after the backfill, uniqueness as an index built concurrently.
    /// The contract's NOT NULL steps are the caller's to place (`NotNullAtComplete`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn column_constraints(
        &mut self,
        managed: &ManagedTable,
        physical: &str,
        logical: &str,
        not_null: bool,
        check: Option<&str>,
        unique: bool,
        references: Option<&ForeignKey>,
    ) -> Result<Option<NotNullAtComplete>, MigrateError> {
        let table = quote_qualified(&managed.schema, &managed.name);
        let mut not_null_at_complete = None;
        if not_null {
            let name = stand_in_name(&managed.name, logical, &self.migration.version);
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
            not_null_at_complete = Some(NotNullAtComplete {
                table_then: self.table_at_complete(managed),
                logical: logical.to_owned(),
                check: name,
            });
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
            let target =
                self.references_clause(&Referenced::column(references), &managed.schema)?;
            self.plan_steps.expand.push(Step::new(
                format!("foreign key on {logical}, validated after the backfill"),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) {target} NOT VALID",
                    quote_ident(&name),
                    quote_ident(physical),
                ),
            ));
            self.plan_steps.validate.push(validate_step(&table, &name));
        }
        if unique {
            let index = self.constraint_name(&managed.name, logical, "key")?;
            self.unique_constraint(
                managed,
                &index,
                &[physical.to_owned()],
                &format!("the unique index on {logical}"),
            )?;
        }
        Ok(not_null_at_complete)
    }

    /// A unique constraint `name` on `managed`'s physical `columns` (`what` in words): an
    /// index built `CONCURRENTLY` after the backfill, which becomes the constraint at
    /// complete; on a partitioned table, one on each partition ([`Self::unique_on_partitions`]).
    fn unique_constraint(
        &mut self,
        managed: &ManagedTable,
        name: &str,
        columns: &[String],
        what: &str,
    ) -> Result<(), MigrateError> {
        let partitioning = self
            .snapshot
            .table(&managed.schema, &managed.name)
            .and_then(|live| live.partitioning.clone());
        if let Some(partitioning) = partitioning {
            return self.unique_on_partitions(managed, &partitioning, name, columns);
        }
        let index = quote_ident(name);
        self.build_concurrently(
            &managed.schema,
            name,
            Step::new(
                format!("{what}, built without blocking writes"),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {index} ON {} ({})",
                    quote_qualified(&managed.schema, &managed.name),
                    quoted_list(columns)
                ),
            ),
            format!("drop {what}"),
        );
        self.plan_steps.complete.push(Step::new(
            format!("turn {what} into a constraint"),
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {index} UNIQUE USING INDEX {index}",
                self.table_at_complete(managed)
            ),
        ));
        Ok(())
    }

    /// Adds `build`, which builds index `index` `CONCURRENTLY` on the table `schema`, and its
    /// undo (described as `undo`). The name is recorded for `preconditions.rs`, which refuses
    /// one already taken: the undo drops whatever index has it.
    pub(super) fn build_concurrently(
        &mut self,
        schema: &str,
        index: &str,
        build: Step,
        undo: String,
    ) {
        let drop = format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quote_qualified(schema, index)
        );
        self.plan_steps
            .concurrent
            .push(build.clearing(drop.clone()).building(schema, index));
        self.plan_steps
            .rollback_concurrent
            .push(Step::new(undo, drop));
        self.plan_steps
            .built_indexes
            .push((schema.to_owned(), index.to_owned()));
    }

    /// `REFERENCES …` for a foreign key to `target`, whose names are the new version's. A
    /// table of the version is named by its base table and physical columns as they are now:
    /// a rename in this migration, or in one still pending, happens at complete, and the key
    /// follows the table and column it was made on, not their names (naming them as the version
    /// does failed the expand with 42P01 or 42703). A managed table under a name the version no
    /// longer gives it is refused: a key on its columns as written could hold the one a pending
    /// contract drops. Any other table is named as written, in its schema or else
    /// `default_schema`.
    pub(super) fn references_clause(
        &self,
        target: &Referenced<'_>,
        default_schema: &str,
    ) -> Result<String, MigrateError> {
        let version_table = self.definition.version.tables.iter().position(|table| {
            table.name == target.table
                && target.schema.is_none_or(|schema| {
                    self.definition
                        .managed(&table.base)
                        .is_some_and(|managed| managed.schema == schema)
                })
        });
        let (table, columns) = match version_table {
            Some(index) => {
                let (_, managed, _) = self.table(target.table)?;
                (
                    quote_qualified(&managed.schema, &managed.name),
                    self.physical_columns(index, target.table, target.columns)?,
                )
            }
            None => {
                let schema = target.schema.unwrap_or(default_schema);
                if let Some(table) = self.definition.version.tables.iter().find(|table| {
                    table.base == target.table
                        && self
                            .definition
                            .managed(&table.base)
                            .is_some_and(|managed| managed.schema == schema)
                }) {
                    return Err(self.refuse(format!(
                        "a foreign key references {schema}.{}, which the new version calls {}; name it so",
                        target.table, table.name
                    )));
                }
                (
                    quote_qualified(schema, target.table),
                    target.columns.to_vec(),
                )
            }
        };
        let columns = columns
            .iter()
            .map(|column| quote_ident(column))
            .collect::<Vec<_>>()
            .join(", ");
        let on_delete = target
            .on_delete
            .map(|action| format!(" ON DELETE {}", action.sql()))
            .unwrap_or_default();
        Ok(format!("REFERENCES {table} ({columns}){on_delete}"))
    }

    pub(super) fn constraint_name(
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

    pub(super) fn add_constraint(&mut self, op: &AddConstraint) -> Result<(), MigrateError> {
        let (index, managed, _) = self.table(&op.table)?;
        let table = quote_qualified(&managed.schema, &managed.name);
        let name = quote_ident(&op.name);
        let physical = self.physical_columns(index, &op.table, &op.columns)?;
        let column_list = quoted_list(&physical);
        match op.kind {
            ConstraintKind::Check => {
                let names = column_map(&self.definition, &managed.schema, &managed.name);
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
                let target =
                    self.references_clause(&Referenced::columns(references), &managed.schema)?;
                self.plan_steps.expand.push(Step::new(
                    format!("foreign key {} for new rows, validated after the backfill", op.name),
                    format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column_list}) {target} NOT VALID"
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
                self.unique_constraint(
                    &managed,
                    &op.name,
                    &physical,
                    &format!("the unique index {}", op.name),
                )?;
            }
        }
        Ok(())
    }

    /// Drops index `op` at complete: `CONCURRENTLY` after the contract commits, or, for a
    /// partitioned index, which has no concurrent drop (it failed after the contract had
    /// committed), inside the contract's transaction (catalog only, under its lock timeout).
    pub(super) fn drop_index(&mut self, op: &DropIndex) -> Result<(), MigrateError> {
        let schema = op.schema_or_default();
        let partitioned = match self.snapshot.relation(schema, &op.name) {
            Some(relation) if relation.is_index() => relation.is_partitioned_index(),
            _ if self.snapshot.is_offline() => false,
            _ => return Err(self.refuse(self.no_index_to_drop(schema, &op.name))),
        };
        self.plan_steps.dropped.push(Dropped::Index {
            schema: schema.to_owned(),
            name: op.name.clone(),
        });
        let index = quote_qualified(schema, &op.name);
        let description = format!("drop index {schema}.{}", op.name);
        if partitioned {
            self.plan_steps.complete.push(Step::new(
                description,
                format!("DROP INDEX IF EXISTS {index}"),
            ));
        } else {
            self.plan_steps.complete_concurrent.push(Step::new(
                description,
                format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
            ));
        }
        Ok(())
    }

    /// Why a `drop_index` of `schema.name` is refused: there is no such index, so the
    /// contract's `DROP INDEX IF EXISTS` would drop nothing and say nothing.
    fn no_index_to_drop(&self, schema: &str, name: &str) -> String {
        if let Some(relation) = self.snapshot.relation(schema, name) {
            return format!(
                "{schema}.{name} is a {}, not an index: `migrate complete` would have nothing to drop",
                relation.kind_name()
            );
        }
        let elsewhere: Vec<&str> = self
            .snapshot
            .relations_named
            .iter()
            .filter(|relation| relation.name == name && relation.is_index())
            .map(|relation| relation.schema.as_str())
            .collect();
        match elsewhere.as_slice() {
            [] => format!(
                "there is no index {schema}.{name}: `migrate complete` would have nothing to drop"
            ),
            [other] => format!(
                "there is no index {schema}.{name}, but there is one in schema {other}: give the operation `schema = {other:?}`"
            ),
            others => format!(
                "there is no index {schema}.{name}, but there is one in each of the schemas {}: give the operation the `schema` of the one to drop",
                others.join(", ")
            ),
        }
    }

    /// Drops constraint `op` in the contract; refused unless the table has it (or, a unique
    /// constraint a live migration adds, the index it will be made from).
    pub(super) fn drop_constraint(&mut self, op: &DropConstraint) -> Result<(), MigrateError> {
        let (_, managed, live) = self.table(&op.table)?;
        if let Some(live) = &live
            && !has_constraint(live, &op.name)
        {
            return Err(self.refuse(format!(
                "{}: `migrate complete` would have nothing to drop",
                no_such_constraint(live, &op.name)
            )));
        }
        self.plan_steps.dropped.push(Dropped::Constraint {
            schema: managed.schema.clone(),
            table: managed.name.clone(),
            name: op.name.clone(),
        });
        let table = self.table_at_complete(&managed);
        self.plan_steps.complete.push(Step::new(
            format!("drop constraint {}", op.name),
            format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                quote_ident(&op.name)
            ),
        ));
        Ok(())
    }

    /// Renames constraint `op.from` in the contract. Until then the versions before the new
    /// one may name it, and every version sees it by its old name (as pgroll does); refused
    /// unless the table has it, the new name is free on the table and, for a constraint
    /// backed by an index (which the rename renames too), in the schema, and this migration
    /// neither drops it nor renames it already.
    pub(super) fn rename_constraint(&mut self, op: &RenameConstraint) -> Result<(), MigrateError> {
        let (_, managed, live) = self.table(&op.table)?;
        let (schema, table) = (&managed.schema, &managed.name);
        let dropped_here = self.plan_steps.dropped.iter().any(|dropped| {
            matches!(dropped, Dropped::Constraint { schema: s, table: t, name }
                if s == schema && t == table && (name == &op.from || name == &op.to))
        });
        let renamed_here = self.plan_steps.renames.iter().any(|rename| {
            matches!(rename, Rename::Constraint { schema: s, table: t, from, to }
                if s == schema && t == table && [from, to].iter().any(|n| [&op.from, &op.to].contains(n)))
        });
        if dropped_here || renamed_here {
            return Err(self.refuse(format!(
                "an earlier operation of this migration drops or renames constraint {} or {} of {schema}.{table}: give each constraint its final name in one operation",
                op.from, op.to
            )));
        }
        if let Some(live) = &live {
            if !has_constraint(live, &op.from) {
                return Err(self.refuse(no_such_constraint(live, &op.from)));
            }
            if has_constraint(live, &op.to) {
                return Err(self.refuse(format!(
                    "table {schema}.{table} already has a constraint {}",
                    op.to
                )));
            }
            if live.indexes.contains(&op.from)
                && let Some(taken) = self.snapshot.relation(schema, &op.to)
            {
                return Err(self.refuse(format!(
                    "renaming constraint {} renames its index too, and {schema}.{} is a {} of this database: give the constraint another name",
                    op.from,
                    op.to,
                    taken.kind_name()
                )));
            }
        }
        let quoted_table = self.table_at_complete(&managed);
        self.plan_steps.complete.push(Step::new(
            format!("rename constraint {} to {}", op.from, op.to),
            format!(
                "ALTER TABLE {quoted_table} RENAME CONSTRAINT {} TO {}",
                quote_ident(&op.from),
                quote_ident(&op.to)
            ),
        ));
        self.plan_steps.renames.push(Rename::Constraint {
            schema: schema.clone(),
            table: table.clone(),
            from: op.from.clone(),
            to: op.to.clone(),
        });
        Ok(())
    }

    pub(super) fn create_index(&mut self, op: &CreateIndex) -> Result<(), MigrateError> {
        let (index, managed, live) = self.table(&op.table)?;
        let physical: Vec<String> = self
            .physical_columns(index, &op.table, &op.columns)?
            .iter()
            .map(|column| quote_ident(column))
            .collect();
        let unique = if op.unique { "UNIQUE " } else { "" };
        let method = op.method.as_deref().unwrap_or("btree");
        let names = column_map(&self.definition, &managed.schema, &managed.name);
        let predicate = op
            .predicate
            .as_ref()
            .map(|predicate| format!(" WHERE ({})", over_physical(predicate, &names)))
            .unwrap_or_default();
        let definition = format!("USING {method} ({}){predicate}", physical.join(", "));
        let table = quote_qualified(&managed.schema, &managed.name);
        let partitioning = live.and_then(|live| live.partitioning);
        self.probe_index(
            &managed,
            partitioning.as_ref(),
            &op.name,
            &format!("{unique}INDEX"),
            &definition,
        );
        if let Some(partitioning) = &partitioning {
            return self.build_on_partitions(&managed, partitioning, &op.name, unique, &definition);
        }
        self.build_concurrently(
            &managed.schema,
            &op.name,
            Step::new(
                format!("build index {} without blocking writes", op.name),
                format!(
                    "CREATE {unique}INDEX CONCURRENTLY {} ON {table} {definition}",
                    quote_ident(&op.name)
                ),
            ),
            format!("drop index {}", op.name),
        );
        Ok(())
    }
}

impl Deriver<'_> {
    /// Builds index `name` (`CREATE <kind> ON <table> <definition>`) in the expand on an empty
    /// temporary copy of `managed`, partitioned as it is: the real build runs after the
    /// backfill, and what cannot be built (a method or predicate that does not fit the
    /// columns, a unique index without the partition key) fails now, before any change.
    pub(super) fn probe_index(
        &mut self,
        managed: &ManagedTable,
        partitioning: Option<&Partitioning>,
        name: &str,
        kind: &str,
        definition: &str,
    ) {
        let probe = quote_ident(&fit_identifier(format!("{PROBE_PREFIX}{name}")));
        let partition_by = partitioning
            .map(|partitioning| format!(" PARTITION BY {}", partitioning.key))
            .unwrap_or_default();
        self.plan_steps.expand.push(Step::new(
            format!(
                "build index {name} on an empty copy of {}, so that what cannot be built fails now",
                managed.name
            ),
            format!(
                "CREATE TEMPORARY TABLE {probe} (LIKE {}){partition_by} ON COMMIT DROP; CREATE {kind} ON pg_temp.{probe} {definition}",
                quote_qualified(&managed.schema, &managed.name)
            ),
        ));
    }
}

/// `columns`, quoted, separated by commas.
pub(super) fn quoted_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|column| quote_ident(column))
        .collect::<Vec<_>>()
        .join(", ")
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

/// The check standing in for NOT NULL until complete: named for the migration's version
/// too, since a later migration may put the same logical column under a check of its own
/// while this one is live (the forty-first red-team pass saw v3's `alter_column` of a
/// column v2 added NOT NULL refused: "constraint t_level_not_null already exists"). Too
/// long for an identifier, it is cut and a hash of the whole name keeps it unique: the
/// check is viewgate's own and gone at complete.
fn stand_in_name(table: &str, column: &str, version: &str) -> String {
    fit_identifier(format!("{table}_{column}_not_null_{version}"))
}

/// What a foreign key references, from either form the file writes it in.
pub(super) struct Referenced<'a> {
    schema: Option<&'a str>,
    table: &'a str,
    columns: &'a [String],
    on_delete: Option<ReferentialAction>,
}

impl<'a> Referenced<'a> {
    pub(super) fn column(references: &'a ForeignKey) -> Self {
        Referenced {
            schema: references.schema.as_deref(),
            table: &references.table,
            columns: std::slice::from_ref(&references.column),
            on_delete: references.on_delete,
        }
    }

    pub(super) fn columns(references: &'a MultiColumnReference) -> Self {
        Referenced {
            schema: references.schema.as_deref(),
            table: &references.table,
            columns: &references.columns,
            on_delete: references.on_delete,
        }
    }
}

/// Whether `table` has constraint `name`, or the index a unique constraint a live migration
/// adds is until that migration completes.
fn has_constraint(table: &BaseTable, name: &str) -> bool {
    table.constraints.contains(name) || table.indexes.contains(name)
}

/// That `table` has no constraint `name`, and the ones it has.
fn no_such_constraint(table: &BaseTable, name: &str) -> String {
    let known: Vec<&str> = table.constraints.iter().map(String::as_str).collect();
    format!(
        "table {}.{} has no constraint {name} (it has: {})",
        table.schema,
        table.name,
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_in_checks_are_named_per_version_and_fit_an_identifier() {
        assert_eq!(stand_in_name("t", "level", "v3"), "t_level_not_null_v3");
        assert_ne!(
            stand_in_name("t", "level", "v2"),
            stand_in_name("t", "level", "v3")
        );
        let long = "é".repeat(20);
        let (a, b) = (
            stand_in_name(&long, "level", "v2"),
            stand_in_name(&long, "level", "v3"),
        );
        assert!(a.len() <= MAX_IDENTIFIER_BYTES && b.len() <= MAX_IDENTIFIER_BYTES);
        assert_ne!(a, b);
    }
}
