//! A version's views keep the grants made on them. A view whose columns change must be made
//! anew (`DROP VIEW`, `CREATE VIEW`: see [`super::in_place`] for the views replaced in place),
//! and a new view has only its owner's rights and the schema's default privileges: such an
//! apply took away a `GRANT SELECT … ON model_metadata_v2 TO app` made by hand, and the
//! application at that version got `permission denied` (42501) the moment it committed. So the
//! grants a view has (on the view and on its columns, `WITH GRANT OPTION` kept) are read before
//! it is made and given again after, in the same transaction; and a view `migrate start` makes
//! for a new version takes the grants of the view the version it starts from has of the same
//! table, so the application keeps its rights when it moves to the new version. The view's
//! owner's own rights come with ownership; a grant on a column the new view no longer has is
//! not given.

use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::control::privilege::Privilege;
use crate::control::quote::{quote_ident, quote_qualified};

/// The grants made on a view: on the whole view, and on single columns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ViewGrants {
    on_view: Vec<Privilege>,
    /// (column, privilege).
    on_columns: Vec<(String, Privilege)>,
}

impl ViewGrants {
    pub fn is_empty(&self) -> bool {
        self.on_view.is_empty() && self.on_columns.is_empty()
    }
}

/// The grants on view `schema.name` other than its owner's (none if there is no such view).
pub async fn read(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<ViewGrants, ControlError> {
    // Table-level rows have no column. The owner's and the current role's entries are left
    // out: the new view's owner holds its rights by owning it.
    const GRANTS_SQL: &str = "
        WITH view AS (
            -- The current role by its name: `current_user::regrole` would parse the name as
            -- SQL, and a role named with capitals or spaces would not be found.
            SELECT c.oid, c.relacl, c.relowner,
                   (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) AS me
              FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'v')
        SELECT NULL::text, p.privilege_type, g.rolname::text, p.is_grantable
          FROM view CROSS JOIN LATERAL pg_catalog.aclexplode(view.relacl) p
          LEFT JOIN pg_catalog.pg_roles g ON g.oid = p.grantee
         WHERE p.grantee NOT IN (view.relowner, view.me)
        UNION ALL
        SELECT a.attname::text, p.privilege_type, g.rolname::text, p.is_grantable
          FROM view
          JOIN pg_catalog.pg_attribute a ON a.attrelid = view.oid AND a.attnum > 0
                                        AND NOT a.attisdropped
         CROSS JOIN LATERAL pg_catalog.aclexplode(a.attacl) p
          LEFT JOIN pg_catalog.pg_roles g ON g.oid = p.grantee
         WHERE p.grantee NOT IN (view.relowner, view.me)
         ORDER BY 1 NULLS FIRST, 3, 2";
    let rows = client
        .query(GRANTS_SQL, &[&schema, &name])
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the grants on view {schema}.{name}"),
                &error,
            )
        })?;
    let mut grants = ViewGrants::default();
    for row in rows {
        let privilege = Privilege::new(row.get(1), row.get(2), row.get(3));
        match row.get::<_, Option<String>>(0) {
            None => grants.on_view.push(privilege),
            Some(column) => grants.on_columns.push((column, privilege)),
        }
    }
    Ok(grants)
}

/// Gives view `schema.name` the `grants` (those on a column it does not have are left out).
pub async fn give(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
    grants: &ViewGrants,
) -> Result<(), ControlError> {
    if grants.is_empty() {
        return Ok(());
    }
    let columns: Vec<String> = client
        .query(
            "SELECT a.attname::text
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema, &name],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the columns of view {schema}.{name}"),
                &error,
            )
        })?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let sql = statements(&quote_qualified(schema, name), grants, &columns).join(";\n");
    client.batch_execute(&sql).await.map_err(|error| {
        ControlError::database(
            format!("giving view {schema}.{name} the grants it had"),
            &error,
        )
    })
}

/// The `GRANT`s that give `view` (quoted) the `grants`, for the columns it has.
fn statements(view: &str, grants: &ViewGrants, columns: &[String]) -> Vec<String> {
    let on_view = grants
        .on_view
        .iter()
        .filter_map(|privilege| privilege.grant(&format!(" ON TABLE {view}")));
    let on_columns = grants
        .on_columns
        .iter()
        .filter(|(column, _)| columns.contains(column))
        .filter_map(|(column, privilege)| {
            privilege.grant(&format!(" ({}) ON TABLE {view}", quote_ident(column)))
        });
    on_view.chain(on_columns).map(|(_, sql)| sql).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_grants_follow_the_columns_the_new_view_has() {
        let grants = ViewGrants {
            on_view: vec![Privilege::new("SELECT".into(), Some("app".into()), false)],
            on_columns: vec![
                (
                    "name".into(),
                    Privilege::new("UPDATE".into(), Some("editor".into()), true),
                ),
                ("gone".into(), Privilege::new("SELECT".into(), None, false)),
            ],
        };
        assert_eq!(
            statements(
                "\"public\".\"models_v2\"",
                &grants,
                &["id".into(), "name".into()]
            ),
            [
                "GRANT SELECT ON TABLE \"public\".\"models_v2\" TO \"app\"",
                "GRANT UPDATE (\"name\") ON TABLE \"public\".\"models_v2\" TO \"editor\" WITH GRANT OPTION",
            ]
        );
    }
}
