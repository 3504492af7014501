//! A version's view changed in place where its columns allow. Made anew (`DROP VIEW`, `CREATE
//! VIEW`), a view takes with it what the application built on it: `views apply` and the
//! contract, which remakes the remaining version's views over the renamed columns, were
//! refused (2BP01) while a report view read `model_metadata_v2`, and a grant on it was lost.
//! `CREATE OR REPLACE VIEW` keeps all of it, and Postgres allows it when the view keeps its
//! columns (names, types and order; new ones may follow): always so at the contract. So
//! apply tries it first, in a savepoint, on a view cleared of what the templates make again
//! (its triggers and its columns' defaults, which would otherwise stay or collide), and makes
//! the view anew only when Postgres refuses the replacement for its columns (42P16).

use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::generate::GeneratedView;
use crate::control::quote::{quote_ident, quote_qualified};

/// The savepoint the attempt runs under.
const SAVEPOINT: &str = "viewgate_view_in_place";

/// Replaces `view` in place if it exists and Postgres allows it; `Ok(false)` when the view is
/// new or its columns changed so that it must be made anew (nothing of the attempt remains).
/// Two round trips when it is replaced (the contract holds its tables' locks meanwhile).
pub async fn replace(
    client: &impl GenericClient,
    view: &GeneratedView,
) -> Result<bool, tokio_postgres::Error> {
    // A template of the user's written before `in_place` renders the same both ways: its
    // "replacement" would drop the view, and the grants would not be given back.
    if view.in_place_sql == view.sql {
        return Ok(false);
    }
    let (schema, name) = (&view.plan.view_schema, &view.plan.view_name);
    let Some(clearing) = clearing_sql(client, schema, name).await? else {
        return Ok(false);
    };
    // One batch: Postgres stops at the first failing statement, before the release.
    let attempt = format!(
        "SAVEPOINT {SAVEPOINT};\n{clearing};\n{}\n;RELEASE SAVEPOINT {SAVEPOINT}",
        view.in_place_sql
    );
    match client.batch_execute(&attempt).await {
        Ok(()) => Ok(true),
        Err(error) if error.code() == Some(&SqlState::INVALID_TABLE_DEFINITION) => {
            client
                .batch_execute(&format!(
                    "ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
                ))
                .await?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// The statements that take from view `schema.name` its triggers and its columns' defaults,
/// which the templates make again; `None` if there is no such view.
async fn clearing_sql(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT ARRAY(SELECT t.tgname::text FROM pg_catalog.pg_trigger t
                           WHERE t.tgrelid = c.oid AND NOT t.tgisinternal ORDER BY t.tgname),
                    ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attrdef d
                            JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                           WHERE d.adrelid = c.oid ORDER BY a.attnum)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'v'",
            &[&schema, &name],
        )
        .await?
    else {
        return Ok(None);
    };
    let view = quote_qualified(schema, name);
    let triggers: Vec<String> = row.get(0);
    let defaults: Vec<String> = row.get(1);
    let statements: Vec<String> = triggers
        .iter()
        .map(|trigger| format!("DROP TRIGGER {} ON {view}", quote_ident(trigger)))
        .chain(defaults.iter().map(|column| {
            format!(
                "ALTER VIEW {view} ALTER COLUMN {} DROP DEFAULT",
                quote_ident(column)
            )
        }))
        .collect();
    Ok(Some(statements.join(";\n")))
}
