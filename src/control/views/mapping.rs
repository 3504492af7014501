//! The column mapping `views apply` records for each view it creates
//! (`viewgate.version_objects.mapping`, `model::view_mapping`): which base column each view
//! column shows, with the types, defaults and identity facts that decide whether the proxy can
//! write the base table in the view's stead exactly (COPY … FROM through an auto-updatable
//! view). Read from the server right after the view is created, so the defaults are the ones
//! Postgres will apply, as `pg_get_expr` prints them for the view and for the base table, with
//! the names of the functions `mapping_functions.sql.j2` made for its expressions and defaults.

use tokio_postgres::GenericClient;

use super::mapping_functions::{self, Kind};
use super::plan::{self, ViewPlan};
use crate::control::error::ControlError;
use crate::control::quote::quote_qualified;
use crate::model::{MappedColumn, ViewMapping, WriteAssignment};

/// A relation's columns in order: name, type, default, identity (`attidentity`).
///
/// The type as a cast in the proxy's statements names it: those `format_type` spells as SQL
/// keywords (`integer`, `timestamp(3) with time zone`: the grammar binds them to pg_catalog)
/// as it prints them; any other schema-qualified, the element of a true array (its element's
/// `typarray` points back) with the modifiers and `[]` `format_type` prints after the bare
/// name. Postgres searches the session's temporary schema first for a type's unqualified
/// name, so `text` could be a client's `pg_temp.text` (the forty-seventh red-team pass).
/// The keyword types are `format_type`'s own list, less `bpchar` without a length (printed
/// `bpchar`, a plain name).
const COLUMNS_SQL: &str = "
SELECT a.attname::text,
       CASE WHEN e.oid IN (16, 20, 21, 23, 700, 701, 1042, 1043, 1083, 1114, 1184, 1186, 1266,
                           1560, 1562, 1700)
                 AND NOT (e.oid = 1042 AND a.atttypmod < 0)
            THEN pg_catalog.format_type(a.atttypid, a.atttypmod)
            ELSE pg_catalog.quote_ident(en.nspname) || '.' || pg_catalog.quote_ident(e.typname)
                 || pg_catalog.substr(pg_catalog.format_type(a.atttypid, a.atttypmod),
                                      pg_catalog.length(pg_catalog.format_type(e.oid, -1)) + 1)
       END,
       CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END,
       a.attidentity::text
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_type e ON e.oid = CASE
           WHEN t.typelem <> 0 AND t.oid = (SELECT x.typarray FROM pg_catalog.pg_type x
                                             WHERE x.oid = t.typelem)
           THEN t.typelem ELSE t.oid END
  JOIN pg_catalog.pg_namespace en ON en.oid = e.typnamespace
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
    let function = |kind: Kind, column: &str| {
        mapping_functions::find(&plan.mapping_functions, kind, column)
            .map(|function| quote_qualified(&plan.view_schema, &function.name))
    };
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
                read_function: function(Kind::Read, &column.name),
                default_function: function(Kind::Default, &column.name),
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
                function: assignment
                    .expression
                    .as_ref()
                    .and_then(|_| function(Kind::Write, &assignment.base_column)),
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
        pinned: true,
    })
}
