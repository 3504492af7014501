//! Checks and foreign keys rebuilt on the column that replaces an old one. Each is added again
//! over the replacement in the expand, `NOT VALID` (so adding it reads no row), from the
//! catalog's own definition (`pg_get_constraintdef`) with the replaced columns renamed token by
//! token; validated after the backfill if the old one was valid; renamed to the old name at
//! complete, after the old column and its constraints are gone; dropped by a rollback. A check
//! whose expression does not fit the new type fails the expand, which then changes nothing.
//!
//! A check that a column is not null is not rebuilt: `alter_column` carries NOT NULL itself.
//!
//! Refused before any change: a column split or merged (no one replacement), a check when the
//! operation gives the column a `check` of its own (the two would stand side by side), a
//! foreign key whose `ON DELETE SET NULL|DEFAULT (…)` names columns.

use tokio_postgres::GenericClient;

use super::{Drops, NOT_NULL_SHAPED, Rebuild, TableContext, rebuilt_name, unsafe_to_replace};
use crate::control::error::ControlError;
use crate::control::migrate::derive::{Replaced, Step, over_physical};
use crate::control::migrate::error::MigrateError;
use crate::control::quote::{quote_ident, quote_qualified};

const NOT_VALID: &str = " NOT VALID";
const NO_INHERIT: &str = " NO INHERIT";
const FOREIGN_KEY: &str = "FOREIGN KEY (";
const REFERENCES: &str = ") REFERENCES ";

/// A check or foreign-key constraint of the table, as the catalog describes it.
pub(super) struct CatalogConstraint {
    pub(super) name: String,
    /// `c` (check) or `f` (foreign key).
    kind: String,
    /// The table's columns it names (a foreign key's referencing columns, in order).
    pub(super) columns: Vec<String>,
    definition: String,
    validated: bool,
}

impl CatalogConstraint {
    /// Whether the constraint goes with what the migration drops: itself, or a column it names.
    pub(super) fn dropped_along(&self, dropped: &Drops) -> bool {
        dropped.constraints.contains(&self.name)
            || self
                .columns
                .iter()
                .any(|column| dropped.columns.contains(column))
    }
}

/// The checks and foreign keys of `schema.table` that name a replaced column.
pub(super) async fn covering_constraints(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    replaced: &[Replaced],
) -> Result<Vec<CatalogConstraint>, MigrateError> {
    let names: Vec<&str> = replaced.iter().map(|r| r.column.as_str()).collect();
    let rows = client
        .query(
            &format!("WITH t AS (
                SELECT c.oid FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2),
             replaced AS (
                SELECT a.attnum FROM pg_catalog.pg_attribute a, t
                 WHERE a.attrelid = t.oid AND a.attname = ANY($3::text[]) AND NOT a.attisdropped)
             SELECT k.conname::text, k.contype::text,
                    ARRAY(SELECT a.attname::text
                            FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY AS c(attnum, n)
                            JOIN pg_catalog.pg_attribute a
                              ON a.attrelid = k.conrelid AND a.attnum = c.attnum
                           ORDER BY c.n),
                    pg_catalog.pg_get_constraintdef(k.oid), k.convalidated
               FROM pg_catalog.pg_constraint k, t
              WHERE k.conrelid = t.oid AND k.contype IN ('c', 'f')
                AND k.conkey && ARRAY(SELECT attnum FROM replaced)
                AND NOT {NOT_NULL_SHAPED}
              ORDER BY 1"),
            &[&schema, &table, &names],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the checks and foreign keys over the replaced columns of {schema}.{table}"),
                &error,
            )
        })?;
    Ok(rows
        .iter()
        .map(|row| CatalogConstraint {
            name: row.get(0),
            kind: row.get(1),
            columns: row.get(2),
            definition: row.get(3),
            validated: row.get(4),
        })
        .collect())
}

