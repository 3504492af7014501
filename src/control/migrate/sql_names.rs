//! What the SQL of a function's body names: the relations its statements name, the sequences
//! it calls by name as text (`nextval('…')`), the columns they name of a given table where
//! they can only mean that table's, and the types its PL/pgSQL declarations copy from a
//! table. Read by libpg_query (PL/pgSQL compiled to its statements by `plpgsql_body.rs`, each
//! statement parsed), not searched as text: a name in a comment or a string does not count.
//! SQL a PL/pgSQL body runs with `EXECUTE` is read where it is a constant (a string, or
//! strings joined with `||`: `EXECUTE 'UPDATE models SET …' USING …`; or a variable given
//! such constants), not where it is built at run time (`format(…)`). Pure:
//! `function_bodies.rs` reads the functions and the catalog, and decides.

use std::collections::{BTreeMap, BTreeSet};

use pg_query::ParseResult;
use serde_json::Value;

use super::plpgsql_body;
use super::query_tree::each_object;

/// Whether `named` (relation names as written, qualified or not) holds `schema.table`. An
/// unqualified name counts: which table it means depends on the search path of each call.
pub(super) fn names_table(named: &BTreeSet<String>, schema: &str, table: &str) -> bool {
    named.contains(table) || named.contains(&format!("{schema}.{table}"))
}

/// What a function's body names: its statements, parsed, and the types its PL/pgSQL
/// declarations copy from a table (`models%ROWTYPE`, `models.legacy_note%TYPE`), as name
/// parts.
#[derive(Default)]
pub(super) struct Body {
    statements: Vec<ParseResult>,
    /// A row type's relation: `[table]` or `[schema, table]`.
    row_types: Vec<Vec<String>>,
    /// A column's type: the relation's parts, then the column.
    column_types: Vec<Vec<String>>,
    /// The names a PL/pgSQL body declares (its variables, parameters, records, `found`): an
    /// unqualified name may mean one of these rather than a column.
    variables: BTreeSet<String>,
}

