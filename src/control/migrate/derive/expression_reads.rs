//! The new version's own expression columns against its contract. A column the version
//! inherits as an expression (a hand-written spec mapping) reads base columns by the text of
//! its expression; if the contract drops, replaces or renames one of them, the migration
//! starts but can never complete: Postgres will not drop a column a view reads (2BP01), and
//! after a rename the text would name a column that is gone. Such a migration is refused
//! before any change, naming the column, its expression and what the contract would do.

use super::sql::mentions;
use super::{Dropped, Rename, Steps};
use crate::control::migrate::error::MigrateError;
use crate::control::views::definition::VersionDefinition;

/// A base column the contract takes away from under its current name, and how.
struct Contracted<'p> {
    schema: &'p str,
    table: &'p str,
    column: &'p str,
    fate: String,
}

/// Refuses the migration to `version` (whose definition is `definition`, planned as `steps`)
/// when one of the version's expression columns reads a base column its contract drops,
/// replaces or renames.
pub(super) fn refuse_reads_of_contracted(
    version: &str,
    definition: &VersionDefinition,
    steps: &Steps,
) -> Result<(), MigrateError> {
    let contracted = contracted(steps);
    for reader in definition.expression_columns() {
        let read = contracted.iter().find(|contracted| {
            contracted.schema == reader.base.schema
                && contracted.table == reader.base.name
                && mentions(reader.expression, contracted.column)
        });
        if let Some(read) = read {
            return Err(MigrateError::Refused {
                version: version.to_owned(),
                operation: format!(
                    "column {} of table {} (an expression)",
                    reader.column, reader.table
                ),
                problem: format!(
                    "its expression `{}` reads base column {}.{}.{}, which the contract {}: the migration could start but never complete (Postgres keeps a column a view reads, and the expression's text would name a column that is gone). Drop {} from version {version} in this migration too (drop_column), or leave {} as it is",
                    reader.expression,
                    read.schema,
                    read.table,
                    read.column,
                    read.fate,
                    reader.column,
                    read.column
                ),
            });
        }
    }
    Ok(())
}

/// Every base column the contract drops, replaces or renames, under its name before the
/// contract.
fn contracted(steps: &Steps) -> Vec<Contracted<'_>> {
    let dropped = steps.dropped.iter().filter_map(|dropped| match dropped {
        Dropped::Column {
            schema,
            table,
            column,
        } => Some(Contracted {
            schema,
            table,
            column,
            fate: "drops".to_owned(),
        }),
        Dropped::Table { .. } | Dropped::Index { .. } | Dropped::Constraint { .. } => None,
    });
    let replaced = steps.replaced.iter().map(|replaced| Contracted {
        schema: &replaced.schema,
        table: &replaced.table,
        column: &replaced.column,
        fate: format!("replaces ({})", replaced.operation),
    });
    let renamed = steps.renames.iter().filter_map(|rename| match rename {
        Rename::Column {
            schema,
            table,
            from,
            to,
        } => Some(Contracted {
            schema,
            table,
            column: from,
            fate: format!("renames to {to}"),
        }),
        Rename::Table { .. } | Rename::Constraint { .. } => None,
    });
    dropped.chain(replaced).chain(renamed).collect()
}
