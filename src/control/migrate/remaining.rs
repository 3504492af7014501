//! What a contract must leave the versions that remain: every base column their write
//! triggers and mapping functions name, by text, still there.
//!
//! A version's view keeps its base columns by number and follows a rename; its write trigger
//! and the mapping functions the proxy's upserts and MERGEs call are made from the spec's
//! text (write-back targets, hidden defaults, read expressions), and do not. A contract that
//! drops, replaces or renames a column one of them names would leave them failing (42703),
//! and once a later migration added a column of that name, reading and writing a column the
//! version does not have (the forty-ninth and fiftieth red-team passes: a hidden default went
//! into a re-added column, and a read expression spelled `U&"…"` past a check of its words
//! read one). So after the contract's DDL, inside its transaction, each remaining version's
//! names are checked against the tables as they now are; a failure refuses the contract, and
//! the transaction leaves nothing changed.

use tokio_postgres::Transaction;

use super::error::MigrateError;
use crate::control::catalog;
use crate::control::error::ControlError;
use crate::control::quote::quote_qualified;
use crate::control::views::definition;
use crate::control::views::spec::ColumnSource;

/// Whether a base column exists, by schema, table and name.
const COLUMN_EXISTS_SQL: &str = "
SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
                  AND a.attnum > 0 AND NOT a.attisdropped)";

/// Refuses the contract of the migration to `migrating` when a remaining version names, in
/// its write-back targets, hidden defaults or read expressions, a base column that is gone.
pub async fn check(transaction: &Transaction<'_>, migrating: &str) -> Result<(), MigrateError> {
    let refused = |problem: String| MigrateError::Refused {
        version: migrating.to_owned(),
        operation: "what the contract leaves the remaining versions".into(),
        problem,
    };
    for (name, recorded) in &catalog::load_versions(transaction).await? {
        if recorded.state == "retired" {
            continue;
        }
        let Some(definition) = definition::load(transaction, name).await? else {
            continue;
        };
        for table in &definition.version.tables {
            let Some(managed) = definition.managed(&table.base) else {
                continue;
            };
            let written = table
                .columns
                .iter()
                .filter_map(|column| match &column.source {
                    ColumnSource::Expression { write, .. } => Some(write.keys()),
                    ColumnSource::Physical { .. } => None,
                })
                .flatten()
                .map(|base| (base, "writes back to"))
                .chain(
                    table
                        .hidden_defaults
                        .keys()
                        .map(|base| (base, "stores a hidden default in")),
                );
            for (base, how) in written {
                let exists: bool = transaction
                    .query_one(COLUMN_EXISTS_SQL, &[&managed.schema, &managed.name, base])
                    .await
                    .map_err(|error| {
                        ControlError::database("reading the contracted table's columns", &error)
                    })?
                    .get(0);
                if !exists {
                    return Err(refused(format!(
                        "version {name} {how} base column {base} of {}.{}, which the contract drops or renames; its write trigger names it by text. Retire version {name} (viewgate views drop) before completing",
                        managed.schema, managed.name
                    )));
                }
            }
            for column in &table.columns {
                let ColumnSource::Expression { expression, .. } = &column.source else {
                    continue;
                };
                // The spec's expression is SQL by definition, pasted as in the view it
                // defines. A failure aborts the transaction, which the refusal rolls back.
                let probe = format!(
                    "SELECT ({expression}) FROM {} LIMIT 0",
                    quote_qualified(&managed.schema, &managed.name)
                );
                if let Err(error) = transaction.batch_execute(&probe).await {
                    let reason = error
                        .as_db_error()
                        .map_or_else(|| error.to_string(), |db| db.message().to_owned());
                    return Err(refused(format!(
                        "version {name} reads its column {} as an expression over {}.{} that no longer holds after the contract ({reason}); its write trigger and mapping functions are made from that text. Retire version {name} (viewgate views drop) before completing",
                        column.name, managed.schema, managed.name
                    )));
                }
            }
        }
    }
    Ok(())
}