/// The body of function `source`, parsed: a PL/pgSQL `CREATE FUNCTION` statement, compiled
/// to its statements, expressions and declarations, or an SQL function's body.
pub(super) fn read_body(
    source: &str,
    plpgsql: bool,
    parameters: &[String],
) -> Result<Body, String> {
    let mut body = Body {
        variables: parameters.iter().cloned().collect(),
        ..Body::default()
    };
    body.statements = if plpgsql {
        let compiled = plpgsql_body::compile(source)?;
        body.variables.extend(compiled.variables);
        for declared in compiled.types {
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
        compiled.statements
    } else {
        pg_query::split_with_parser(source)
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(|text| pg_query::parse(text).map_err(|error| error.to_string()))
            .collect::<Result<_, _>>()?
    };
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
pub(super) fn tables_named(body: &Body) -> BTreeSet<String> {
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

/// The first of `sequences` (schema, name, and what the caller knows of it) that `called` (the
/// sequences a body calls, `sequences_called`) holds.
pub(super) fn first_called<'a, T>(
    called: &BTreeSet<String>,
    sequences: &'a [(String, String, T)],
) -> Option<&'a (String, String, T)> {
    sequences
        .iter()
        .find(|(schema, sequence, _)| names_table(called, schema, sequence))
}

/// The functions that take a sequence by its name as text (`nextval('models_ticket_seq')`):
/// Postgres records a dependency only on a `regclass` constant in a stored expression, never
/// on what a function's body calls.
const SEQUENCE_FUNCTIONS: [&str; 3] = ["nextval", "currval", "setval"];

/// The sequences `body` calls by name (`nextval('…')`, `setval('s.n', …)`), as written in the
/// string (qualified or not), parts read as Postgres reads a `regclass` name.
pub(super) fn sequences_called(body: &Body) -> BTreeSet<String> {
    sequence_calls(body)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// The sequences a stored expression `body` (a column default, as Postgres shows it) calls by
/// name as text (`nextval('s'::text)`, shown `(('s'::text)::regclass)`), which holds no
/// dependency; not those it calls as a `regclass` constant (`nextval('s'::regclass)`), which
/// does.
pub(super) fn sequences_called_as_text(body: &Body) -> BTreeSet<String> {
    sequence_calls(body)
        .into_iter()
        .filter(|(_, as_regclass)| !as_regclass)
        .map(|(name, _)| name)
        .collect()
}

/// Each sequence `body` calls by name, and whether the constant naming it is cast straight to
/// `regclass`.
fn sequence_calls(body: &Body) -> BTreeSet<(String, bool)> {
    let mut called = BTreeSet::new();
    for statement in &body.statements {
        let Ok(tree) = serde_json::to_value(&statement.protobuf) else {
            continue;
        };
        each_object(&tree, &mut |fields| {
            let Some(call) = fields.get("FuncCall") else {
                return;
            };
            let function = call["funcname"]
                .as_array()
                .and_then(|parts| parts.last())
                .and_then(|part| part["node"]["String"]["sval"].as_str());
            if !function.is_some_and(|name| SEQUENCE_FUNCTIONS.contains(&name)) {
                return;
            }
            let mut argument = &call["args"][0]["node"];
            let mut innermost_cast = None;
            // `'models_ticket_seq'::regclass` or `::text`, or both as Postgres shows a default
            // written with `::text` (`(('s'::text)::regclass)`): the constant under the casts.
            while let Some(cast) = argument.get("TypeCast") {
                innermost_cast = cast["type_name"]["names"]
                    .as_array()
                    .and_then(|parts| parts.last())
                    .and_then(|part| part["node"]["String"]["sval"].as_str());
                argument = &cast["arg"]["node"];
            }
            if let Some(name) = argument["AConst"]["val"]["Sval"]["sval"].as_str() {
                called.insert((
                    name_parts(name).join("."),
                    innermost_cast == Some("regclass"),
                ));
            }
        });
    }
    called
}

/// The columns of the relations a body's statements name, as the catalog has them, by the
/// name as written (`schema.table`; `table`: every schema's relation of that name). A name
/// the catalog lacks (a table made at run time) is absent.
pub(super) type Neighbours = BTreeMap<String, BTreeSet<String>>;

/// How a statement's FROM can name columns the catalog does not list: a subquery, a function,
/// a common table expression.
const DERIVED_SOURCES: [&str; 5] = [
    "RangeSubselect",
    "RangeFunction",
    "RangeTableFunc",
    "CommonTableExpr",
    "JsonTable",
];

/// The columns of `schema.table` that `body` names where they can only mean that table's:
/// qualified by its name or alias; unqualified, in a statement naming no other relation, or
/// whose other relations all are in `neighbours` without such a column (and no subquery,
/// function or CTE could supply one), unless the body declares a variable or parameter of
/// that name; in the column list of an INSERT into it or the SET list of an UPDATE of it; or
/// in a declaration copying its type.
pub(super) fn columns_named(
    body: &Body,
    schema: &str,
    table: &str,
    neighbours: &Neighbours,
) -> BTreeSet<String> {
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
        let others: Vec<&String> = tables.iter().filter(|name| !is_table(name)).collect();
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
        let found = walk(&tree);
        let only_its_own = |column: &str| {
            !body.variables.contains(column)
                && (alone
                    || (!found.derived
                        && others.iter().all(|name| {
                            neighbours
                                .get(name.as_str())
                                .is_some_and(|theirs| !theirs.contains(column))
                        })))
        };
        for fields in &found.column_refs {
            match fields.as_slice() {
                [column] if only_its_own(column) => {
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
    /// Whether a source of [`DERIVED_SOURCES`] is among its relations.
    derived: bool,
}

/// What statement tree `tree` names.
fn walk(tree: &Value) -> Found {
    let mut found = Found::default();
    each_object(tree, &mut |fields| {
        found.derived |= DERIVED_SOURCES
            .iter()
            .any(|source| fields.contains_key(*source));
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
    });
    found
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
            &[],
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
    fn an_assignment_is_read_for_what_its_value_names() {
        let body = plpgsql(
            "DECLARE note text; n pg_catalog.int8 := 0;",
            "note := (SELECT m.legacy_note FROM public.models m WHERE m.id = NEW.id);
             n = n + (SELECT count(*) FROM audit.models_log);
             NEW.name := 'x';",
        );
        assert_eq!(
            Vec::from_iter(tables_named(&body)),
            ["audit.models_log", "public.models"]
        );
    }

    #[test]
    fn the_sequences_a_body_calls_by_name_are_found() {
        let body = plpgsql(
            "DECLARE n bigint := nextval('public.models_ticket_seq');",
            "PERFORM setval('\"Odd\".Seq', 5);
             NEW.n := pg_catalog.nextval('Tickets'::regclass) + currval('other'::text);
             NEW.m := nextval(NEW.name) + length('nextval(''x'')');
             NEW.k := nextval(('kept'::text)::regclass);",
        );
        assert_eq!(
            Vec::from_iter(sequences_called(&body)),
            [
                "Odd.seq",
                "kept",
                "other",
                "public.models_ticket_seq",
                "tickets"
            ]
        );
        // What a stored default calls as a `regclass` constant holds a dependency on it.
        assert_eq!(
            Vec::from_iter(sequences_called_as_text(&body)),
            ["Odd.seq", "kept", "other", "public.models_ticket_seq"]
        );
    }

    #[test]
    fn comments_strings_and_sql_built_at_run_time_name_nothing() {
        let body = plpgsql(
            "DECLARE target text := current_setting('app.target');",
            "-- DELETE FROM models WHERE legacy_note IS NULL
             PERFORM 'SELECT legacy_note FROM models';
             EXECUTE format('TRUNCATE %I', target);
             EXECUTE 'DELETE FROM ' || target || ' WHERE legacy_note IS NULL';
             EXECUTE 'DELETE FROM models WHERE';",
        );
        // `format`'s identifier known only at run time stands in as a name that matches nothing.
        let named = tables_named(&body);
        assert!(
            named.iter().all(|name| !name.contains("models")),
            "{named:?}"
        );
        assert_eq!(
            columns_named(&body, "public", "models", &Neighbours::new()),
            BTreeSet::new()
        );
    }

    #[test]
    fn sql_a_body_executes_as_a_constant_is_read() {
        let body = read_body(
            "CREATE FUNCTION public.f() RETURNS SETOF bigint LANGUAGE plpgsql AS $x$
             DECLARE found_row record; cursor_name refcursor;
             BEGIN
             EXECUTE 'UPDATE models SET legacy_note = $1 WHERE id = $2' USING 'x', 1;
             FOR found_row IN EXECUTE 'SELECT name FROM ' || 'public.owners o WHERE o.note = ' || E'\\'a\\'' LOOP END LOOP;
             OPEN cursor_name FOR EXECUTE $q$SELECT kind FROM kinds$q$;
             RETURN QUERY EXECUTE 'SELECT nextval(''tickets'')';
             END $x$",
            true,
            &[],
        )
        .expect("parses");
        assert_eq!(
            tables_named(&body),
            BTreeSet::from(["kinds", "models", "public.owners"].map(String::from))
        );
        assert_eq!(
            columns_named(&body, "public", "models", &Neighbours::new()),
            BTreeSet::from(["id".to_owned(), "legacy_note".to_owned()])
        );
        assert_eq!(
            sequences_called(&body),
            BTreeSet::from(["tickets".to_owned()])
        );
    }

    #[test]
    fn an_sql_functions_body_is_read_statement_by_statement() {
        let body = read_body(
            "DELETE FROM models WHERE id = $1; SELECT count(*) FROM public.parts",
            false,
            &[],
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
            Vec::from_iter(columns_named(&body, "public", "models", &Neighbours::new())),
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
            Vec::from_iter(columns_named(&body, "public", "models", &Neighbours::new())),
            ["legacy_note"]
        );
        assert_eq!(
            Vec::from_iter(columns_named(&body, "public", "parts", &Neighbours::new())),
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

    #[test]
    fn an_unqualified_column_beside_other_relations_counts_where_none_of_them_has_it() {
        let body = plpgsql(
            "DECLARE size_wanted integer;",
            "SELECT legacy_note INTO NEW.name FROM models JOIN parts ON parts.id = models.part;
             SELECT weight INTO NEW.size FROM models JOIN parts ON parts.id = models.part;
             SELECT hue INTO NEW.name FROM models JOIN made_at_run_time USING (id);
             SELECT shade INTO NEW.name FROM models JOIN parts ON parts.id = models.part,
                    LATERAL (SELECT 1 AS shade) s;
             SELECT count(*) INTO NEW.size FROM models JOIN parts USING (id)
              WHERE size = size_wanted;",
        );
        let neighbours = Neighbours::from([(
            "parts".to_owned(),
            BTreeSet::from(["id".to_owned(), "weight".to_owned()]),
        )]);
        assert_eq!(
            Vec::from_iter(columns_named(&body, "public", "models", &neighbours)),
            ["legacy_note", "part", "size"],
            "weight is parts', hue may be the unknown table's, shade the subquery's, \
             size_wanted a variable"
        );
        let sql = read_body(
            "SELECT legacy_note FROM models WHERE name = legacy_note",
            false,
            &["legacy_note".to_owned()],
        )
        .expect("parses");
        assert_eq!(
            Vec::from_iter(columns_named(&sql, "public", "models", &neighbours)),
            ["name"],
            "a parameter of that name takes the name over once the column is gone"
        );
    }
}
