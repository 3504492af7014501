//! A `rename_constraint` of a constraint the contract takes away first, refused before any
//! change.
//!
//! The contract drops a `drop_column`'s column, and a replaced column (`alter_column` through
//! a new column, `split_column`, `merge_columns`) after building what covered it on the new
//! one under a temporary name, which it then gives the old name. Postgres drops a constraint
//! with any column it covers, so the rename would find no constraint of its name (or, for a
//! rebuilt one, run before the rebuilt constraint takes the name) and the migration could
//! never complete. So too a foreign key into a replaced column: the contract drops it before
//! any operation's step (it holds the old column's index) and gives its rebuilt twin its name
//! after them, so the rename between found nothing. Checked by `migrate start` (and `plan`),
//! from the constraint's columns on the server.

use tokio_postgres::GenericClient;

use super::derive::{MigrationPlan, Rename};
use super::error::MigrateError;
use crate::control::error::ControlError;

/// The columns of constraint (or, a unique constraint a live migration adds, index) `name` on
/// table `schema.table`.
const CONSTRAINT_COLUMNS_SQL: &str = "
SELECT a.attname::text
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (k.conkey)
 WHERE n.nspname = $1 AND t.relname = $2 AND k.conname = $3
UNION
SELECT a.attname::text
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY (x.indkey)
 WHERE n.nspname = $1 AND t.relname = $2 AND i.relname = $3 AND i.relnamespace = n.oid
 ORDER BY 1";

/// The referenced table (schema, name) and columns of foreign key `name` on `schema.table`.
const REFERENCED_COLUMNS_SQL: &str = "
SELECT fn.nspname::text, f.relname::text, a.attname::text
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class t ON t.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_catalog.pg_class f ON f.oid = k.confrelid
  JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = f.oid AND a.attnum = ANY (k.confkey)
 WHERE n.nspname = $1 AND t.relname = $2 AND k.conname = $3 AND k.contype = 'f'
 ORDER BY 3";

/// Refuses `plan` while it renames a constraint over a column its contract drops or replaces.
pub async fn refuse_renaming_what_the_contract_drops(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    for rename in &plan.renames {
        let Rename::Constraint {
            schema,
            table,
            from,
            to,
        } = rename
        else {
            continue;
        };
        let columns: Vec<String> = client
            .query(CONSTRAINT_COLUMNS_SQL, &[schema, table, from])
            .await
            .map_err(|error| {
                ControlError::database(
                    format!("reading the columns of constraint {from} of {schema}.{table}"),
                    &error,
                )
            })?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let contracted = plan.contracted_columns().find(|(s, t, column)| {
            s == schema && t == table && columns.iter().any(|c| c == column)
        });
        if let Some((_, _, column)) = contracted {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: format!("{schema}.{table}"),
                objects: format!("constraint {from} covers column {column}"),
                problem: format!(
                    "`migrate complete` drops or replaces column {column} before it would rename the constraint to {to}, and Postgres drops a constraint with a column it covers: the rename would find nothing and the migration could never complete"
                ),
                remedy: "rename the constraint in a migration of its own, before or after this one (a constraint rebuilt on a replaced column keeps its old name)".into(),
            });
        }
        let referenced = client
            .query(REFERENCED_COLUMNS_SQL, &[schema, table, from])
            .await
            .map_err(|error| {
                ControlError::database(
                    format!("reading what constraint {from} of {schema}.{table} references"),
                    &error,
                )
            })?;
        let replaced = referenced.iter().find_map(|row| {
            let (s, t, column): (String, String, String) = (row.get(0), row.get(1), row.get(2));
            plan.replaced
                .iter()
                .any(|old| old.schema == s && old.table == t && old.column == column)
                .then(|| format!("{s}.{t}.{column}"))
        });
        if let Some(column) = replaced {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: format!("{schema}.{table}"),
                objects: format!("foreign key {from} references column {column}"),
                problem: format!(
                    "the migration replaces {column}, so `migrate complete` drops the foreign key before its other steps and gives the one rebuilt into the new column its name after them: the rename to {to} would find nothing and the migration could never complete"
                ),
                remedy: "rename the constraint in a migration of its own, before or after this one (a foreign key rebuilt into a replaced column keeps its old name)".into(),
            });
        }
    }
    Ok(())
}
