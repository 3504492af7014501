//! The application's functions whose SQL names a table the contract drops or renames.
//!
//! A PL/pgSQL function, or an SQL function written as a string (not `BEGIN ATOMIC`), is kept
//! as text: Postgres records no dependency on the tables it names, so `dependents.rs`, which
//! reads `pg_depend`, cannot see them, and the contract's `DROP TABLE` or `RENAME TO` succeeds.
//! From then on each call fails (`relation "models" does not exist`, 42P01): a trigger on
//! another table that writes an audit row into it, a procedure a job runs every night. Each
//! such function is read by libpg_query (PL/pgSQL compiled to its statements, each statement
//! parsed), and the relations its statements name are compared with what the contract takes
//! away: a name in a comment or a string does not count, nor does SQL built at run time
//! (`EXECUTE`), which nothing can read before it runs. Checked by `migrate start` (and
//! `plan`), and again by `migrate complete` for what was made since.

use std::collections::BTreeSet;

use serde_json::Value;
use tokio_postgres::GenericClient;

use super::derive::{Dropped, MigrationPlan, Rename};
use super::error::MigrateError;
use super::sync::FUNCTION_SCHEMA;
use crate::control::error::ControlError;
use crate::control::views::mapping_functions::MARKER_PREFIX;

/// Refuses `plan` while a function of the application's names, in its SQL, a table the
/// contract drops or renames.
pub async fn refuse_stale_function_tables(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    let vanishing = vanishing_tables(plan);
    if vanishing.is_empty() {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname,
                                      pg_catalog.pg_get_function_identity_arguments(p.oid)),
                    CASE l.lanname WHEN 'plpgsql' THEN pg_catalog.pg_get_functiondef(p.oid)
                                   ELSE p.prosrc END,
                    l.lanname = 'plpgsql'
               FROM pg_catalog.pg_proc p
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang
              WHERE l.lanname IN ('plpgsql', 'sql') AND p.prosqlbody IS NULL
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1)
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                -- Not an extension's, nor the versions' own: their mapping functions (marked
                -- by their comment) and the write functions of their views' triggers.
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                                   AND d.objid = p.oid AND d.deptype = 'e')
                AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') NOT LIKE $2 || '%'
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                  JOIN pg_catalog.pg_class v ON v.oid = t.tgrelid
                                  JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
                                  JOIN viewgate.version_objects o
                                    ON o.view_schema = vn.nspname AND o.view_name = v.relname
                                 WHERE t.tgfoid = p.oid)
              ORDER BY 1",
            &[&FUNCTION_SCHEMA, &MARKER_PREFIX],
        )
        .await
        .map_err(|error| ControlError::database("reading the application's functions", &error))?;
    for row in rows {
        let (function, source, plpgsql): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        let named = match relations_named(&source, plpgsql) {
            Ok(named) => named,
            Err(problem) => {
                tracing::warn!(
                    "function {function} could not be read ({problem}); the tables it names were not checked"
                );
                continue;
            }
        };
        let stale: Vec<String> = vanishing
            .iter()
            .filter(|(schema, table, _)| names_table(&named, schema, table))
            .map(|(schema, table, why)| format!("{schema}.{table} ({why})"))
            .collect();
        if !stale.is_empty() {
            return Err(MigrateError::Unsafe {
                version: plan.version.clone(),
                table: stale.join(", "),
                objects: format!("function {function} names it in its SQL"),
                problem: "Postgres keeps no record of the tables a PL/pgSQL function or an SQL function written as a string names: `migrate complete` would drop or rename the table, and every call of the function would fail from then on (42P01)".into(),
                remedy: "redefine the function so that it no longer names the table (the new version's view, or the table's new name once the contract has run, which the function can reach through `EXECUTE` meanwhile), or drop it, then start again; checked again at `migrate complete`".into(),
            });
        }
    }
    Ok(())
}

/// The tables the contract drops or renames, as (schema, table, what the contract does).
fn vanishing_tables(plan: &MigrationPlan) -> Vec<(String, String, &'static str)> {
    let dropped = plan.dropped.iter().filter_map(|dropped| match dropped {
        Dropped::Table { schema, table } => Some((schema.clone(), table.clone(), "dropped")),
        _ => None,
    });
    let renamed = plan.renames.iter().filter_map(|rename| match rename {
        Rename::Table { schema, from, .. } => Some((schema.clone(), from.clone(), "renamed")),
        Rename::Column { .. } => None,
    });
    dropped.chain(renamed).collect()
}

/// Whether `named` (relation names as written, qualified or not) holds `schema.table`. An
/// unqualified name counts: which table it means depends on the search path of each call.
fn names_table(named: &BTreeSet<String>, schema: &str, table: &str) -> bool {
    named.contains(table) || named.contains(&format!("{schema}.{table}"))
}

/// The relations the statements of function `source` name: a PL/pgSQL `CREATE FUNCTION`
/// statement, compiled to its statements, or an SQL function's body.
fn relations_named(source: &str, plpgsql: bool) -> Result<BTreeSet<String>, String> {
    let statements = if plpgsql {
        let compiled = pg_query::parse_plpgsql(source).map_err(|error| error.to_string())?;
        let mut queries = Vec::new();
        collect_queries(&compiled, &mut queries);
        queries
    } else {
        vec![source.to_owned()]
    };
    let mut named = BTreeSet::new();
    for statement in statements {
        // PL/pgSQL keeps an expression (`IF …`, `x := …`) without its SELECT.
        let parsed = pg_query::parse(&statement)
            .or_else(|_| pg_query::parse(&format!("SELECT {statement}")))
            .map_err(|error| error.to_string())?;
        named.extend(parsed.tables());
    }
    Ok(named)
}

/// Every SQL text in a compiled PL/pgSQL function: the `query` of each of its expressions.
fn collect_queries(node: &Value, queries: &mut Vec<String>) {
    match node {
        Value::Object(fields) => {
            if let Some(Value::String(query)) = fields
                .get("PLpgSQL_expr")
                .and_then(|expression| expression.get("query"))
            {
                queries.push(query.clone());
            }
            for value in fields.values() {
                collect_queries(value, queries);
            }
        }
        Value::Array(values) => {
            for value in values {
                collect_queries(value, queries);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named_by(body: &str) -> Vec<String> {
        relations_named(
            &format!(
                "CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $x$ BEGIN {body} RETURN NEW; END $x$"
            ),
            true,
        )
        .expect("parses")
        .into_iter()
        .collect()
    }

    #[test]
    fn the_relations_a_plpgsql_body_names_are_found_in_its_statements_and_expressions() {
        assert_eq!(
            named_by(
                "INSERT INTO audit.models_log SELECT NEW.id;
                 IF EXISTS (SELECT 1 FROM models WHERE id = NEW.id) THEN
                     UPDATE public.sizes SET n = n + 1;
                 END IF;"
            ),
            ["audit.models_log", "models", "public.sizes"]
        );
    }

    #[test]
    fn comments_strings_and_dynamic_sql_name_no_relation() {
        assert_eq!(
            named_by(
                "-- DELETE FROM models
                 PERFORM 'SELECT * FROM models';
                 EXECUTE 'TRUNCATE models';"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_sql_functions_body_is_read_statement_by_statement() {
        let named = relations_named(
            "DELETE FROM models WHERE id = $1; SELECT count(*) FROM public.parts",
            false,
        )
        .expect("parses");
        assert!(names_table(&named, "public", "models"));
        assert!(names_table(&named, "public", "parts"));
        assert!(!names_table(&named, "public", "model"));
    }
}
