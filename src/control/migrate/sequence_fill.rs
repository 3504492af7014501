//! The fill of a retyped column's stand-in where a sequence numbers the column (an identity,
//! or a serial's `nextval` default): one number a row, and no privilege an identity did not ask.
//!
//! While a migration retypes such a column, the new version writes the new column
//! (`_vg_v2_id`), which has no default until the contract. A default calling the sequence took
//! a second number for every insert (the key ran towards the old type's limit twice as fast,
//! and that limit is why keys are widened), and, for an identity, it needed the writer to hold
//! a privilege on the sequence, which an identity never asks: every insert of a role granted
//! only the table failed at both versions once the expand had run (42501, `permission denied
//! for sequence`). Without the default, an insert at the new version that leaves the column
//! out has it computed here by `up` from the number the old column took, before the `down`
//! trigger computes the old column back from it. Older writers need nothing new: their `up`
//! trigger computes the column on every insert.
//!
//! Its trigger fires before every `down` trigger (`~vg_sync_00_…` sorts before `~vg_sync_0_…`),
//! and before the fills of later migrations, oldest first.

use super::derive::{Assign, MigrationPlan, TableSync};
use super::error::MigrateError;
use super::state::MigrationRecord;
use super::sync_sql::{
    FUNCTION_SCHEMA, ID_DIGITS, TRIGGER_PREFIX, declarations, function_sql, new_writer_test,
    read_by, table_hash, trigger_sql,
};
use crate::control::quote::{quote_ident, quote_qualified};
use crate::model::sync_function;

/// The fill trigger's name and its function's.
pub fn names(migration_id: i64, schema: &str, table: &str) -> (String, String) {
    (
        format!("{TRIGGER_PREFIX}00_{migration_id:0ID_DIGITS$}_f"),
        sync_function::fill_name(migration_id, &table_hash(schema, table)),
    )
}

/// The SQL creating the fill trigger of `sync`'s stand-ins (none when it has none).
pub fn create_sql(migration_id: i64, sync: &TableSync, old_side: &[String]) -> String {
    let fills: Vec<&Assign> = sync
        .up
        .iter()
        .filter(|assign| sync.filled.contains(&assign.target))
        .collect();
    if fills.is_empty() {
        return String::new();
    }
    let table = quote_qualified(&sync.schema, &sync.table);
    let read = read_by(&sync.up_columns, &fills);
    let assignments: String = fills
        .iter()
        .map(|assign| {
            let target = quote_ident(&assign.target);
            format!(
                "    IF NEW.{target} IS NULL THEN\n        NEW.{target} := (\n            {}\n        );\n    END IF;\n",
                assign.expression
            )
        })
        .collect();
    let absent: Vec<String> = fills
        .iter()
        .map(|assign| format!("NEW.{} IS NULL", quote_ident(&assign.target)))
        .collect();
    let condition = format!(
        "({}) AND {}",
        absent.join(" OR "),
        new_writer_test(old_side)
    );
    let (trigger, function) = names(migration_id, &sync.schema, &sync.table);
    let mut sql = function_sql(
        &sync.schema,
        &function,
        &declarations(&read, &table, true),
        "",
        &assignments,
    );
    sql.push_str(&trigger_sql(
        &trigger, "INSERT", &table, &condition, &function,
    ));
    sql
}

/// The SQL dropping the fill trigger and its function, whether or not they exist.
pub fn drop_sql(migration_id: i64, schema: &str, table: &str) -> String {
    let (trigger, function) = names(migration_id, schema, table);
    format!(
        "DROP TRIGGER IF EXISTS {} ON {};\nDROP FUNCTION IF EXISTS {}();\n",
        quote_ident(&trigger),
        quote_qualified(schema, table),
        quote_qualified(FUNCTION_SCHEMA, &function)
    )
}

/// Refuses `plan` (of the migration to `version`) where it replaces a stand-in of a live
/// migration (`live`): the stand-in has no default, its numbers come from the old column
/// through that migration's fill, and a column made from it would get none; the numbering the
/// earlier contract gives it would go with the column this one's contract drops.
pub fn refuse_replacing_a_stand_in(
    version: &str,
    plan: &MigrationPlan,
    live: &[MigrationRecord],
) -> Result<(), MigrateError> {
    for replaced in &plan.replaced {
        let owner = live.iter().find(|record| {
            record.plan.syncs.iter().any(|sync| {
                sync.schema == replaced.schema
                    && sync.table == replaced.table
                    && sync.filled.contains(&replaced.column)
            })
        });
        if let Some(owner) = owner {
            return Err(MigrateError::Refused {
                version: version.to_owned(),
                operation: replaced.operation.clone(),
                problem: format!(
                    "base column {} of {}.{} stands in for a column numbered by a sequence that the migration to {} retypes, and takes its numbers from the old column until that migration completes: a column made from it would have none. Complete the migration to {} first (its contract numbers the column itself), then change it",
                    replaced.column, replaced.schema, replaced.table, owner.version, owner.version
                ),
            });
        }
    }
    Ok(())
}
