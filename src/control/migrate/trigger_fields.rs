//! The application's PL/pgSQL triggers that name a field of the row (`NEW.legacy_note`,
//! `OLD.legacy_note`) which the contract drops or renames, refused before any change.
//!
//! Postgres records no dependency on what a PL/pgSQL body names, so `dependents.rs`, which
//! reads `pg_depend`, cannot see them: the contract succeeded, and from then on every write that
//! fired such a trigger failed (`record "new" has no field "legacy_note"`, 42703), an outage
//! beginning at `migrate complete`. Each trigger function on a table whose columns the contract
//! takes away is compiled by libpg_query's PL/pgSQL parser, whose record-field datums are the
//! fields the body names of its records: not a text search, so a comment, a string
//! (`to_jsonb(NEW) ->> 'legacy_note'`) or a longer name is no reason to refuse. Checked by
//! `migrate start` (and `plan`), and again by `migrate complete` for what was made since; and
//! by `migrate rollback` for the columns the expand added, which a trigger written for the new
//! version may name.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tokio_postgres::GenericClient;

use super::derive::{MigrationPlan, NEW_COLUMN_PREFIX, Rename};
use super::error::MigrateError;
use super::sync_sql::FUNCTION_SCHEMA;
use crate::control::error::ControlError;

/// Which command would take the columns (or tables) away.
#[derive(Debug, Clone, Copy)]
pub(super) enum Taking {
    /// `migrate complete`: the columns it drops or renames.
    Contract,
    /// `migrate rollback`: the columns the expand added.
    Rollback,
}

impl Taking {
    fn what_it_does(self) -> &'static str {
        match self {
            Taking::Contract => "`migrate complete` drops or renames that column",
            Taking::Rollback => "`migrate rollback` drops that column, which the expand added",
        }
    }

    /// What it would do to a table or column named after it.
    pub(super) fn would(self) -> &'static str {
        match self {
            Taking::Contract => "`migrate complete` would drop or rename",
            Taking::Rollback => "`migrate rollback` would drop, since the expand made it,",
        }
    }

    /// The phase's name in a sentence.
    pub(super) fn phase(self) -> &'static str {
        match self {
            Taking::Contract => "contract",
            Taking::Rollback => "rollback",
        }
    }

    pub(super) fn then(self) -> &'static str {
        match self {
            Taking::Contract => "start again; checked again at `migrate complete`",
            Taking::Rollback => "roll back again",
        }
    }
}

/// Refuses `plan` while a PL/pgSQL trigger of the application's names a field of the row that
/// the contract drops or renames.
pub async fn refuse_stale_trigger_fields(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    refuse_fields(client, plan, vanishing_columns(plan), Taking::Contract).await
}

/// Refuses to roll `plan` back while a PL/pgSQL trigger of the application's names a field of
/// the row that the expand added (one written for the new version, say): the rollback drops
/// the column, and every write firing the trigger would fail from then on.
pub async fn refuse_before_rollback(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    refuse_fields(client, plan, added_columns(plan), Taking::Rollback).await
}

/// The columns the expand added, by table.
pub(super) fn added_columns(plan: &MigrationPlan) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut added: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (schema, table, column) in &plan.added_columns {
        added
            .entry((schema.clone(), table.clone()))
            .or_default()
            .insert(column.clone());
    }
    added
}

