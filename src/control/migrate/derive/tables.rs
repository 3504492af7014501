//! Operations on whole tables (create, drop, rename) and the author's own SQL.

use std::collections::BTreeMap;

use super::constraints::Referenced;
use super::sql::column_sql;
use super::{Deriver, Dropped, Rename, Step};
use crate::control::migrate::error::MigrateError;
use crate::control::migrate::operation::{
    CreateTable, Operation, RawSql, ReplicaIdentity, SetReplicaIdentity,
};
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::introspect::{BaseTable, InheritanceLink};
use crate::control::views::spec::{
    Column, ColumnSource, DEFAULT_SCHEMA, ManagedTable, VersionTable,
};

impl Deriver<'_> {
    pub(super) fn create_table(&mut self, op: &CreateTable) -> Result<(), MigrateError> {
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
        let mut definitions = op
            .columns
            .iter()
            .map(|column| {
                let references = column
                    .references
                    .as_ref()
                    .map(|references| {
                        self.references_clause(&Referenced::column(references), &schema)
                    })
                    .transpose()?;
                Ok(column_sql(column, references.as_deref()))
            })
            .collect::<Result<Vec<_>, MigrateError>>()?;
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

    pub(super) fn drop_table(&mut self, name: &str) -> Result<(), MigrateError> {
        let (index, managed, live) = self.table(name)?;
        let inherited_by = live.as_ref().map(children).unwrap_or_default();
        if !inherited_by.is_empty() {
            return Err(self.refuse(format!(
                "table {}.{} is inherited by {} (table inheritance): the contract's `DROP TABLE`, never with CASCADE, would fail on them. Drop them or detach them (`ALTER TABLE <child> NO INHERIT {}`) first",
                managed.schema,
                managed.name,
                inherited_by.join(", "),
                quote_qualified(&managed.schema, &managed.name)
            )));
        }
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
            self.plan_steps.dropped.push(Dropped::Table {
                schema: managed.schema.clone(),
                table: managed.name.clone(),
            });
            self.plan_steps.complete.push(Step::new(
                format!(
                    "drop table {}.{} (only older versions used it)",
                    managed.schema, managed.name
                ),
                // As the contract's earlier steps leave it named: a rename before the drop
                // would otherwise make `IF EXISTS` drop nothing.
                format!("DROP TABLE IF EXISTS {}", self.table_at_complete(&managed)),
            ));
        }
        Ok(())
    }

    /// Refuses changing table `name` in place if it is in a table-inheritance tree
    /// (`INHERITS`): the sync triggers and the backfill reach its own rows alone while its new
    /// columns, checks and renames reach every table below it, so a row of one of those would
    /// read differently at each version and its writers would fail the new checks; and
    /// Postgres changes an inherited column only at the top.
    pub(super) fn refuse_table_inheritance(&self, name: &str) -> Result<(), MigrateError> {
        let (_, managed, Some(live)) = self.table(name)? else {
            return Ok(());
        };
        let table = format!("{}.{}", managed.schema, managed.name);
        let parents: Vec<&str> = live
            .inheritance
            .iter()
            .filter_map(|link| match link {
                InheritanceLink::Parent(parent) => Some(parent.as_str()),
                InheritanceLink::Child(_) => None,
            })
            .collect();
        if !parents.is_empty() {
            return Err(self.refuse(format!(
                "table {table} inherits from {} (table inheritance): Postgres renames, retypes and drops an inherited column only on the table it comes from, and the scans of that table read the rows of {table} without their sync triggers. Change the tree outside viewgate, or make {table} a table of its own (`ALTER TABLE {} NO INHERIT <parent>`) first",
                parents.join(", "),
                quote_qualified(&managed.schema, &managed.name)
            )));
        }
        let inherited_by = children(&live);
        if !inherited_by.is_empty() {
            return Err(self.refuse(format!(
                "table {table} is inherited by {} (table inheritance): the migration's sync triggers and backfill would reach the rows of {table} alone while its columns and checks reach theirs, so their rows would read differently at each version and their writers would fail the new checks. Detach them (`ALTER TABLE <child> NO INHERIT {}`) for the migration, or change the tree outside viewgate",
                inherited_by.join(", "),
                quote_qualified(&managed.schema, &managed.name)
            )));
        }
        Ok(())
    }

    /// Whether an operation of this migration creates `managed`.
    pub(super) fn created_here(&self, managed: &ManagedTable) -> bool {
        self.migration.operations.iter().any(|operation| {
            matches!(operation, Operation::CreateTable(created)
                if created.table == managed.name
                    && created.schema.as_deref().unwrap_or(DEFAULT_SCHEMA) == managed.schema)
        })
    }

    pub(super) fn rename_table(&mut self, from: &str, to: &str) -> Result<(), MigrateError> {
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
        let managed_name =
            |table: &ManagedTable| table.schema == managed.schema && table.name == to;
        if let Some(taken) = self.snapshot.relation(&managed.schema, to)
            && !self.definition.tables.iter().any(managed_name)
        {
            let kind = taken.kind_name();
            return Err(self.refuse(format!(
                "{}.{to} is a {kind} of this database: the new version's clients would no longer reach it by its name, and `migrate complete` could not rename the table to it; give the table another name, or rename or drop the {kind} first",
                managed.schema
            )));
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

    /// Sets the table's replica identity in the expand; a rollback puts back the one it had.
    /// Refused when `identity = "index"` names no index of the table (one this migration
    /// builds exists only after its backfill, too late for the expand).
    pub(super) fn set_replica_identity(
        &mut self,
        op: &SetReplicaIdentity,
    ) -> Result<(), MigrateError> {
        let (_, managed, live) = self.table(&op.table)?;
        let clause = match (op.identity, &op.index) {
            (ReplicaIdentity::Default, _) => "DEFAULT".to_owned(),
            (ReplicaIdentity::Full, _) => "FULL".to_owned(),
            (ReplicaIdentity::Nothing, _) => "NOTHING".to_owned(),
            (ReplicaIdentity::Index, Some(index)) => {
                if let Some(live) = &live
                    && !live.indexes.contains(index)
                {
                    return Err(self.refuse(format!(
                        "table {}.{} has no index {index} (one this migration builds is made after the backfill, after the expand that sets the identity: set it in a later migration)",
                        managed.schema, managed.name
                    )));
                }
                format!("USING INDEX {}", quote_ident(index))
            }
            (ReplicaIdentity::Index, None) => {
                return Err(self.refuse("identity = \"index\" needs `index`"));
            }
        };
        let table = quote_qualified(&managed.schema, &managed.name);
        self.plan_steps.expand.push(Step::new(
            format!(
                "replica identity of {}.{}: {clause}",
                managed.schema, managed.name
            ),
            format!("ALTER TABLE {table} REPLICA IDENTITY {clause}"),
        ));
        if let Some(live) = live {
            // Undone before anything the migration added earlier is dropped (an index of
            // its own cannot be the identity: see above).
            self.plan_steps.rollback.insert(
                0,
                Step::new(
                    format!(
                        "put back the replica identity of {}.{}: {}",
                        managed.schema, managed.name, live.replica_identity
                    ),
                    format!(
                        "ALTER TABLE {table} REPLICA IDENTITY {}",
                        live.replica_identity
                    ),
                ),
            );
        }
        Ok(())
    }

    pub(super) fn raw_sql(&mut self, op: &RawSql) {
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
}

/// The tables inheriting from `table` (`schema.name` each), partitions left out.
fn children(table: &BaseTable) -> Vec<&str> {
    table
        .inheritance
        .iter()
        .filter_map(|link| match link {
            InheritanceLink::Child(child) => Some(child.as_str()),
            InheritanceLink::Parent(_) => None,
        })
        .collect()
}
