//! What the contract takes away, read off a plan: the physical columns it drops, whether by
//! `drop_column` or because a new column replaces them (a retype, a split, a merge). The
//! checks that must know what the contract leaves behind (publications, triggers, functions)
//! ask here rather than each walk the plan.

use super::{Dropped, MigrationPlan};

impl MigrationPlan {
    /// Each (schema, table, column) the contract drops: `drop_column`'s, then the replaced.
    pub fn contracted_columns(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        let dropped = self.dropped.iter().filter_map(|dropped| match dropped {
            Dropped::Column {
                schema,
                table,
                column,
            } => Some((schema.as_str(), table.as_str(), column.as_str())),
            _ => None,
        });
        let replaced = self.replaced.iter().map(|replaced| {
            (
                replaced.schema.as_str(),
                replaced.table.as_str(),
                replaced.column.as_str(),
            )
        });
        dropped.chain(replaced)
    }
}