/// How `constraint` is rebuilt over the replacements of `replaced`, or why it cannot be.
pub(super) fn rebuild(
    context: &TableContext,
    constraint: &CatalogConstraint,
) -> Result<Rebuild, MigrateError> {
    let TableContext {
        plan,
        schema,
        table,
        complete_table,
        replaced,
    } = *context;
    let check = constraint.kind == "c";
    let object = format!(
        "{} {}",
        if check { "check" } else { "foreign key" },
        constraint.name
    );
    let refuse =
        |column: &str, why: &str| unsafe_to_replace(plan, schema, table, column, &object, why);
    let mut substitutes: Vec<(String, String)> = Vec::new();
    for old in replaced
        .iter()
        .filter(|old| constraint.columns.contains(&old.column))
    {
        let Some(replacement) = &old.replacement else {
            return Err(refuse(
                &old.column,
                &format!(
                    "{} replaces it with several columns or merges it into one",
                    old.operation
                ),
            ));
        };
        if check && replacement.check {
            return Err(refuse(
                &old.column,
                "the operation's `check` would stand beside it on the new column; leave `check` out to keep this one, or drop this one in an earlier migration (`drop_constraint`)",
            ));
        }
        substitutes.push((old.column.clone(), replacement.column.clone()));
    }
    let definition = constraint
        .definition
        .strip_suffix(NOT_VALID)
        .unwrap_or(&constraint.definition);
    let definition = if check {
        let (body, no_inherit) = match definition.strip_suffix(NO_INHERIT) {
            Some(body) => (body, NO_INHERIT),
            None => (definition, ""),
        };
        let expression = body.strip_prefix("CHECK ").unwrap_or(body);
        format!(
            "CHECK {}{no_inherit}",
            over_physical(expression, &substitutes)
        )
    } else {
        let Some(end) = definition
            .find(REFERENCES)
            .filter(|_| definition.starts_with(FOREIGN_KEY))
        else {
            return Err(refuse(
                &substitutes[0].0,
                "the catalog's definition of it is not the foreign key's usual form",
            ));
        };
        let referenced = &definition[end + 1..];
        if referenced.contains("SET NULL (") || referenced.contains("SET DEFAULT (") {
            return Err(refuse(
                &substitutes[0].0,
                "its ON DELETE action names the columns it sets",
            ));
        }
        let columns: Vec<String> = constraint
            .columns
            .iter()
            .map(|column| {
                let physical = substitutes
                    .iter()
                    .find(|(old, _)| old == column)
                    .map_or(column, |(_, new)| new);
                quote_ident(physical)
            })
            .collect();
        format!("{FOREIGN_KEY}{}){referenced}", columns.join(", "))
    };
    let new_name = rebuilt_name(&plan.version, &constraint.name);
    let qualified_table = quote_qualified(schema, table);
    let over: Vec<&str> = substitutes.iter().map(|(old, _)| old.as_str()).collect();
    let mut rebuild = Rebuild {
        expand: vec![Step::new(
            format!(
                "{object} again on the new version's column(s) for {}, for new rows now",
                over.join(", ")
            ),
            format!(
                "ALTER TABLE {qualified_table} ADD CONSTRAINT {} {definition}{NOT_VALID}",
                quote_ident(&new_name)
            ),
        )],
        complete: vec![Step::new(
            format!("give {new_name} its old name, {}", constraint.name),
            format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                quote_qualified(schema, complete_table),
                quote_ident(&new_name),
                quote_ident(&constraint.name)
            ),
        )],
        rollback: vec![Step::new(
            format!("drop {new_name}, the rebuilt {}", constraint.name),
            format!(
                "ALTER TABLE {qualified_table} DROP CONSTRAINT IF EXISTS {}",
                quote_ident(&new_name)
            ),
        )],
        ..Rebuild::default()
    };
    if constraint.validated {
        rebuild.validate.push(Step::new(
            format!("validate {new_name} (existing rows, without blocking writes)"),
            format!(
                "ALTER TABLE {qualified_table} VALIDATE CONSTRAINT {}",
                quote_ident(&new_name)
            ),
        ));
    }
    Ok(rebuild)
}
