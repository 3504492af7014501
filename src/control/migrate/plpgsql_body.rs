//! A PL/pgSQL function's body as libpg_query compiles it: the SQL of each of its statements
//! and expressions, parsed; the SQL it runs by `EXECUTE` where that is known before run time
//! (`constant_sql.rs`), written in the statement or given to the variable it executes; the
//! types its declarations copy; the names it declares.
//!
//! Why its own file: PL/pgSQL keeps its SQL in pieces no SQL statement parses as (a condition
//! without its SELECT, an assignment whole, the text an `EXECUTE` runs as a string), and each
//! piece must be made a statement before `sql_names.rs` can read what it names. Pure.

use std::collections::BTreeSet;

use pg_query::ParseResult;
use serde_json::Value;

use super::constant_sql::{Given, constant_texts};
use super::query_tree::each_object;

/// What a compiled PL/pgSQL function holds that names things.
#[derive(Default)]
pub(super) struct Compiled {
    /// Each SQL statement or expression, parsed, and the SQL each constant `EXECUTE` runs.
    pub(super) statements: Vec<ParseResult>,
    /// Every declared type's name as written.
    pub(super) types: Vec<String>,
    /// Every variable's, parameter's and record's name.
    pub(super) variables: BTreeSet<String>,
}

/// The PL/pgSQL statements that run SQL given at run time, and the field holding its
/// expression: `EXECUTE`, `FOR … IN EXECUTE`, `RETURN QUERY EXECUTE`, `OPEN … FOR EXECUTE`.
const DYNAMIC_STATEMENTS: [(&str, &str); 4] = [
    ("PLpgSQL_stmt_dynexecute", "query"),
    ("PLpgSQL_stmt_dynfors", "query"),
    ("PLpgSQL_stmt_return_query", "dynquery"),
    ("PLpgSQL_stmt_open", "dynquery"),
];

/// The PL/pgSQL statements that give variables values at run time, and the field naming them:
/// `SELECT … INTO`, `EXECUTE … INTO`, `FETCH`, `CALL` (its `OUT` arguments) and the loops'
/// variables. (`FOREACH` and `GET DIAGNOSTICS` name theirs by number: [`FILLED_BY_NUMBER`].)
const FILLING_STATEMENTS: [(&str, &str); 8] = [
    ("PLpgSQL_stmt_execsql", "target"),
    ("PLpgSQL_stmt_dynexecute", "target"),
    ("PLpgSQL_stmt_fetch", "target"),
    ("PLpgSQL_stmt_call", "target"),
    ("PLpgSQL_stmt_fori", "var"),
    ("PLpgSQL_stmt_fors", "var"),
    ("PLpgSQL_stmt_forc", "var"),
    ("PLpgSQL_stmt_dynfors", "var"),
];

/// The objects naming a variable filled at run time by its number among the function's
/// datums, and the field holding it.
const FILLED_BY_NUMBER: [(&str, &str); 2] = [
    ("PLpgSQL_stmt_foreach_a", "varno"),
    ("PLpgSQL_diag_item", "target"),
];

