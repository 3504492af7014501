//! A base table's keys as a version's view shows them. A view has no constraints, so what a
//! key makes legal on the table (`INSERT … ON CONFLICT ON CONSTRAINT name`, a GROUP BY of the
//! primary key reading the row's other columns) the rewriter does in its stead, in the view's
//! names (`rewriter::references_conflict`, `rewriter::references_group_by`). While a migration
//! changes a key column's type, the version that sees the new column sees the key through the
//! unique index the migration builds over it, its twin `_vg_<version>_<constraint>`, which the
//! contract makes the constraint (`control::migrate::rebuild::indexes`).

use super::base_table_kin::BaseTableKin;
use super::identifier::{MAX_IDENTIFIER_BYTES, MIGRATION_NAME_PREFIX};
use super::view_mapping::ViewMapping;

/// One key of a base table as a view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownKey {
    /// The constraint's name on the base table.
    pub constraint: String,
    /// The view's names for the key's columns, in the key's order.
    pub columns: Vec<String>,
    pub primary: bool,
}

/// The keys of base table `schema.table` that the view with `mapping` shows whole, directly
/// or through a twin one of `versions` built.
pub fn shown_keys<'v>(
    kin: &BaseTableKin,
    schema: &str,
    table: &str,
    mapping: &ViewMapping,
    versions: impl Iterator<Item = &'v str> + Clone,
) -> Vec<ShownKey> {
    let primary = kin.primary_keys.get(&(schema.to_owned(), table.to_owned()));
    kin.unique_keys_of(schema, table)
        .filter_map(|(constraint, columns)| {
            let columns = mapping.view_names_of(columns).or_else(|| {
                versions.clone().find_map(|version| {
                    let twin = format!("{MIGRATION_NAME_PREFIX}{version}_{constraint}");
                    // A longer name is cut and hashed; such a twin is not looked for.
                    let twin_columns = (twin.len() <= MAX_IDENTIFIER_BYTES)
                        .then(|| kin.rebuilt_keys.get(&(schema.into(), table.into(), twin)))??;
                    mapping.view_names_of(twin_columns)
                })
            })?;
            Some(ShownKey {
                constraint: constraint.to_owned(),
                columns,
                primary: primary.is_some_and(|name| name == constraint),
            })
        })
        .collect()
}
