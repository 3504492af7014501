//! The application's functions whose SQL names a table, or a column of a table, that the
//! contract drops or renames.
//!
//! A PL/pgSQL function, or an SQL function written as a string (not `BEGIN ATOMIC`), is kept
//! as text: Postgres records no dependency on what it names, so `dependents.rs`, which reads
//! `pg_depend`, cannot see it, and the contract's `DROP TABLE`, `DROP COLUMN` or `RENAME`
//! succeeds. From then on each call fails (`relation "models" does not exist`, 42P01; `column
//! "legacy_note" does not exist`, 42703): a trigger on another table that writes an audit row
//! into it, a procedure a job runs every night. Each such function is read by libpg_query
//! (PL/pgSQL compiled to its statements, each statement parsed), and what its statements name
//! is compared with what the contract takes away: a table by its name, qualified or not; a
//! column where the statement can only mean that table's (qualified by the table's name or
//! alias, unqualified in a statement naming no other relation, the column list of an INSERT
//! into it, the SET list of an UPDATE of it), and a PL/pgSQL declaration copying its type
//! (`models%ROWTYPE`, `models.legacy_note%TYPE`). A name in a comment or a string does not count,
//! nor does SQL built at run time (`EXECUTE`), which nothing can read before it runs. Checked
//! by `migrate start` (and `plan`), and again by `migrate complete` for what was made since;
//! and by `migrate rollback` for the tables the expand created and the columns it added, which
//! a function written for the new version may name.

use std::collections::{BTreeMap, BTreeSet};

use pg_query::ParseResult;
use serde_json::Value;
use tokio_postgres::GenericClient;

use super::derive::{Dropped, MigrationPlan, Rename};
use super::error::MigrateError;
use super::file::Migration;
use super::operation::Operation;
use super::sync::FUNCTION_SCHEMA;
use super::trigger_fields::{Taking, added_columns, vanishing_columns};
use crate::control::error::ControlError;
use crate::control::views::mapping_functions::MARKER_PREFIX;
use crate::control::views::spec::DEFAULT_SCHEMA;

/// Refuses `plan` while a function of the application's names, in its SQL or its
/// declarations, a table or a column the contract drops or renames.
pub async fn refuse_stale_function_bodies(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    let tables = vanishing_tables(plan);
    let columns = vanishing_columns(plan);
    refuse_naming(client, plan, &tables, &columns, Taking::Contract).await
}

/// Refuses to roll back the migration of `plan` (from `migration`) while a function of the
/// application's names a table its expand created or a column it added (one written for the
/// new version, say): the rollback drops them, and every call would fail from then on.
pub async fn refuse_before_rollback(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    migration: &Migration,
) -> Result<(), MigrateError> {
    let tables: Vec<(String, String, &'static str)> = migration
        .operations
        .iter()
        .filter_map(|operation| match operation {
            Operation::CreateTable(created) => Some((
                created
                    .schema
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()),
                created.table.clone(),
                "created by the expand",
            )),
            _ => None,
        })
        .collect();
    let columns = added_columns(plan);
    refuse_naming(client, plan, &tables, &columns, Taking::Rollback).await
}

