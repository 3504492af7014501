//! Column defaults that call, by name as text, a sequence the contract drops.
//!
//! `DEFAULT nextval('models_ticket_seq')` holds a dependency on the sequence (the constant is a
//! `regclass`), and `dependents.rs` refuses the contract while one does. A default written
//! `nextval('models_ticket_seq'::text)` (an ORM's, or one kept from before 8.1) is resolved at
//! each call and holds none: the contract's drop of the serial column succeeds, takes the
//! sequence with it, and every insert into the other table fails from then on (42P01). Each
//! default calling a sequence function is read (`sql_names.rs`: libpg_query, not a text search)
//! and refused where it calls one of the dropped sequences, except the defaults that go with
//! the contract (the dropped column's own, a dropped table's).

use tokio_postgres::GenericClient;

use super::dependents::DroppedSequence;
use super::derive::{Dropped, MigrationPlan};
use super::error::MigrateError;
use super::sql_names::{names_table, read_body, sequences_called};
use crate::control::error::ControlError;

/// Refuses `plan` while a column default outside what its contract drops calls one of
/// `sequences` by name as text.
pub async fn refuse_defaults_calling(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    sequences: &[DroppedSequence],
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
        if goes_with_the_contract(plan, (&schema, &table, &column)) {
            continue;
        }
        let Ok(body) = read_body(&format!("SELECT {default}"), false, &[]) else {
            tracing::warn!(
                "the default of column {column} of {schema}.{table} could not be read; the sequences it calls were not checked"
            );
            continue;
        };
        let called = sequences_called(&body);
        if let Some((sequence_schema, sequence, why)) = sequences
            .iter()
            .find(|(schema, sequence, _)| names_table(&called, schema, sequence))
        {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: format!("{sequence_schema}.{sequence} ({why})"),
                objects: format!(
                    "the default of column {column} of {schema}.{table} calls the sequence by name ({default})"
                ),
                problem: "Postgres keeps no record of a sequence a default calls by its name as text (`nextval('…'::text)`): the contract drops the sequence, and every insert taking the default would fail from then on (42P01)".into(),
                remedy: format!(
                    "keep the sequence apart from its column (`ALTER SEQUENCE {sequence_schema}.{sequence} OWNED BY NONE`: the contract then leaves it), or give the column a default calling it as a `regclass` (`nextval('{sequence_schema}.{sequence}')`, which holds it), then start again; checked again at `migrate complete`"
                ),
            });
        }
    }
    Ok(())
}

/// Whether the default of `(schema, table, column)` goes with the contract of `plan`: the
/// column dropped, or its table.
fn goes_with_the_contract(
    plan: &MigrationPlan,
    (schema, table, column): (&str, &str, &str),
) -> bool {
    plan.dropped.iter().any(|dropped| match dropped {
        Dropped::Column {
            schema: dropped_schema,
            table: dropped_table,
            column: dropped_column,
        } => dropped_schema == schema && dropped_table == table && dropped_column == column,
        Dropped::Table {
            schema: dropped_schema,
            table: dropped_table,
        } => dropped_schema == schema && dropped_table == table,
        Dropped::Index { .. } | Dropped::Constraint { .. } => false,
    })
}
