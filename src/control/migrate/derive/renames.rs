//! The physical renames a contract runs, applied to names: where a column or table recorded
//! under its name before the contract is found after it. The contract runs them in the order
//! the operations planned them, so a name is followed through each in turn.

use super::Rename;

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
