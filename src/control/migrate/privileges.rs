//! Who could plant a function that a migration's expressions would call, refused before any
//! change. A migration's `up` and `down` run unqualified: in the backfill as the catalog role,
//! in the sync triggers in each writer's session, on the very rows whose hidden columns they
//! read. A client that may create a function of a more exact argument type
//! (`public.lower(varchar)`) than the built-in is handed those values and, in the backfill,
//! runs with the catalog role's rights (the thirty-first red-team pass rewrote its own
//! enforced routing rule so). The functions do not pin their search_path instead: a `SET`
//! clause costs about 0.8 µs per row on every write through the triggers (measured on
//! PostgreSQL 15), half again their cost.

use tokio_postgres::GenericClient;

use super::error::MigrateError;
use crate::control::error::ControlError;
use crate::control::quote::quote_ident;

/// Refuses a database where `PUBLIC` may create in some schema (PostgreSQL 14 and earlier's
/// default on `public`), or where a login role other than the catalog role, a superuser or
/// the schema's owner (and its members) may: a `CREATE` granted to the application's role.
pub async fn refuse_where_clients_may_plant_functions(
    client: &impl GenericClient,
    version: &str,
) -> Result<(), MigrateError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, NULL::text FROM pg_catalog.pg_namespace n
              WHERE pg_catalog.has_schema_privilege('public', n.oid, 'CREATE')
                AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
             UNION ALL
             SELECT n.nspname::text, r.rolname::text
               FROM pg_catalog.pg_namespace n CROSS JOIN pg_catalog.pg_roles r
              WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
                AND r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
                AND NOT pg_catalog.has_schema_privilege('public', n.oid, 'CREATE')
                AND NOT pg_catalog.pg_has_role(r.oid, n.nspowner, 'USAGE')
                AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
              ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|error| {
            ControlError::database("reading which roles may create in which schemas", &error)
        })?;
    if rows.is_empty() {
        return Ok(());
    }
    let grants: Vec<(String, Option<String>)> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let who = grants
        .iter()
        .map(|(schema, role)| match role {
            Some(role) => format!("{role} in {schema}"),
            None => format!("every role (PUBLIC) in {schema}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let revoke = grants
        .iter()
        .map(|(schema, role)| {
            format!(
                "REVOKE CREATE ON SCHEMA {} FROM {};",
                quote_ident(schema),
                role.as_deref().map_or("PUBLIC".to_owned(), quote_ident)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    Err(MigrateError::Refused {
        version: version.to_owned(),
        operation: "the database's privileges".into(),
        problem: format!(
            "roles that may connect may create objects where the migration's expressions look for functions ({who}; PUBLIC has CREATE on public by default up to PostgreSQL 14), so a client could plant a function they would call: in the backfill with the catalog role's rights, in the sync triggers with values its version does not show; run `{revoke}` first (a role that should keep CREATE there: make it the schema's owner or a member of it)"
        ),
    })
}
