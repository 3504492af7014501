//! The generated views each version owns (`viewgate.version_objects`), with the fingerprints
//! that tell a view changed by hand (drift) from one viewgate made.

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::model::ViewMapping;

/// One generated view as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogObject {
    pub version: String,
    pub table_name: String,
    pub base_schema: String,
    pub base_table: String,
    pub view_schema: String,
    pub view_name: String,
    pub trigger_backed: bool,
    pub fingerprint: String,
    /// How the view's columns map onto the base table; `None` when recorded by a viewgate
    /// from before the mapping (`views apply` then applies the version again).
    pub mapping: Option<ViewMapping>,
}

/// The recorded objects of every version, in (version, table) order.
pub async fn load_objects(client: &impl GenericClient) -> Result<Vec<CatalogObject>, ControlError> {
    let rows = client
        .query(
            // `mapping` through jsonb: a catalog older than the column has no such column.
            "SELECT version, table_name, base_schema, base_table, view_schema, view_name,
                    trigger_backed, fingerprint, to_jsonb(o) ->> 'mapping'
             FROM viewgate.version_objects o ORDER BY version, table_name",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("reading viewgate.version_objects", &error))?;
    Ok(rows
        .iter()
        .map(|row| CatalogObject {
            version: row.get(0),
            table_name: row.get(1),
            base_schema: row.get(2),
            base_table: row.get(3),
            view_schema: row.get(4),
            view_name: row.get(5),
            trigger_backed: row.get(6),
            fingerprint: row.get(7),
            // An unreadable mapping (a hand-edited row) counts as none: apply records it again.
            mapping: row
                .get::<_, Option<String>>(8)
                .and_then(|text| serde_json::from_str(&text).ok()),
        })
        .collect())
}

/// What a view looks like in the server right now, hashed: its definition, options, comment,
/// column defaults and triggers with their functions' source. `None` when there is no such view.
pub async fn live_fingerprint(
    client: &impl GenericClient,
    view_schema: &str,
    view_name: &str,
) -> Result<Option<String>, ControlError> {
    const FINGERPRINT_SQL: &str = "
SELECT md5(concat_ws(E'\\n',
    pg_get_viewdef(c.oid),
    array_to_string(c.reloptions, ','),
    obj_description(c.oid, 'pg_class'),
    (SELECT string_agg(a.attname || ' ' || pg_get_expr(d.adbin, d.adrelid), E'\\n' ORDER BY a.attnum)
       FROM pg_attrdef d
       JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      WHERE d.adrelid = c.oid),
    (SELECT string_agg(pg_get_triggerdef(t.oid) || E'\\n' || p.prosrc, E'\\n' ORDER BY t.tgname)
       FROM pg_trigger t
       JOIN pg_proc p ON p.oid = t.tgfoid
      WHERE t.tgrelid = c.oid)))
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'v'";
    let row = client
        .query_opt(FINGERPRINT_SQL, &[&view_schema, &view_name])
        .await
        .map_err(|error| {
            ControlError::database(format!("inspecting view {view_schema}.{view_name}"), &error)
        })?;
    Ok(row.map(|row| row.get(0)))
}

/// Replaces the recorded objects of `version` with `objects`.
pub async fn replace_objects(
    client: &impl GenericClient,
    version: &str,
    objects: &[CatalogObject],
) -> Result<(), ControlError> {
    let context = || format!("recording the objects of version {version}");
    client
        .execute(
            "DELETE FROM viewgate.version_objects WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    for object in objects {
        let mapping = object
            .mapping
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| ControlError::Database {
                context: context(),
                message: error.to_string(),
            })?;
        client
            .execute(
                "INSERT INTO viewgate.version_objects
                   (version, table_name, base_schema, base_table, view_schema, view_name,
                    trigger_backed, fingerprint, mapping)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)",
                &[
                    &object.version,
                    &object.table_name,
                    &object.base_schema,
                    &object.base_table,
                    &object.view_schema,
                    &object.view_name,
                    &object.trigger_backed,
                    &object.fingerprint,
                    &mapping,
                ],
            )
            .await
            .map_err(|error| ControlError::database(context(), &error))?;
    }
    Ok(())
}
