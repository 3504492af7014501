//! The application's functions whose SQL names a table, or a column of a table, that the
//! contract drops or renames.
//!
//! A PL/pgSQL function, or an SQL function written as a string (not `BEGIN ATOMIC`), is kept
//! as text: Postgres records no dependency on what it names, so `dependents.rs`, which reads
//! `pg_depend`, cannot see it, and the contract's `DROP TABLE`, `DROP COLUMN` or `RENAME`
//! succeeds. From then on each call fails (`relation "models" does not exist`, 42P01; `column
//! "legacy_note" does not exist`, 42703): a trigger on another table that writes an audit row
//! into it, a procedure a job runs every night. Each such function is read (`sql_names.rs`:
//! libpg_query, not a text search), and what its statements name is compared with what the
//! contract takes away: a table by its name, qualified or not; a column where the statement
//! can only mean that table's, judged with the columns the catalog lists for the statement's
//! other relations; a PL/pgSQL declaration copying its type; a sequence the contract drops
//! with its column or table, called by name (`nextval('models_ticket_seq')`). SQL a body runs
//! by `EXECUTE` is read where it is a constant; SQL built at run time cannot be read before it
//! runs. Checked by `migrate start` (and `plan`), and again by `migrate complete` for what was
//! made since; and by `migrate rollback` for the tables the expand created and the columns it
//! added (and their sequences), which a function written for the new version may name.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

use super::default_calls;
use super::dependents::{self, DroppedSequence, TakenAway};
use super::derive::{Dropped, MigrationPlan, Rename};
use super::error::MigrateError;
use super::file::Migration;
use super::operation::Operation;
use super::sql_names::{
    Neighbours, columns_named, first_called, names_table, read_body, sequences_called, tables_named,
};
use super::sync_sql::FUNCTION_SCHEMA;
use super::trigger_fields::{Taking, added_columns, vanishing_columns};
use crate::control::error::ControlError;
use crate::control::views::mapping_functions::MARKER_PREFIX;
use crate::control::views::spec::DEFAULT_SCHEMA;
use crate::model::catalog_substitutes::SUBSTITUTE_SCHEMA_PREFIX;

