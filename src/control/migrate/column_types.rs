//! A new column's `type` names a type, and nothing more.
//!
//! The expand adds a migration's columns to existing tables with `ALTER TABLE … ADD COLUMN
//! <name> <type>`, and the file's `type` is SQL. A type alone is added without touching a
//! row; more is not: `bigserial` (a volatile default for every row), `… GENERATED ALWAYS AS
//! (…) STORED` or `… DEFAULT clock_timestamp()` rewrite the whole table, `… UNIQUE` builds an
//! index and `… REFERENCES …` scans it, each under the ACCESS EXCLUSIVE lock the `ALTER`
//! holds, so every reader and writer of the table waits for as long. So each `type` of
//! `add_column`, `alter_column`, `split_column` and `merge_columns` is read by Postgres's own
//! type-name parser (`to_regtype`) before any change, and one it does not read as a type is
//! refused. A table `create_table` makes is new and empty: its columns may say anything.

use tokio_postgres::GenericClient;

use super::error::MigrateError;
use super::file::Migration;
use super::operation::Operation;

/// Refuses the migration if the `type` of a column it adds to an existing table is not just a
/// type name.
pub async fn refuse_more_than_types(
    client: &impl GenericClient,
    migration: &Migration,
) -> Result<(), MigrateError> {
    for (index, operation) in migration.operations.iter().enumerate() {
        for sql_type in added_types(operation) {
            let read = client
                .query_one("SELECT pg_catalog.to_regtype($1) IS NOT NULL", &[&sql_type])
                .await;
            let problem = match read {
                Ok(row) if row.get::<_, bool>(0) => continue,
                Ok(_) => "Postgres knows no such type".to_owned(),
                Err(error) => error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
            };
            return Err(MigrateError::Refused {
                version: migration.version.clone(),
                operation: format!("operation {} ({})", index + 1, operation.kind()),
                problem: format!(
                    "type {sql_type:?} is not a type name ({problem}). `type` names a type and nothing more: a column added to a table with a serial type, a generated or identity clause, or a volatile default in it would rewrite the table under a lock that blocks every reader and writer. Give defaults, checks, uniqueness and keys their own fields; for a serial column, create its sequence (raw_sql) and add a bigint with default = \"nextval('…')\": the backfill numbers the existing rows in batches"
                ),
            });
        }
    }
    Ok(())
}

/// The types of the columns `operation` adds to a table that exists before the migration.
fn added_types(operation: &Operation) -> Vec<&str> {
    match operation {
        Operation::AddColumn(op) => vec![op.column.sql_type.as_str()],
        Operation::AlterColumn(op) => op.sql_type.as_deref().into_iter().collect(),
        Operation::SplitColumn(op) => op
            .into
            .iter()
            .map(|part| part.column.sql_type.as_str())
            .collect(),
        Operation::MergeColumns(op) => vec![op.into.sql_type.as_str()],
        _ => Vec::new(),
    }
}
