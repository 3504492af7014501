//! Who could plant a function that a migration's expressions would call, refused before any
//! change. A migration's `up` and `down` run unqualified: in the backfill as the catalog role,
//! in the sync triggers in each writer's session, on the very rows whose hidden columns they
//! read. A client that may create a function of a more exact argument type
//! (`public.lower(varchar)`) than the built-in is handed those values and, in the backfill,
//! runs with the catalog role's rights (the thirty-first red-team pass rewrote its own
//! enforced routing rule so). The trigger functions pin their search_path to the catalog,
//! the table's schema and then `pg_temp` (`sync.rs`), so what is checked here is who may
//! create in a schema at all. Only the catalog role and superusers are trusted to create:
//! viewgate cannot tell an administrator's login role from a client's.

use tokio_postgres::GenericClient;

use super::error::MigrateError;
use crate::control::error::ControlError;
use crate::control::quote::quote_ident;

/// Refuses a database where `PUBLIC`, or a login role other than the catalog role and the
/// superusers (itself or any role it may `SET ROLE` to, inherited or not), may create in some
/// schema or create schemas in the database: a `CREATE` granted to the application's role, or
/// held as an owner (the thirty-seventh red-team pass
/// planted `appx.lower(text)` in a schema the application's role owned, put it on its
/// search_path, and the sync trigger handed it another version's value).
pub async fn refuse_where_clients_may_plant_functions(
    client: &impl GenericClient,
    version: &str,
) -> Result<(), MigrateError> {
    let rows = client
        .query(
            "SELECT 'schema', n.nspname::text, NULL::text FROM pg_catalog.pg_namespace n
              WHERE pg_catalog.has_schema_privilege('public', n.oid, 'CREATE')
                AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
             UNION ALL
             SELECT DISTINCT 'schema', n.nspname::text, r.rolname::text
               FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles r, pg_catalog.pg_roles g
              WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
                AND r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
                AND NOT pg_catalog.has_schema_privilege('public', n.oid, 'CREATE')
                AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')
                AND pg_catalog.has_schema_privilege(g.oid, n.oid, 'CREATE')
             UNION ALL
             SELECT DISTINCT 'database', d.datname::text, r.rolname::text
               FROM pg_catalog.pg_database d, pg_catalog.pg_roles r, pg_catalog.pg_roles g
              WHERE d.datname = pg_catalog.current_database()
                AND r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user
                AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')
                AND pg_catalog.has_database_privilege(g.oid, d.oid, 'CREATE')
              ORDER BY 1 DESC, 2, 3",
            &[],
        )
        .await
        .map_err(|error| {
            ControlError::database("reading which roles may create in which schemas", &error)
        })?;
    if rows.is_empty() {
        return Ok(());
    }
    let grants: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let who = grants
        .iter()
        .map(|(kind, object, role)| match (kind.as_str(), role) {
            ("database", Some(role)) => format!("{role} may create schemas in database {object}"),
            (_, Some(role)) => format!("{role} in {object}"),
            (_, None) => format!("every role (PUBLIC) in {object}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let revoke = grants
        .iter()
        .map(|(kind, object, role)| {
            format!(
                "REVOKE CREATE ON {} {} FROM {};",
                kind.to_uppercase(),
                quote_ident(object),
                role.as_deref().map_or("PUBLIC".to_owned(), quote_ident)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    Err(MigrateError::Refused {
        version: version.to_owned(),
        operation: "the database's privileges".into(),
        problem: format!(
            "roles that may connect may create objects where the migration's expressions could find functions ({who}; PUBLIC has CREATE on public by default up to PostgreSQL 14), so a client could plant a function they would call: in the backfill with the catalog role's rights, in the sync triggers with values its version does not show; run `{revoke}` first (an owner's CREATE, or one held through pg_database_owner, goes with the ownership: give the schema or database to the catalog role)"
        ),
    })
}