async fn refuse_fields(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    taken: BTreeMap<(String, String), BTreeSet<String>>,
    taking: Taking,
) -> Result<(), MigrateError> {
    for ((schema, table), vanishing) in taken {
        let rows = client
            .query(
                "SELECT t.tgname,
                        pg_catalog.format('%I.%I(%s)', pn.nspname, p.proname,
                                          pg_catalog.pg_get_function_identity_arguments(p.oid)),
                        pg_catalog.pg_get_functiondef(p.oid)
                   FROM pg_catalog.pg_trigger t
                   JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                   JOIN pg_catalog.pg_language l ON l.oid = p.prolang
                   JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
                  WHERE t.tgrelid = pg_catalog.format('%I.%I', $1::text, $2::text)::regclass
                    AND NOT t.tgisinternal AND l.lanname = 'plpgsql' AND pn.nspname <> $3
                  ORDER BY t.tgname",
                &[&schema, &table, &FUNCTION_SCHEMA],
            )
            .await
            .map_err(|error| {
                ControlError::database(format!("reading the triggers of {schema}.{table}"), &error)
            })?;
        for row in rows {
            let (trigger, function, definition): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let fields = match row_fields(&definition) {
                Ok(fields) => fields,
                Err(problem) => {
                    tracing::warn!(
                        "trigger {trigger} on {schema}.{table}: function {function} could not be read ({problem}); the fields of the row it names were not checked"
                    );
                    continue;
                }
            };
            let named: Vec<String> = fields
                .iter()
                .filter(|(_, field)| vanishing.contains(field))
                .map(|(record, field)| format!("{}.{field}", record.to_uppercase()))
                .collect();
            if !named.is_empty() {
                return Err(MigrateError::Unsafe {
                    version: plan.version.clone(),
                    table: format!("{schema}.{table}"),
                    objects: format!(
                        "trigger {trigger} (function {function}) names {}",
                        named.join(", ")
                    ),
                    problem: format!(
                        "{}, and Postgres keeps no record of what a PL/pgSQL body names: it would succeed and every write that fires the trigger would fail from then on (42703)",
                        taking.what_it_does()
                    ),
                    remedy: format!(
                        "redefine the function so that it does not name the column (`to_jsonb(NEW) ->> '<column>'` reads it while it exists, and NULL once it is gone), or drop the trigger, then {}",
                        taking.then()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The physical columns of each table that have no column of their name once the contract
/// has run: dropped, replaced under another name (or by several), or renamed.
pub(super) fn vanishing_columns(
    plan: &MigrationPlan,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut vanishing: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut arriving: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (schema, table, column) in plan.contracted_columns() {
        vanishing
            .entry((schema.to_owned(), table.to_owned()))
            .or_default()
            .insert(column.to_owned());
    }
    for rename in &plan.renames {
        if let Rename::Column {
            schema,
            table,
            from,
            to,
        } = rename
        {
            let key = (schema.clone(), table.clone());
            if !from.starts_with(NEW_COLUMN_PREFIX) {
                vanishing
                    .entry(key.clone())
                    .or_default()
                    .insert(from.clone());
            }
            arriving.entry(key).or_default().insert(to.clone());
        }
    }
    for (key, columns) in &mut vanishing {
        if let Some(arrived) = arriving.get(key) {
            columns.retain(|column| !arrived.contains(column));
        }
    }
    vanishing.retain(|_, columns| !columns.is_empty());
    vanishing
}

/// The fields of `NEW` and `OLD` that the PL/pgSQL function `definition` (a `CREATE FUNCTION`
/// statement) names, as (record, field).
fn row_fields(definition: &str) -> Result<BTreeSet<(String, String)>, String> {
    let parsed = pg_query::parse_plpgsql(definition).map_err(|error| error.to_string())?;
    let mut fields = BTreeSet::new();
    for function in parsed.as_array().into_iter().flatten() {
        let function = &function["PLpgSQL_function"];
        let datums = function["datums"].as_array().map_or(&[][..], Vec::as_slice);
        let record_name = |number: &Value| {
            let number = number.as_u64()?;
            let record = &datums.get(usize::try_from(number).ok()?)?["PLpgSQL_rec"];
            record["refname"].as_str().map(str::to_owned)
        };
        let rows: Vec<u64> = [&function["new_varno"], &function["old_varno"]]
            .into_iter()
            .filter_map(Value::as_u64)
            .collect();
        for datum in datums {
            let field = &datum["PLpgSQL_recfield"];
            let (Some(parent), Some(name)) =
                (field["recparentno"].as_u64(), field["fieldname"].as_str())
            else {
                continue;
            };
            if rows.contains(&parent)
                && let Some(record) = record_name(&field["recparentno"])
            {
                fields.insert((record, name.to_owned()));
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(body: &str) -> Vec<String> {
        row_fields(&format!(
            "CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $x$ BEGIN {body} RETURN NEW; END $x$"
        ))
        .expect("parses")
        .into_iter()
        .map(|(record, field)| format!("{record}.{field}"))
        .collect()
    }

    #[test]
    fn the_fields_named_of_new_and_old_are_found_wherever_they_are_named() {
        assert_eq!(
            fields_of(
                "IF NEW.note IS DISTINCT FROM OLD.\"Note\" THEN
                     INSERT INTO audit VALUES (OLD.size);
                     NEW.size := 1;
                 END IF;"
            ),
            ["new.note", "new.size", "old.Note", "old.size"]
        );
    }

    #[test]
    fn comments_strings_and_other_records_name_no_field() {
        assert_eq!(
            fields_of(
                "-- NEW.note
                 PERFORM to_jsonb(NEW) ->> 'note';
                 PERFORM 'NEW.size';"
            ),
            Vec::<String>::new()
        );
    }
}
