//! Column defaults that call, by name as text, a sequence the contract or a rollback drops.
//!
//! `DEFAULT nextval('models_ticket_seq')` holds a dependency on the sequence (the constant is a
//! `regclass`), and `dependents.rs` refuses the contract while one does. A default written
//! `nextval('models_ticket_seq'::text)` (an ORM's, or one kept from before 8.1) is resolved at
//! each call and holds none: the contract's drop of the serial column succeeds, takes the
//! sequence with it, and every insert into the other table fails from then on (42P01). Each
//! default calling a sequence function is read (`sql_names.rs`: libpg_query, not a text search)
//! and refused where it calls one of the dropped sequences, except the defaults that go along
//! (the dropped column's own, a dropped table's). `migrate rollback` is checked the same way
//! for the sequences of the tables its expand created and the columns it added.

use tokio_postgres::GenericClient;

use super::dependents::{DroppedSequence, TakenAway};
use super::derive::MigrationPlan;
use super::error::MigrateError;
use super::sql_names::{first_called, read_body, sequences_called_as_text};
use super::trigger_fields::Taking;
use crate::control::error::ControlError;

/// Refuses `plan` while a column default calls one of `sequences` by name as text, but the
/// defaults that go with what `taking` takes away (`taken`: the columns and tables).
pub(super) async fn refuse_defaults_calling(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    (sequences, taken): (&[DroppedSequence], &[TakenAway]),
    taking: Taking,
) -> Result<(), MigrateError> {
    if sequences.is_empty() {
        return Ok(());
    }
    // Every default that calls a sequence function, but the versions' views' copies of the
    // base table's defaults (dropped first, made again from what remains).
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text,
                    pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
               FROM pg_catalog.pg_attrdef ad
               JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
              WHERE NOT a.attisdropped
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ~ '(nextval|currval|setval)\\('
                AND NOT EXISTS (SELECT 1 FROM viewgate.version_objects o
                                 WHERE o.view_schema = n.nspname AND o.view_name = c.relname)
              ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(|error| {
            ControlError::database("reading the column defaults that call sequences", &error)
        })?;
    for row in rows {
        let (schema, table, column, default): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if goes_along(taken, (&schema, &table, &column)) {
            continue;
        }
        let Ok(body) = read_body(&format!("SELECT {default}"), false, &[]) else {
            tracing::warn!(
                "the default of column {column} of {schema}.{table} could not be read; the sequences it calls were not checked"
            );
            continue;
        };
        if let Some((sequence_schema, sequence, why)) =
            first_called(&sequences_called_as_text(&body), sequences)
        {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: format!("{sequence_schema}.{sequence} ({why})"),
                objects: format!(
                    "the default of column {column} of {schema}.{table} calls the sequence by name ({default})"
                ),
                problem: format!(
                    "Postgres keeps no record of a sequence a default calls by its name as text (`nextval('…'::text)`): {} the sequence, and every insert taking the default would fail from then on (42P01)",
                    taking.would()
                ),
                remedy: match taking {
                    Taking::Contract => format!(
                        "keep the sequence apart from its column (`ALTER SEQUENCE {sequence_schema}.{sequence} OWNED BY NONE`: the contract then leaves it), or give the column a default calling it as a `regclass` (`nextval('{sequence_schema}.{sequence}')`, which holds it), then start again; checked again at `migrate complete`"
                    ),
                    Taking::Rollback => format!(
                        "give the column a default that does not call the sequence, or keep the sequence apart from its column (`ALTER SEQUENCE {sequence_schema}.{sequence} OWNED BY NONE`: the rollback then leaves it), then roll back again"
                    ),
                },
            });
        }
    }
    Ok(())
}

/// Whether the default of `(schema, table, column)` goes along with what is `taken`: the column
/// itself, or its table.
fn goes_along(taken: &[TakenAway], (schema, table, column): (&str, &str, &str)) -> bool {
    taken
        .iter()
        .any(|(taken_schema, taken_table, taken_column)| {
            taken_schema == schema
                && taken_table == table
                && taken_column.as_deref().is_none_or(|taken| taken == column)
        })
}
