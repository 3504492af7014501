//! The column mapping `views apply` records for each view it creates
//! (`viewgate.version_objects.mapping`, `model::view_mapping`): which base column each view
//! column shows, with the types, defaults and identity facts that decide whether the proxy can
//! write the base table in the view's stead exactly (COPY … FROM through an auto-updatable
//! view). Read from the server right after the view is created, so the defaults are the ones
//! Postgres will apply, as `pg_get_expr` prints them for the view and for the base table.

use tokio_postgres::GenericClient;

use super::plan::{self, ViewPlan};
use crate::control::error::ControlError;
use crate::model::{MappedColumn, ViewMapping, WriteAssignment};

/// A relation's columns in order: name, type, default, identity (`attidentity`).
const COLUMNS_SQL: &str = "
SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
       CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
       a.attidentity::text
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum";

struct LiveColumn {
    name: String,
    type_name: String,
    default: Option<String>,
    identity: String,
}

async fn live_columns(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Vec<LiveColumn>, ControlError> {
    let rows = client
        .query(COLUMNS_SQL, &[&schema, &name])
        .await
        .map_err(|error| {
            ControlError::database(format!("reading the columns of {schema}.{name}"), &error)
        })?;
    Ok(rows
        .iter()
        .map(|row| LiveColumn {
            name: row.get(0),
            type_name: row.get(1),
            default: row.get(2),
            identity: row.get(3),
        })
        .collect())
}

/// The mapping of the view `plan` describes, as the server has it now (call after creating it).
pub async fn read(
    client: &impl GenericClient,
    plan: &ViewPlan,
) -> Result<ViewMapping, ControlError> {
    let view = live_columns(client, &plan.view_schema, &plan.view_name).await?;
    let base = live_columns(client, &plan.base_schema, &plan.base_table).await?;
    let columns = plan
        .columns
        .iter()
        .map(|column| {
            let live = view.iter().find(|live| live.name == column.name);
            let base_column = column
                .base_column
                .as_deref()
                .and_then(|name| base.iter().find(|live| live.name == name));
            MappedColumn {
                name: column.name.clone(),
                base_column: column.base_column.clone(),
                expression: column.expression.clone(),
                type_name: live.map(|l| l.type_name.clone()).unwrap_or_default(),
                default: live.and_then(|l| l.default.clone()),
                base_default: base_column.and_then(|b| b.default.clone()),
                base_identity_always: base_column.is_some_and(|b| b.identity == "a"),
            }
        })
        .collect();
    let assignments = |list: &[plan::Assignment]| {
        list.iter()
            .map(|assignment| WriteAssignment {
                base_column: assignment.base_column.clone(),
                view_column: assignment.view_column.clone(),
                expression: assignment.expression.clone(),
                when_changed: assignment.when_changed.clone(),
            })
            .collect()
    };
    Ok(ViewMapping {
        trigger_backed: plan.trigger.is_some(),
        columns,
        insert: plan
            .trigger
            .as_ref()
            .map_or_else(Vec::new, |t| assignments(&t.insert)),
        update: plan
            .trigger
            .as_ref()
            .map_or_else(Vec::new, |t| assignments(&t.update)),
    })
}
