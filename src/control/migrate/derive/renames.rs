//! The physical renames a contract runs, applied to names: where a column or table recorded
//! under its name before the contract is found after it. The contract runs them in the order
//! the operations planned them, so a name is followed through each in turn, and a contract
//! step names what it changes as the steps before it leave it.

use super::{Deriver, Rename};
use crate::control::quote::quote_qualified;
use crate::control::views::spec::ManagedTable;

impl Deriver<'_> {
    /// What physical column `column` is called once the contract has run the renames this
    /// migration's earlier operations planned (they run in order).
    pub(super) fn renamed_at_complete(&self, managed: &ManagedTable, column: &str) -> String {
        let mut name = column.to_owned();
        rename_physical(
            &mut name,
            &managed.schema,
            &managed.name,
            &self.plan_steps.renames,
        );
        name
    }

    /// Table `managed`, quoted, as the contract's steps planned so far leave it named: an
    /// earlier `rename_table` of this migration renames it before the steps that follow run.
    pub(super) fn table_at_complete(&self, managed: &ManagedTable) -> String {
        let mut name = managed.name.clone();
        rename_table_name(&mut name, &managed.schema, &self.plan_steps.renames);
        quote_qualified(&managed.schema, &name)
    }
}

/// Renames physical column `column` of `schema.table` as `renames` do, in order (as the
/// contract runs them).
pub fn rename_physical(column: &mut String, schema: &str, table: &str, renames: &[Rename]) {
    for rename in renames {
        if let Rename::Column {
            schema: s,
            table: t,
            from,
            to,
        } = rename
            && s == schema
            && t == table
            && column == from
        {
            *column = to.clone();
        }
    }
}

/// Renames table `schema.name` as `renames` do.
pub fn rename_table_name(name: &mut String, schema: &str, renames: &[Rename]) {
    for rename in renames {
        if let Rename::Table {
            schema: s,
            from,
            to,
        } = rename
            && s == schema
            && name == from
        {
            *name = to.clone();
        }
    }
}