/// Compiles `source`, a PL/pgSQL `CREATE FUNCTION` statement. Fails where the function or one
/// of its SQL texts does not parse (what it names cannot then be known).
pub(super) fn compile(source: &str) -> Result<Compiled, String> {
    let tree = pg_query::parse_plpgsql(source).map_err(|error| error.to_string())?;
    let mut texts = Vec::new();
    let mut executed = Vec::new();
    // Each variable's declared default and assigned values, as expressions: what `EXECUTE
    // variable` may run, and what `format(…, variable)` may be given.
    let mut assigned: Vec<(String, String)> = Vec::new();
    // The variables a statement fills at run time: what they hold is not known before.
    let mut filled = BTreeSet::new();
    let mut filled_numbers = Vec::new();
    let mut datums = Vec::new();
    let mut compiled = Compiled::default();
    each_object(&tree, &mut |fields| {
        if let Some(Value::Array(declared)) = fields
            .get("PLpgSQL_function")
            .and_then(|function| function.get("datums"))
        {
            datums.clone_from(declared);
        }
        for (statement, field) in FILLING_STATEMENTS {
            if let Some(variable) = fields.get(statement).and_then(|filling| filling.get(field)) {
                filled.extend(variable_names(variable));
            }
        }
        for (object, field) in FILLED_BY_NUMBER {
            if let Some(number) = fields
                .get(object)
                .and_then(|filling| filling.get(field))
                .and_then(Value::as_u64)
            {
                filled_numbers.push(number);
            }
        }
        if let Some(Value::String(query)) = fields
            .get("PLpgSQL_expr")
            .and_then(|expression| expression.get("query"))
        {
            texts.push(query.clone());
        }
        if let Some(Value::String(query)) = fields
            .get("PLpgSQL_stmt_assign")
            .and_then(|assign| assign.get("expr"))
            .and_then(|expression| expression.get("PLpgSQL_expr"))
            .and_then(|expression| expression.get("query"))
            && let Some((target, value)) = assignment(query)
        {
            let variable = variable_name(target).unwrap_or_else(|| target.trim().to_owned());
            assigned.push((variable, value.to_owned()));
        }
        if let Some(declared) = fields.get("PLpgSQL_var")
            && let (Some(Value::String(name)), Some(Value::String(default))) = (
                declared.get("refname"),
                declared["default_val"]["PLpgSQL_expr"].get("query"),
            )
        {
            assigned.push((name.clone(), default.clone()));
        }
        for (statement, field) in DYNAMIC_STATEMENTS {
            if let Some(Value::String(query)) = fields
                .get(statement)
                .and_then(|dynamic| dynamic.get(field))
                .and_then(|expression| expression.get("PLpgSQL_expr"))
                .and_then(|expression| expression.get("query"))
            {
                executed.push(query.clone());
            }
        }
        if let Some(Value::String(name)) = fields
            .get("PLpgSQL_type")
            .and_then(|declared| declared.get("typname"))
        {
            compiled.types.push(name.clone());
        }
        for datum in ["PLpgSQL_var", "PLpgSQL_rec", "PLpgSQL_row"] {
            if let Some(Value::String(name)) = fields
                .get(datum)
                .and_then(|declared| declared.get("refname"))
            {
                compiled.variables.insert(name.clone());
            }
        }
    });
    compiled.statements = texts
        .iter()
        .map(|text| parse_piece(text))
        .collect::<Result<_, _>>()?;
    for number in filled_numbers {
        if let Some(datum) = usize::try_from(number)
            .ok()
            .and_then(|number| datums.get(number))
        {
            filled.extend(variable_names(datum));
        }
    }
    let given = given(&assigned, &filled);
    // A variable executed runs one of the values given it; a constant that is no statement
    // (a fragment the body completes) is left unread, as SQL built at run time is.
    let runs = executed.iter().flat_map(|expression| {
        let values = assigned
            .iter()
            .filter(|(variable, _)| variable.eq_ignore_ascii_case(expression.trim()))
            .map(|(_, value)| value);
        std::iter::once(expression).chain(values)
    });
    compiled.statements.extend(
        runs.flat_map(|expression| constant_texts(expression, &given))
            .filter_map(|text| pg_query::parse(&text).ok()),
    );
    Ok(compiled)
}

/// The names of the variables a compiled variable object stands for: a scalar's or a
/// record's own, each of a row's fields (`SELECT a, b INTO x, y`: the row of `x` and `y`).
fn variable_names(variable: &Value) -> Vec<String> {
    let name = |object: &Value| {
        object
            .get("refname")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let Some(row) = variable.get("PLpgSQL_row") {
        return row
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|field| field.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
    }
    ["PLpgSQL_var", "PLpgSQL_rec"]
        .iter()
        .filter_map(|kind| variable.get(kind).and_then(name))
        .collect()
}

/// The variables every value given of which (`assigned`: declared defaults and assignments,
/// by the variable's name as the parser reads it) is known before run time, with those
/// values. A variable also given something else, or `filled` by a statement (`SELECT …
/// INTO`, a loop), is known at run time only.
fn given(assigned: &[(String, String)], filled: &BTreeSet<String>) -> Given {
    let mut given = Given::new();
    let mut at_run_time: BTreeSet<&String> = filled.iter().collect();
    for (variable, expression) in assigned {
        match constant_texts(expression, &Given::new()).as_slice() {
            [text] => given
                .entry(variable.clone())
                .or_default()
                .push(text.clone()),
            _ => {
                at_run_time.insert(variable);
            }
        }
    }
    given.retain(|variable, values| {
        values.sort();
        values.dedup();
        !at_run_time.contains(variable)
    });
    given
}

/// An assignment's target as the parser names a variable (an unquoted name folded to lower
/// case, a quoted one as written); `None` for a field, an element or a qualified name.
fn variable_name(target: &str) -> Option<String> {
    let target = target.trim();
    if let Some(quoted) = target
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return (!quoted.is_empty()).then(|| quoted.replace("\"\"", "\""));
    }
    let mut characters = target.chars();
    let starts = characters
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_');
    (starts && characters.all(|next| next.is_alphanumeric() || next == '_' || next == '$'))
        .then(|| target.to_lowercase())
}

/// One SQL text of a compiled body, parsed. PL/pgSQL keeps an expression (`IF …`) without its
/// SELECT, and an assignment (`x := …`) whole, which no SQL statement parses as: every
/// function with one was left unread, and what it named unchecked.
fn parse_piece(text: &str) -> Result<ParseResult, String> {
    pg_query::parse(text)
        .or_else(|_| pg_query::parse(&format!("SELECT {text}")))
        .or_else(|error| match assignment(text) {
            Some((_, value)) => pg_query::parse(&format!("SELECT {value}")),
            None => Err(error),
        })
        .map_err(|error| error.to_string())
}

