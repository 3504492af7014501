//! The catalog in schema `viewgate`: creating it, reading and writing versions, their objects
//! and apply history, and [`load_routing_map`], the proxy's view of which tables are managed
//! and of the routing rules (their model is in `rules.rs`).
//!
//! The DDL is the `catalog.sql.j2` template. All values go through bind parameters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::control::error::ControlError;
use crate::control::templates::{self, Templates};
use crate::model::channel::CONTROL_CHANNEL;

/// Key of the transaction-level advisory lock every catalog-changing command takes, so two
/// applies (or an apply and a drop) never interleave. The bytes spell "viewgate".
pub const APPLY_LOCK_KEY: i64 = 0x7669_6577_6761_7465;

/// A version as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogVersion {
    pub version: String,
    pub layout: String,
    pub checksum: String,
    pub state: String,
}

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
}

/// One row of `viewgate.apply_history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub action: &'static str,
    pub success: bool,
    pub spec_file: Option<String>,
    pub spec_checksum: Option<String>,
    pub versions: Vec<String>,
    pub duration: Duration,
    pub attempts: u32,
    pub error: Option<String>,
}

impl HistoryEntry {
    /// A successful control-plane event that applied no spec (init, cutover, route, guard,
    /// upstream): one attempt, no error.
    pub fn event(action: &'static str, versions: Vec<String>, duration: Duration) -> Self {
        HistoryEntry {
            action,
            success: true,
            spec_file: None,
            spec_checksum: None,
            versions,
            duration,
            attempts: 1,
            error: None,
        }
    }
}

/// Creates the catalog if it is missing; harmless when it exists.
pub async fn ensure_catalog(
    client: &impl GenericClient,
    templates: &Templates,
) -> Result<(), ControlError> {
    let ddl = templates.render(templates::CATALOG, ())?;
    client
        .batch_execute(&ddl)
        .await
        .map_err(|error| ControlError::database("creating the viewgate catalog", &error))
}

/// Sets `lock_timeout` for the current transaction only.
pub async fn set_local_lock_timeout(
    client: &impl GenericClient,
    lock_timeout: Duration,
) -> Result<(), ControlError> {
    let value = format!("{}ms", lock_timeout.as_millis());
    client
        .execute("SELECT set_config('lock_timeout', $1, true)", &[&value])
        .await
        .map_err(|error| ControlError::database("setting lock_timeout", &error))?;
    Ok(())
}

/// Takes the apply lock for this transaction, or fails at once if another session has it.
pub async fn try_apply_lock(client: &impl GenericClient) -> Result<(), ControlError> {
    let row = client
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY])
        .await
        .map_err(|error| ControlError::database("taking the viewgate apply lock", &error))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(ControlError::ApplyInProgress)
    }
}

/// Takes the apply lock for this transaction, waiting at most `lock_timeout`.
pub async fn wait_apply_lock(client: &impl GenericClient) -> Result<(), ControlError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY])
        .await
        .map_err(|error| ControlError::database("waiting for the viewgate apply lock", &error))?;
    Ok(())
}

pub async fn load_versions(
    client: &impl GenericClient,
) -> Result<BTreeMap<String, CatalogVersion>, ControlError> {
    let rows = client
        .query(
            "SELECT version, layout, checksum, state FROM viewgate.versions ORDER BY version",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("reading viewgate.versions", &error))?;
    Ok(rows
        .iter()
        .map(|row| {
            let version = CatalogVersion {
                version: row.get(0),
                layout: row.get(1),
                checksum: row.get(2),
                state: row.get(3),
            };
            (version.version.clone(), version)
        })
        .collect())
}

/// The recorded objects of every version, in (version, table) order.
pub async fn load_objects(client: &impl GenericClient) -> Result<Vec<CatalogObject>, ControlError> {
    let rows = client
        .query(
            "SELECT version, table_name, base_schema, base_table, view_schema, view_name,
                    trigger_backed, fingerprint
             FROM viewgate.version_objects ORDER BY version, table_name",
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

/// Records a version as applied (active) with its checksum.
pub async fn upsert_version(
    client: &impl GenericClient,
    version: &str,
    layout: &str,
    checksum: &str,
    spec_file: &str,
) -> Result<(), ControlError> {
    client
        .execute(
            "INSERT INTO viewgate.versions (version, layout, checksum, state, spec_file)
             VALUES ($1, $2, $3, 'active', $4)
             ON CONFLICT (version) DO UPDATE
             SET layout = EXCLUDED.layout, checksum = EXCLUDED.checksum, state = 'active',
                 spec_file = EXCLUDED.spec_file, applied_at = now(), retired_at = NULL",
            &[&version, &layout, &checksum, &spec_file],
        )
        .await
        .map_err(|error| ControlError::database(format!("recording version {version}"), &error))?;
    Ok(())
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
        client
            .execute(
                "INSERT INTO viewgate.version_objects
                   (version, table_name, base_schema, base_table, view_schema, view_name,
                    trigger_backed, fingerprint)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &object.version,
                    &object.table_name,
                    &object.base_schema,
                    &object.base_table,
                    &object.view_schema,
                    &object.view_name,
                    &object.trigger_backed,
                    &object.fingerprint,
                ],
            )
            .await
            .map_err(|error| ControlError::database(context(), &error))?;
    }
    Ok(())
}

/// Marks `version` retired and forgets its objects.
pub async fn retire_version(
    client: &impl GenericClient,
    version: &str,
) -> Result<(), ControlError> {
    let context = || format!("retiring version {version} in the catalog");
    client
        .execute(
            "DELETE FROM viewgate.version_objects WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    client
        .execute(
            "UPDATE viewgate.versions SET state = 'retired', retired_at = now() WHERE version = $1",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    Ok(())
}

pub async fn record_history(
    client: &impl GenericClient,
    entry: &HistoryEntry,
) -> Result<(), ControlError> {
    let duration_ms = i64::try_from(entry.duration.as_millis()).unwrap_or(i64::MAX);
    let attempts = i32::try_from(entry.attempts).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO viewgate.apply_history
               (action, success, spec_file, spec_checksum, versions, started_at, duration_ms,
                attempts, error)
             VALUES ($1, $2, $3, $4, $5, clock_timestamp() - make_interval(secs => $6::bigint / 1000.0),
                     $6, $7, $8)",
            &[
                &entry.action,
                &entry.success,
                &entry.spec_file,
                &entry.spec_checksum,
                &entry.versions,
                &duration_ms,
                &attempts,
                &entry.error,
            ],
        )
        .await
        .map_err(|error| ControlError::database("recording apply history", &error))?;
    Ok(())
}

/// Tells every listening proxy that versions changed. Sent inside the caller's transaction, so
/// Postgres delivers it only if that transaction commits. The payload is JSON, e.g.
/// `{"action":"apply","versions":["v2"]}`.
pub async fn notify_change(
    client: &impl GenericClient,
    action: &str,
    versions: &[String],
) -> Result<(), ControlError> {
    let payload = serde_json::json!({ "action": action, "versions": versions }).to_string();
    client
        .execute("SELECT pg_notify($1, $2)", &[&CONTROL_CHANNEL, &payload])
        .await
        .map_err(|error| ControlError::database("notifying proxies", &error))?;
    Ok(())
}