/// Refuses while a function names one of `tables` (schema, table, what becomes of it) or of
/// `columns`, which `taking` takes away.
async fn refuse_naming(
    client: &impl GenericClient,
    plan: &MigrationPlan,
    vanishing: &[(String, String, &'static str)],
    columns: &BTreeMap<(String, String), BTreeSet<String>>,
    taking: Taking,
) -> Result<(), MigrateError> {
    if vanishing.is_empty() && columns.is_empty() {
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
        let body = match read_body(&source, plpgsql) {
            Ok(body) => body,
            Err(problem) => {
                tracing::warn!(
                    "function {function} could not be read ({problem}); what it names was not checked"
                );
                continue;
            }
        };
        let named = tables_named(&body);
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
                problem: format!(
                    "Postgres keeps no record of the tables a PL/pgSQL function or an SQL function written as a string names: {} the table, and every call of the function would fail from then on (42P01)",
                    taking.would()
                ),
                remedy: match taking {
                    Taking::Contract => "redefine the function so that it no longer names the table (the new version's view, or the table's new name once the contract has run, which the function can reach through `EXECUTE` meanwhile), or drop it, then start again; checked again at `migrate complete`".into(),
                    Taking::Rollback => "redefine the function so that it no longer names the table, or drop it, then roll back again".into(),
                },
            });
        }
        for ((schema, table), gone) in columns {
            let stale: Vec<&String> = columns_named(&body, schema, table)
                .into_iter()
                .filter_map(|column| gone.get(&column))
                .collect();
            if !stale.is_empty() {
                return Err(MigrateError::Unsafe {
                    version: plan.version.clone(),
                    table: format!("{schema}.{table}"),
                    objects: format!(
                        "function {function} names column(s) {} in its SQL",
                        stale
                            .iter()
                            .map(|column| column.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    problem: format!(
                        "Postgres keeps no record of the columns a PL/pgSQL function or an SQL function written as a string names: {} the column, and every call of the function that reaches the statement would fail from then on (42703)",
                        taking.would()
                    ),
                    remedy: format!(
                        "redefine the function so that it no longer names the column (read it through `to_jsonb(row)` while it exists, or leave the statement to the new version's view), or drop it, then {}",
                        taking.then()
                    ),
                });
            }
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

/// What a function's body names: its statements, parsed, and the types its PL/pgSQL
/// declarations copy from a table (`models%ROWTYPE`, `models.legacy_note%TYPE`), as name
/// parts.
#[derive(Default)]
struct Body {
    statements: Vec<ParseResult>,
    /// A row type's relation: `[table]` or `[schema, table]`.
    row_types: Vec<Vec<String>>,
    /// A column's type: the relation's parts, then the column.
    column_types: Vec<Vec<String>>,
}

/// The body of function `source`, parsed: a PL/pgSQL `CREATE FUNCTION` statement, compiled
/// to its statements, expressions and declarations, or an SQL function's body.
fn read_body(source: &str, plpgsql: bool) -> Result<Body, String> {
    let mut body = Body::default();
    let texts = if plpgsql {
        let compiled = pg_query::parse_plpgsql(source).map_err(|error| error.to_string())?;
        let mut queries = Vec::new();
        let mut types = Vec::new();
        collect_queries(&compiled, &mut queries, &mut types);
        for declared in types {
            if let Some(relation) = strip_suffix_ignoring_case(&declared, "%ROWTYPE") {
                body.row_types.push(name_parts(relation));
            } else if let Some(column) = strip_suffix_ignoring_case(&declared, "%TYPE") {
                // One word is another variable's type; two or three name a column.
                let parts = name_parts(column);
                if (2..=3).contains(&parts.len()) {
                    body.column_types.push(parts);
                }
            }
        }
        queries
    } else {
        pg_query::split_with_parser(source)
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    body.statements = texts
        .iter()
        .map(|text| {
            // PL/pgSQL keeps an expression (`IF …`, `x := …`) without its SELECT.
            pg_query::parse(text)
                .or_else(|_| pg_query::parse(&format!("SELECT {text}")))
                .map_err(|error| error.to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok(body)
}

fn strip_suffix_ignoring_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(split) && text[split..].eq_ignore_ascii_case(suffix))
        .then(|| &text[..split])
}

/// The parts of a dotted name as Postgres reads them: quoted ones as written, others folded
/// to lower case.
fn name_parts(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut characters = name.trim().chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '"' if quoted && characters.peek() == Some(&'"') => {
                characters.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            other if quoted => part.push(other),
            other => part.push(other.to_ascii_lowercase()),
        }
    }
    parts.push(part);
    parts
}

/// The relations `body` names, as written (qualified or not).
fn tables_named(body: &Body) -> BTreeSet<String> {
    let declared = body.row_types.iter().map(|parts| parts.join(".")).chain(
        body.column_types
            .iter()
            .map(|parts| parts[..parts.len() - 1].join(".")),
    );
    body.statements
        .iter()
        .flat_map(|statement| statement.tables())
        .chain(declared)
        .collect()
}

/// The columns of `schema.table` that `body` names where they can only mean that table's:
/// qualified by its name or alias, unqualified in a statement naming no other relation, in the
/// column list of an INSERT into it or the SET list of an UPDATE of it, or in a declaration
/// copying its type.
fn columns_named(body: &Body, schema: &str, table: &str) -> BTreeSet<String> {
    let qualified = format!("{schema}.{table}");
    let is_table = |name: &str| name == table || name == qualified;
    let mut columns: BTreeSet<String> = body
        .column_types
        .iter()
        .filter(|parts| is_table(&parts[..parts.len() - 1].join(".")))
        .map(|parts| parts[parts.len() - 1].clone())
        .collect();
    for statement in &body.statements {
        let tables = statement.tables();
        if !tables.iter().any(|name| is_table(name)) {
            continue;
        }
        let alone = tables.iter().all(|name| is_table(name));
        let mut qualifiers: BTreeSet<&str> = BTreeSet::from([table]);
        qualifiers.extend(
            statement
                .aliases
                .iter()
                .filter(|(_, aliased)| is_table(aliased))
                .map(|(alias, _)| alias.as_str()),
        );
        let Ok(tree) = serde_json::to_value(&statement.protobuf) else {
            continue;
        };
        let mut found = Found::default();
        walk(&tree, &mut found);
        for fields in found.column_refs {
            match fields.as_slice() {
                [column] if alone => {
                    columns.insert(column.clone());
                }
                [qualifier, column] if qualifiers.contains(qualifier.as_str()) => {
                    columns.insert(column.clone());
                }
                [in_schema, in_table, column] if in_schema == schema && in_table == table => {
                    columns.insert(column.clone());
                }
                _ => {}
            }
        }
        for (relation, column) in found.targets {
            if is_table(&relation) {
                columns.insert(column);
            }
        }
    }
    columns
}

/// What one statement's tree names: each column reference's fields, and each (relation,
/// column) an INSERT's column list or an UPDATE's SET list writes.
#[derive(Default)]
struct Found {
    column_refs: Vec<Vec<String>>,
    targets: Vec<(String, String)>,
}

/// Walks libpg_query's tree (its protobuf as serde writes it: a node is `{"Kind": {…}}`).
fn walk(node: &Value, found: &mut Found) {
    match node {
        Value::Object(fields) => {
            if let Some(reference) = fields.get("ColumnRef") {
                let names = reference["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|field| field["node"]["String"]["sval"].as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>();
                if let Some(names) = names {
                    found.column_refs.push(names);
                }
            }
            for (statement, list) in [("InsertStmt", "cols"), ("UpdateStmt", "target_list")] {
                let Some(written) = fields.get(statement) else {
                    continue;
                };
                let relation = &written["relation"];
                let name = match (
                    relation["schemaname"].as_str(),
                    relation["relname"].as_str(),
                ) {
                    (Some(schema), Some(name)) if !schema.is_empty() => format!("{schema}.{name}"),
                    (_, Some(name)) => name.to_owned(),
                    _ => continue,
                };
                for target in written[list].as_array().into_iter().flatten() {
                    if let Some(column) = target["node"]["ResTarget"]["name"].as_str() {
                        found.targets.push((name.clone(), column.to_owned()));
                    }
                }
            }
            for value in fields.values() {
                walk(value, found);
            }
        }
        Value::Array(values) => {
            for value in values {
                walk(value, found);
            }
        }
        _ => {}
    }
}

/// Every SQL text in a compiled PL/pgSQL function (the `query` of each of its expressions),
/// and every declared type's name as written.
fn collect_queries(node: &Value, queries: &mut Vec<String>, types: &mut Vec<String>) {
    match node {
        Value::Object(fields) => {
            if let Some(Value::String(query)) = fields
                .get("PLpgSQL_expr")
                .and_then(|expression| expression.get("query"))
            {
                queries.push(query.clone());
            }
            if let Some(Value::String(name)) = fields
                .get("PLpgSQL_type")
                .and_then(|declared| declared.get("typname"))
            {
                types.push(name.clone());
            }
            for value in fields.values() {
                collect_queries(value, queries, types);
            }
        }
        Value::Array(values) => {
            for value in values {
                collect_queries(value, queries, types);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plpgsql(declarations: &str, body: &str) -> Body {
        read_body(
            &format!(
                "CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $x$ {declarations} BEGIN {body} RETURN NEW; END $x$"
            ),
            true,
        )
        .expect("parses")
    }

    #[test]
    fn the_relations_a_plpgsql_body_names_are_found_in_its_statements_and_expressions() {
        assert_eq!(
            Vec::from_iter(tables_named(&plpgsql(
                "",
                "INSERT INTO audit.models_log SELECT NEW.id;
                 IF EXISTS (SELECT 1 FROM models WHERE id = NEW.id) THEN
                     UPDATE public.sizes SET n = n + 1;
                 END IF;"
            ))),
            ["audit.models_log", "models", "public.sizes"]
        );
    }

    #[test]
    fn comments_strings_and_dynamic_sql_name_nothing() {
        let body = plpgsql(
            "",
            "-- DELETE FROM models WHERE legacy_note IS NULL
             PERFORM 'SELECT legacy_note FROM models';
             EXECUTE 'TRUNCATE models';",
        );
        assert_eq!(tables_named(&body), BTreeSet::new());
        assert_eq!(columns_named(&body, "public", "models"), BTreeSet::new());
    }

    #[test]
    fn an_sql_functions_body_is_read_statement_by_statement() {
        let body = read_body(
            "DELETE FROM models WHERE id = $1; SELECT count(*) FROM public.parts",
            false,
        )
        .expect("parses");
        let named = tables_named(&body);
        assert!(names_table(&named, "public", "models"));
        assert!(names_table(&named, "public", "parts"));
        assert!(!names_table(&named, "public", "model"));
    }

    #[test]
    fn a_column_counts_only_where_the_statement_can_mean_the_tables_own() {
        let body = plpgsql(
            "",
            "SELECT legacy_note INTO NEW.name FROM models WHERE id = NEW.id;
             UPDATE public.models SET size = 0 WHERE id = 1;
             INSERT INTO models (name, shade) VALUES ('x', 'y');
             SELECT m.colour, p.weight, public.models.hue FROM models m JOIN parts p ON p.id = m.id;
             SELECT depth FROM models JOIN parts USING (id);
             INSERT INTO parts (finish) SELECT name FROM models;",
        );
        assert_eq!(
            Vec::from_iter(columns_named(&body, "public", "models")),
            [
                "colour",
                "hue",
                "id",
                "legacy_note",
                "name",
                "shade",
                "size"
            ]
        );
    }

    #[test]
    fn declarations_copying_a_tables_row_or_column_type_name_them() {
        let body = plpgsql(
            "DECLARE whole \"Models\"%ROWTYPE; note public.models.legacy_note%TYPE;
                     size Parts.Size%type; copied note%TYPE;",
            "",
        );
        assert_eq!(
            Vec::from_iter(tables_named(&body)),
            ["Models", "parts", "public.models"]
        );
        assert_eq!(
            Vec::from_iter(columns_named(&body, "public", "models")),
            ["legacy_note"]
        );
        assert_eq!(
            Vec::from_iter(columns_named(&body, "public", "parts")),
            ["size"]
        );
    }

    #[test]
    fn dotted_names_are_read_as_postgres_reads_them() {
        assert_eq!(name_parts("Public.\"My \"\"T\"\""), ["public", "My \"T\""]);
        assert_eq!(
            strip_suffix_ignoring_case("a%rowtype", "%ROWTYPE"),
            Some("a")
        );
        assert_eq!(strip_suffix_ignoring_case("é", "%TYPE"), None);
    }
}