/// A PL/pgSQL assignment's text (`target := value`, or `target = value`) split at the first
/// `:=` or `=` outside strings, quoted names and comments: its target and its value.
fn assignment(text: &str) -> Option<(&str, &str)> {
    use pg_query::protobuf::Token;
    let tokens = pg_query::scan(text).ok()?.tokens;
    let assigns = tokens.iter().find(|token| {
        token.token == Token::ColonEquals as i32 || token.token == Token::Ascii61 as i32
    })?;
    let target = text.get(..usize::try_from(assigns.start).ok()?)?;
    let value = text.get(usize::try_from(assigns.end).ok()?..)?;
    Some((target, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables the compiled statements name, but the stand-in for a name known at run time.
    fn tables_named(compiled: &Compiled) -> BTreeSet<String> {
        compiled
            .statements
            .iter()
            .flat_map(|statement| statement.tables())
            .filter(|name| !name.starts_with("viewgate: "))
            .collect()
    }

    #[test]
    fn a_variable_executed_runs_each_constant_it_was_given() {
        let compiled = compile(
            "CREATE FUNCTION f() RETURNS bigint LANGUAGE plpgsql AS $x$
             DECLARE query text := 'SELECT legacy_note FROM models'; other text; n bigint;
             BEGIN
                 IF n > 0 THEN QUERY := 'DELETE FROM ' || 'owners'; END IF;
                 other := 'SELECT 1 FROM unread';
                 query := format('SELECT %I', other);
                 EXECUTE query INTO n;
                 RETURN n;
             END $x$",
        )
        .expect("compiles");
        let named = tables_named(&compiled);
        assert_eq!(
            named,
            BTreeSet::from(["models".to_owned(), "owners".to_owned()])
        );
    }

    #[test]
    fn a_variable_given_only_constants_is_read_as_each_of_them_in_the_sql_executed() {
        let compiled = compile(
            r#"CREATE FUNCTION f(kind text) RETURNS void LANGUAGE plpgsql AS $x$
             DECLARE target text := 'models'; "Other" text; later text := 'unread';
             BEGIN
                 IF kind = 'owners' THEN target := 'owners'; END IF;
                 "Other" := 'archive';
                 later := kind;
                 EXECUTE format('TRUNCATE %I, %I', target, "Other");
                 EXECUTE 'DELETE FROM ' || quote_ident(later);
                 EXECUTE format('DELETE FROM %s', later);
             END $x$"#,
        )
        .expect("compiles");
        let named = tables_named(&compiled);
        assert_eq!(
            named,
            BTreeSet::from([
                "archive".to_owned(),
                "models".to_owned(),
                "owners".to_owned()
            ])
        );
    }

    #[test]
    fn a_variable_a_statement_fills_at_run_time_is_not_read_as_its_constants() {
        let compiled = compile(
            r#"CREATE FUNCTION f(names text[]) RETURNS void LANGUAGE plpgsql AS $x$
             DECLARE by_select text := 'models'; by_row text := 'models'; n int;
                     by_loop text := 'models'; by_each text := 'models';
                     by_diag text := 'models'; kept text := 'owners';
             BEGIN
                 SELECT relname INTO by_select FROM pg_class LIMIT 1;
                 SELECT 1, relname INTO n, by_row FROM pg_class LIMIT 1;
                 FOR by_loop IN SELECT relname FROM pg_class LOOP END LOOP;
                 FOREACH by_each IN ARRAY names LOOP END LOOP;
                 GET DIAGNOSTICS by_diag = PG_CONTEXT;
                 EXECUTE format('DELETE FROM %I', by_select);
                 EXECUTE format('DELETE FROM %I', by_row);
                 EXECUTE format('DELETE FROM %I', by_loop);
                 EXECUTE format('DELETE FROM %I', by_each);
                 EXECUTE format('DELETE FROM %I', by_diag);
                 EXECUTE format('DELETE FROM %I', kept);
             END $x$"#,
        )
        .expect("compiles");
        let named = tables_named(&compiled);
        assert_eq!(
            named,
            BTreeSet::from(["owners".to_owned(), "pg_class".to_owned()])
        );
    }

    #[test]
    fn conditions_and_assignments_are_read_as_the_values_they_compute() {
        for piece in [
            "found AND n > 1",
            "n := (SELECT count(*) FROM models)",
            "x = 1",
        ] {
            assert!(parse_piece(piece).is_ok(), "{piece}");
        }
        assert!(parse_piece("n := (SELECT").is_err());
    }
}