/// A table the phase takes away: schema, name, what becomes of it.
type VanishingTable = (String, String, &'static str);

/// Refuses `plan` while a function of the application's names, in its SQL or its
/// declarations, a table or a column the contract drops or renames, or calls by name a
/// sequence it drops; or while a column default does (`default_calls.rs`).
pub async fn refuse_stale_function_bodies(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    let tables = vanishing_tables(plan);
    let columns = vanishing_columns(plan);
    let sequences = dependents::dropped_sequences(client, plan).await?;
    refuse_naming(
        client,
        plan,
        (&tables, &sequences),
        &columns,
        Taking::Contract,
    )
    .await?;
    let dropped: Vec<TakenAway> = plan
        .dropped
        .iter()
        .filter_map(|dropped| match dropped {
            Dropped::Column {
                schema,
                table,
                column,
            } => Some((schema.clone(), table.clone(), Some(column.clone()))),
            Dropped::Table { schema, table } => Some((schema.clone(), table.clone(), None)),
            Dropped::Index { .. } | Dropped::Constraint { .. } => None,
        })
        .collect();
    default_calls::refuse_defaults_calling(client, plan, (&sequences, &dropped), Taking::Contract)
        .await
}

/// Refuses to roll back the migration of `plan` (from `migration`) while a function of the
/// application's names a table its expand created or a column it added (one written for the
/// new version, say), or calls by name a sequence of theirs; or while a column default does:
/// the rollback drops them, and every call would fail from then on.
pub async fn refuse_before_rollback(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    migration: &Migration,
) -> Result<(), MigrateError> {
    let tables: Vec<VanishingTable> = migration
        .operations
        .iter()
        .filter_map(|operation| match operation {
            Operation::CreateTable(created) => Some((
                created
                    .schema
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
                created.table.clone(),
                "created by the expand",
            )),
            _ => None,
        })
        .collect();
    let columns = added_columns(plan);
    let made: Vec<TakenAway> =
        tables
            .iter()
            .map(|(schema, table, _)| (schema.clone(), table.clone(), None))
            .chain(plan.added_columns.iter().map(|(schema, table, column)| {
                (schema.clone(), table.clone(), Some(column.clone()))
            }))
            .collect();
    let sequences = dependents::sequences_rollback_drops(client, &made).await?;
    refuse_naming(
        client,
        plan,
        (&tables, &sequences),
        &columns,
        Taking::Rollback,
    )
    .await?;
    default_calls::refuse_defaults_calling(client, plan, (&sequences, &made), Taking::Rollback)
        .await
}

/// Refuses while a function names one of `vanishing`'s tables (schema, table, what becomes of
/// it), calls one of its sequences by name (schema, sequence, what takes it), or names one of
/// `columns`, which `taking` takes away.
async fn refuse_naming(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    (vanishing, sequences): (&[VanishingTable], &[DroppedSequence]),
    columns: &BTreeMap<(String, String), BTreeSet<String>>,
    taking: Taking,
) -> Result<(), MigrateError> {
    if vanishing.is_empty() && sequences.is_empty() && columns.is_empty() {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname,
                                      pg_catalog.pg_get_function_identity_arguments(p.oid)),
                    CASE l.lanname WHEN 'plpgsql' THEN pg_catalog.pg_get_functiondef(p.oid)
                                   ELSE p.prosrc END,
                    l.lanname = 'plpgsql',
                    coalesce(p.proargnames::text[], '{}')
               FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang
              WHERE l.lanname IN ('plpgsql', 'sql') AND p.prosqlbody IS NULL
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                -- Not an extension's, nor the versions' own: their catalog substitutes, their
                -- mapping functions (marked by their comment) and the write functions of their
                -- views' triggers.
                AND NOT pg_catalog.starts_with(n.nspname, $3)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                                   AND d.objid = p.oid AND d.deptype = 'e')
                AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE $2 || '%'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                  JOIN pg_catalog.pg_class v ON v.oid = t.tgrelid
                                  JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
                                  JOIN viewgate.version_objects o
                                    ON o.view_schema = vn.nspname AND o.view_name = v.relname
                                 WHERE t.tgfoid = p.oid)
              ORDER BY 1",
            &[&FUNCTION_SCHEMA, &MARKER_PREFIX, &SUBSTITUTE_SCHEMA_PREFIX],
        )
        .await
        .map_err(|error| ControlError::database("reading the application's functions", &error))?;
    for row in rows {
        let (function, source, plpgsql, parameters): (String, String, bool, Vec<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let body = match read_body(&source, plpgsql, &parameters) {
            Ok(body) => body,
            Err(problem) => {
                tracing::warn!(
                    "function {function} could not be read ({problem}); what it names was not checked"
                );
                continue;
            }
        };
        let named = tables_named(&body);
        let stale: Vec<String> = vanishing
            .iter()
            .filter(|(schema, table, _)| names_table(&named, schema, table))
            .map(|(schema, table, why)| format!("{schema}.{table} ({why})"))
            .collect();
        if !stale.is_empty() {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: stale.join(", "),
                objects: format!("function {function} names it in its SQL"),
                problem: format!(
                    "Postgres keeps no record of the tables a PL/pgSQL function or an SQL function written as a string names: {} the table, and every call of the function would fail from then on (42P01)",
                    taking.would()
                ),
                remedy: match taking {
                    Taking::Contract => "redefine the function so that it no longer names the table (the new version's view, or the table's new name once the contract has run, which the function can reach through `EXECUTE` meanwhile), or drop it, then start again; checked again at `migrate complete`".into(),
                    Taking::Rollback => "redefine the function so that it no longer names the table, or drop it, then roll back again".into(),
                },
            });
        }
        if let Some((schema, sequence, why)) = first_called(&sequences_called(&body), sequences) {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: format!("{schema}.{sequence} ({why})"),
                objects: format!("function {function} calls the sequence by name"),
                problem: format!(
                    "Postgres keeps no record of a sequence a function calls by its name as text (`nextval('…')`): {} the sequence, and every call of the function would fail from then on (42P01)",
                    taking.would()
                ),
                remedy: format!(
                    "keep the sequence apart from its column (`ALTER SEQUENCE {schema}.{sequence} OWNED BY NONE`: the {} then leaves it), or redefine the function so that it no longer calls it, then {}",
                    taking.phase(),
                    taking.then()
                ),
            });
        }
        let neighbours = if columns
            .keys()
            .any(|(schema, table)| names_table(&named, schema, table))
        {
            neighbours(client, &named).await?
        } else {
            Neighbours::new()
        };
        for ((schema, table), gone) in columns {
            let stale: Vec<&String> = columns_named(&body, schema, table, &neighbours)
                .into_iter()
                .filter_map(|column| gone.get(&column))
                .collect();
            if !stale.is_empty() {
                return Err(MigrateError::Unsafe {
                    version: plan.version.clone(),
                    table: format!("{schema}.{table}"),
                    objects: format!(
                        "function {function} names column(s) {} in its SQL",
                        stale
                            .iter()
                            .map(|column| column.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    problem: format!(
                        "Postgres keeps no record of the columns a PL/pgSQL function or an SQL function written as a string names: {} the column, and every call of the function that reaches the statement would fail from then on (42703)",
                        taking.would()
                    ),
                    remedy: format!(
                        "redefine the function so that it no longer names the column (read it through `to_jsonb(row)` while it exists, or leave the statement to the new version's view), or drop it, then {}",
                        taking.then()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The columns of each relation in `named` (names as written), as the catalog has them now.
async fn neighbours(
    client: &impl GenericClient,
    named: &BTreeSet<String>,
) -> Result<Neighbours, MigrateError> {
    let split = |name: &str| match name.rsplit_once('.') {
        Some((schema, relation)) => (Some(schema.to_owned()), relation.to_owned()),
        None => (None, name.to_owned()),
    };
    let relations: Vec<String> = named.iter().map(|name| split(name).1).collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, array_agg(a.attname::text)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE c.relname = ANY ($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
              GROUP BY 1, 2",
            &[&relations],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                "reading the columns of the relations functions name",
                &error,
            )
        })?;
    let mut neighbours = Neighbours::new();
    for name in named {
        let (schema, relation) = split(name);
        for row in &rows {
            let (in_schema, named_relation): (String, String) = (row.get(0), row.get(1));
            if named_relation == relation
                && schema.as_ref().is_none_or(|wanted| *wanted == in_schema)
            {
                let columns: Vec<String> = row.get(2);
                neighbours.entry(name.clone()).or_default().extend(columns);
            }
        }
    }
    Ok(neighbours)
}

/// The tables the contract drops or renames, as (schema, table, what the contract does).
fn vanishing_tables(plan: &MigrationPlan) -> Vec<VanishingTable> {
    let dropped = plan.dropped.iter().filter_map(|dropped| match dropped {
        Dropped::Table { schema, table } => Some((schema.clone(), table.clone(), "dropped")),
        _ => None,
    });
    let renamed = plan.renames.iter().filter_map(|rename| match rename {
        Rename::Table { schema, from, .. } => Some((schema.clone(), from.clone(), "renamed")),
        Rename::Column { .. } | Rename::Constraint { .. } => None,
    });
    dropped.chain(renamed).collect()
}
