//! Checks that need the server: the names a plan would create are free, and declared
//! expressions compile. Run before anything is created, so a bad spec fails with Postgres's own
//! message and nothing applied.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::definition;
use super::introspect::relation_kind;
use super::plan::{Plan, ViewPlan};
use super::probe::{self, Beyond};
use super::spec::{ColumnSource, Spec};
use crate::control::catalog::{CatalogObject, CatalogVersion};
use crate::control::error::{ControlError, is_lock_timeout};
use crate::control::quote::{quote_ident, quote_qualified};
use crate::net::postgres_error::{describe_postgres_error, describe_postgres_error_hinting};

/// Fails when a view or trigger function the plan creates would replace a relation or function
/// viewgate does not manage (e.g. a version name that makes `orders_v2` clash with a real table).
pub async fn check_names_are_free(
    client: &impl GenericClient,
    spec: &Spec,
    plan: &Plan,
    managed: &[CatalogObject],
) -> Result<(), ControlError> {
    let managed_views: BTreeSet<(&str, &str)> = managed
        .iter()
        .map(|object| (object.view_schema.as_str(), object.view_name.as_str()))
        .collect();
    for view in plan.versions.iter().flat_map(|version| &version.views) {
        let is_managed =
            managed_views.contains(&(view.view_schema.as_str(), view.view_name.as_str()));
        if is_managed {
            continue;
        }
        let clash = |planned: String, existing: &str| ControlError::Mismatch {
            file: spec.source.clone(),
            context: format!("version {}, table {}", view.version, view.table_name),
            problem: format!(
                "would create {planned}, but a {existing} of that name already exists and is not managed by viewgate; pick another version name, or rename or drop the existing object"
            ),
        };
        if let Some(kind) = relation_kind(client, &view.view_schema, &view.view_name).await? {
            return Err(clash(
                format!("view {}", view.qualified_view()),
                relation_kind_name(&kind),
            ));
        }
        if let Some(trigger) = &view.trigger {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = $1 AND p.proname = $2",
                    &[&trigger.function_schema, &trigger.function_name],
                )
                .await
                .map_err(|error| ControlError::database("looking up trigger functions", &error))?
                .is_some();
            if exists {
                return Err(clash(
                    format!(
                        "trigger function {}.{}",
                        trigger.function_schema, trigger.function_name
                    ),
                    "function",
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a spec that would point a table or column an existing version shows at another
/// base table or column than the catalog records for it. A version's clients are live on what
/// it shows; re-pointed, they would read and write another column's values with no change of
/// their own. The common way there: a migration renamed a column at its contract (the
/// catalog's definition follows the rename), a later one added a new column of the old name,
/// and the spec, not edited, was applied again (the fifty-first red-team pass). A retired
/// version may be defined anew.
pub async fn refuse_repointed_columns(
    client: &impl GenericClient,
    spec: &Spec,
    recorded: &BTreeMap<String, CatalogVersion>,
) -> Result<(), ControlError> {
    for version in &spec.versions {
        if recorded
            .get(&version.name)
            .is_none_or(|recorded| recorded.state == "retired")
        {
            continue;
        }
        let Some(definition) = definition::load(client, &version.name).await? else {
            continue;
        };
        for table in &version.tables {
            let Some(before) = definition
                .version
                .tables
                .iter()
                .find(|before| before.name == table.name)
            else {
                continue;
            };
            let repointed = |what: String, recorded: &str, now: &str| ControlError::Mismatch {
                file: spec.source.clone(),
                context: format!("version {}, table {}", version.name, table.name),
                problem: format!(
                    "{what} reads base {recorded} as the catalog records it (a migration may have renamed it), but this spec points it at {now}; the version's clients would read and write another's values. Edit the spec to match `viewgate views status`, or define a new version"
                ),
            };
            if before.base != table.base {
                return Err(repointed(
                    "the table".to_owned(),
                    &format!("table {}", before.base),
                    &format!("table {}", table.base),
                ));
            }
            for column in &table.columns {
                let ColumnSource::Physical { base_column } = &column.source else {
                    continue;
                };
                let recorded_base = before.columns.iter().find_map(|old| match &old.source {
                    ColumnSource::Physical { base_column } if old.name == column.name => {
                        Some(base_column)
                    }
                    _ => None,
                });
                if let Some(recorded_base) = recorded_base
                    && recorded_base != base_column
                {
                    return Err(repointed(
                        format!("column {}", column.name),
                        &format!("column {recorded_base}"),
                        &format!("column {base_column}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every read expression of the plan: its view, what a refusal calls it, the expression.
fn read_expressions(plan: &Plan) -> impl Iterator<Item = (&ViewPlan, String, &str)> {
    plan.versions
        .iter()
        .flat_map(|version| &version.views)
        .flat_map(|view| {
            view.columns.iter().filter_map(move |column| {
                let expression = column.expression.as_deref()?;
                Some((
                    view,
                    format!("expression of column {}", column.name),
                    expression,
                ))
            })
        })
}

/// Compiles every read expression against its base table without reading a row.
pub async fn check_read_expressions(
    client: &impl GenericClient,
    spec: &Spec,
    plan: &Plan,
) -> Result<(), ControlError> {
    for (view, what, expression) in read_expressions(plan) {
        let sql = format!(
            "SELECT ({expression}) FROM {} LIMIT 0",
            quote_qualified(&view.base_schema, &view.base_table)
        );
        client
            .execute(sql.as_str(), &[])
            .await
            .map_err(|error| rejected(spec, view, &what, &error))?;
        check_read_over_a_row(client, spec, view, &what, expression).await?;
    }
    Ok(())
}

/// Compiles read expression `expression`, which compiles over its base table, over a row of
/// the table as the view's mapping functions read it where they cannot inline it (`SELECT
/// (expr) FROM (SELECT ($1).*) AS <table>`: the table's own columns, under its bare name).
/// A system column (`tableoid`) or the table qualified with its schema compiles in the view
/// but not there, and the upserts and MERGEs the proxy writes at a trigger-backed version
/// would fail on it at every call (the fifty-second red-team pass), so `views apply` refuses
/// it with the reason.
async fn check_read_over_a_row(
    client: &impl GenericClient,
    spec: &Spec,
    view: &ViewPlan,
    what: &str,
    expression: &str,
) -> Result<(), ControlError> {
    // The spec's expression is SQL by definition, pasted as in the view it defines.
    let sql = format!(
        "SELECT ({expression}) FROM (SELECT * FROM {}) AS {} LIMIT 0",
        quote_qualified(&view.base_schema, &view.base_table),
        quote_ident(&view.base_table)
    );
    client.execute(sql.as_str(), &[]).await.map_err(|error| {
        if is_lock_timeout(&error) {
            return rejected(spec, view, what, &error);
        }
        ControlError::Rejected {
            file: spec.source.clone(),
            version: view.version.clone(),
            table: view.table_name.clone(),
            message: format!(
                "{what}: `{expression}` cannot be computed from a row of {}.{}, as the upserts and MERGEs through a trigger-backed view compute it: {} Name the table's own columns, unqualified or qualified by the table's name alone; system columns (tableoid, ctid, xmin, …) are not part of a row",
                view.base_schema,
                view.base_table,
                describe_postgres_error(&error)
            ),
        }
    })?;
    Ok(())
}

/// Refuses a read expression that reads more of its table than it names
/// ([`reads_unspelled`]), or that cannot be read over a row of it ([`check_read_over_a_row`]).
/// Needs a transaction that may create a temporary view: `views apply`'s, not the dry run's.
pub async fn refuse_unspelled_reads(
    client: &impl GenericClient,
    spec: &Spec,
    plan: &Plan,
) -> Result<(), ControlError> {
    for (view, what, expression) in read_expressions(plan) {
        let beyond = reads_unspelled(client, &view.base_schema, &view.base_table, expression)
            .await
            .map_err(|error| rejected(spec, view, &what, &error))?;
        if let Some(beyond) = beyond {
            return Err(ControlError::Rejected {
                file: spec.source.clone(),
                version: view.version.clone(),
                table: view.table_name.clone(),
                message: format!(
                    "{what}: `{expression}` reads {beyond} of {}.{} without naming {}; what it reads would change with the columns the table has (a star is expanded when the view is made), hidden ones and a migration's copies of them too. Name the columns it reads",
                    view.base_schema,
                    view.base_table,
                    if beyond == Beyond::WholeRow {
                        "its columns"
                    } else {
                        "them"
                    }
                ),
            });
        }
        check_read_over_a_row(client, spec, view, &what, expression).await?;
    }
    Ok(())
}

/// Where an expression is compiled to be looked at: a temporary view.
const EXPRESSION_PROBE: &str = "pg_temp.viewgate_expression_probe";

/// What read expression `expression` over `schema.table` reads beyond the columns it names:
/// a whole row, or columns a star expanded to. What it reads then changes with the columns
/// the table has: a hidden one, or the copy of a hidden column a migration's expand adds (the
/// fifty-second red-team pass: `to_jsonb(model_metadata) - 'model_type'` showed
/// `_vg_v7_model_type` once a migration retyped model_type; the fifty-third: `ROW(t.*)::text`
/// showed every hidden column).
pub async fn reads_unspelled(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    expression: &str,
) -> Result<Option<Beyond>, tokio_postgres::Error> {
    let table = quote_qualified(schema, table);
    probe::create_probe(client, EXPRESSION_PROBE, expression, &table).await?;
    let beyond = probe::reads_unspelled(client, EXPRESSION_PROBE, expression, &table).await?;
    probe::drop_probe(client, EXPRESSION_PROBE).await?;
    Ok(beyond)
}

/// Compiles a trigger-backed view's write-back and hidden-default expressions the way its
/// trigger will evaluate them, with `NEW` and `OLD` as rows of the view. plpgsql only checks
/// these at the first write, which is too late. The view must exist already.
pub async fn check_write_expressions(
    client: &impl GenericClient,
    spec: &Spec,
    view: &ViewPlan,
) -> Result<(), ControlError> {
    let Some(trigger) = &view.trigger else {
        return Ok(());
    };
    let target = quote_qualified(&view.view_schema, &view.view_name);
    for assignment in &trigger.insert {
        if let Some(expression) = &assignment.expression {
            let sql = format!(
                "SELECT ({expression}) FROM {target} AS \"new\" CROSS JOIN {target} AS \"old\" LIMIT 0"
            );
            client.execute(sql.as_str(), &[]).await.map_err(|error| {
                rejected(
                    spec,
                    view,
                    &format!(
                        "write-back expression for base column {} (refer to the written row as NEW.<column>)",
                        assignment.base_column
                    ),
                    &error,
                )
            })?;
        }
    }
    Ok(())
}

/// A Postgres error about generated SQL for `view`; lock timeouts stay retryable.
pub fn rejected(
    spec: &Spec,
    view: &ViewPlan,
    what: &str,
    error: &tokio_postgres::Error,
) -> ControlError {
    if is_lock_timeout(error) {
        return ControlError::database(
            format!(
                "version {}, table {}: {what}",
                view.version, view.table_name
            ),
            error,
        );
    }
    let described = if error.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) {
        describe_postgres_error_hinting(error, DEPENDENT_ON_A_VIEW_MADE_ANEW)
    } else {
        describe_postgres_error(error)
    };
    ControlError::Rejected {
        file: spec.source.clone(),
        version: view.version.clone(),
        table: view.table_name.clone(),
        message: format!("{what}: {described}"),
    }
}

/// What to do about an object that depends on a view which must be made anew: Postgres's own
/// hint (`Use DROP ... CASCADE`) would drop the application's objects.
const DEPENDENT_ON_A_VIEW_MADE_ANEW: &str = "the view's columns change (one renamed, dropped, retyped or moved), so it must be made anew, and viewgate never drops with CASCADE: drop what the detail names, or make it read the base table or another version's view, apply, then make it again";

fn relation_kind_name(kind: &str) -> &'static str {
    match kind {
        "r" | "p" => "table",
        "v" => "view",
        "m" => "materialized view",
        "S" => "sequence",
        "f" => "foreign table",
        "i" | "I" => "index",
        "c" => "composite type",
        _ => "relation",
    }
}
