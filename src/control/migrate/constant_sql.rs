//! The SQL text a PL/pgSQL expression computes, worked out without running it, where what it
//! names is fixed in the function: strings, strings joined with `||`, `format()` and
//! `quote_ident()` / `quote_literal()` / `quote_nullable()` over constants.
//!
//! Why its own file: `EXECUTE format('UPDATE %I SET …', 'models')` is how PL/pgSQL is taught to
//! build a statement, and a check that cannot read it lets a contract drop what every call
//! then fails on. A variable the function gives only constants (its declared default, its
//! assignments) is read as each of them. Where an argument is known only at run time and can
//! only be one identifier or one literal (`%I`, `%L`, `quote_ident(variable)`), it stands in
//! as a name that matches nothing, so the rest of the statement is still read; where it could
//! be any SQL (`%s`, a variable joined with `||`), the text is not worked out. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::query_tree::each_object;
use crate::control::quote::{quote_ident, quote_literal};

/// What stands for an identifier known only at run time: a quoted name no catalog holds, so
/// it names nothing a check looks for.
const UNKNOWN_IDENTIFIER: &str = "\"viewgate: an identifier known only at run time\"";
/// What stands for a literal known only at run time.
const UNKNOWN_LITERAL: &str = "NULL";

/// The texts a function's variables may hold where each is known before run time, by the
/// variable's name as the parser reads it (unquoted names folded to lower case).
pub(super) type Given = BTreeMap<String, Vec<String>>;

/// The widest `format()` field worked out: a wider one (Postgres pads it with as many spaces)
/// is taken as unknown rather than allocated.
const MAX_FORMAT_WIDTH: usize = 1024;

/// Readings of an expression that names more variables of [`Given`] than make this many
/// combinations of their values are not made: its variables are taken as known at run time.
const MAX_READINGS: usize = 16;

/// The texts expression `expression` (as PL/pgSQL keeps it, without its SELECT) computes where
/// they are worked out without running it: one, or one for each combination of the values
/// `given` its variables.
pub(super) fn constant_texts(expression: &str, given: &Given) -> Vec<String> {
    let Some(tree) = pg_query::parse(&format!("SELECT {expression}"))
        .ok()
        .and_then(|parsed| serde_json::to_value(&parsed.protobuf).ok())
    else {
        return Vec::new();
    };
    let targets = tree["stmts"][0]["stmt"]["node"]["SelectStmt"]["target_list"].as_array();
    let Some([target]) = targets.map(Vec::as_slice) else {
        return Vec::new();
    };
    let node = &target["node"]["ResTarget"]["val"]["node"];
    let mut named: Vec<String> = Vec::new();
    each_object(node, &mut |fields| {
        if let Some(name) = variable_named(fields.get("ColumnRef"))
            && given.contains_key(name)
            && !named.iter().any(|known| known == name)
        {
            named.push(name.to_owned());
        }
    });
    let combinations = named
        .iter()
        .try_fold(1usize, |count, name| count.checked_mul(given[name].len()))
        .filter(|count| *count <= MAX_READINGS);
    let bindings: Vec<Binding> = match combinations {
        Some(_) => named.iter().fold(vec![Binding::new()], |bindings, name| {
            bindings
                .iter()
                .flat_map(|binding| {
                    given[name].iter().map(move |text| {
                        let mut binding = binding.clone();
                        binding.insert(name.as_str(), text.as_str());
                        binding
                    })
                })
                .collect()
        }),
        None => vec![Binding::new()],
    };
    bindings
        .iter()
        .filter_map(|binding| match value(node, binding)? {
            Computed::Text(text) => Some(text),
            Computed::Null | Computed::AtRunTime => None,
        })
        .collect()
}

/// The name a column reference of one bare name gives: in a PL/pgSQL expression, a variable's.
fn variable_named(reference: Option<&Value>) -> Option<&str> {
    match reference?["fields"].as_array()?.as_slice() {
        [field] => field["node"]["String"]["sval"].as_str(),
        _ => None,
    }
}

/// What a node of the expression computes, as far as it is known.
enum Computed {
    Text(String),
    Null,
    /// A value the function has only at run time (a variable, a parameter, a call).
    AtRunTime,
}

/// The values bound to the variables an expression names, for one reading of it.
type Binding<'a> = BTreeMap<&'a str, &'a str>;

/// What `node` computes: a constant, a variable `binding` gives a value, a cast of one to a
/// text type, a `||` of known texts, or a function of [`text_function`]'s; `None` where it is
/// an SQL text not known before run time.
fn value(node: &Value, binding: &Binding) -> Option<Computed> {
    if let Some(constant) = node.get("AConst") {
        return Some(constant_value(constant));
    }
    if let Some(text) = variable_named(node.get("ColumnRef")).and_then(|name| binding.get(name)) {
        return Some(Computed::Text((*text).to_owned()));
    }
    if let Some(cast) = node.get("TypeCast") {
        let type_name = last_name(&cast["type_name"]["names"])?;
        return match value(&cast["arg"]["node"], binding)? {
            known @ (Computed::Text(_) | Computed::Null)
                if matches!(type_name, "text" | "varchar" | "name" | "bpchar") =>
            {
                Some(known)
            }
            _ => Some(Computed::AtRunTime),
        };
    }
    if let Some(joined) = node.get("AExpr") {
        if last_name(&joined["name"])? != "||" {
            return Some(Computed::AtRunTime);
        }
        return match (
            value(&joined["lexpr"]["node"], binding)?,
            value(&joined["rexpr"]["node"], binding)?,
        ) {
            (Computed::Text(left), Computed::Text(right)) => Some(Computed::Text(left + &right)),
            (Computed::Null, _) | (_, Computed::Null) => Some(Computed::Null),
            // Text joined to something known only at run time could be any SQL.
            _ => None,
        };
    }
    if let Some(call) = node.get("FuncCall") {
        return text_function(call, binding);
    }
    Some(Computed::AtRunTime)
}

/// An `AConst` node's value as text.
fn constant_value(constant: &Value) -> Computed {
    if constant["isnull"].as_bool() == Some(true) {
        return Computed::Null;
    }
    let val = &constant["val"];
    if let Some(text) = val["Sval"]["sval"].as_str() {
        return Computed::Text(text.to_owned());
    }
    if let Some(integer) = val["Ival"]["ival"].as_i64() {
        return Computed::Text(integer.to_string());
    }
    if let Some(number) = val["Fval"]["fval"].as_str() {
        return Computed::Text(number.to_owned());
    }
    Computed::AtRunTime
}

/// A call of `format`, `quote_ident`, `quote_literal` or `quote_nullable`: the text it returns
/// where its arguments are known, or a stand-in where the argument is not but the result can
/// only be one identifier or literal. Any other function's result is known at run time only.
fn text_function(call: &Value, binding: &Binding) -> Option<Computed> {
    let name = last_name(&call["funcname"])?;
    let arguments: Vec<&Value> = call["args"]
        .as_array()
        .map(|arguments| arguments.iter().map(|argument| &argument["node"]).collect())
        .unwrap_or_default();
    let variadic = call["func_variadic"].as_bool() == Some(true);
    match (name, arguments.as_slice()) {
        ("format", [template, rest @ ..]) if !variadic => {
            let Computed::Text(template) = value(template, binding)? else {
                return None;
            };
            let rest = rest
                .iter()
                .map(|argument| value(argument, binding))
                .collect::<Option<Vec<_>>>()?;
            format(&template, &rest).map(Computed::Text)
        }
        ("quote_ident", [argument]) => Some(match value(argument, binding)? {
            Computed::Text(text) => Computed::Text(quote_ident(&text)),
            Computed::Null => Computed::Null,
            Computed::AtRunTime => Computed::Text(UNKNOWN_IDENTIFIER.to_owned()),
        }),
        ("quote_literal" | "quote_nullable", [argument]) => Some(match value(argument, binding)? {
            Computed::Text(text) => Computed::Text(quote_literal(&text)),
            Computed::Null if name == "quote_literal" => Computed::Null,
            Computed::Null | Computed::AtRunTime => Computed::Text(UNKNOWN_LITERAL.to_owned()),
        }),
        _ => Some(Computed::AtRunTime),
    }
}

/// The last part of a qualified name list (`pg_catalog.format`, an operator's `||`).
fn last_name(names: &Value) -> Option<&str> {
    names.as_array()?.last()?["node"]["String"]["sval"].as_str()
}

/// What `format(template, arguments…)` returns, as Postgres documents it: `%s`, `%I`, `%L`
/// and `%%`, each with an optional `n$` position, `-` flag and width. `None` where the result
/// is not known: a `%s` of a value known only at run time, a `*` width or one over
/// [`MAX_FORMAT_WIDTH`], a `%I` of NULL (which raises), a template Postgres would refuse.
fn format(template: &str, arguments: &[Computed]) -> Option<String> {
    let mut output = String::with_capacity(template.len());
    let mut next_argument = 0;
    let mut characters = template.chars().peekable();
    while let Some(character) = characters.next() {
        if character != '%' {
            output.push(character);
            continue;
        }
        if characters.peek() == Some(&'%') {
            characters.next();
            output.push('%');
            continue;
        }
        let mut digits = String::new();
        while let Some(digit) = characters.next_if(char::is_ascii_digit) {
            digits.push(digit);
        }
        if !digits.is_empty() && characters.next_if_eq(&'$').is_some() {
            next_argument = digits.parse::<usize>().ok()?.checked_sub(1)?;
            digits.clear();
        }
        let left_aligned = characters.next_if_eq(&'-').is_some();
        while let Some(digit) = characters.next_if(char::is_ascii_digit) {
            digits.push(digit);
        }
        let width: usize = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .ok()
                .filter(|width| *width <= MAX_FORMAT_WIDTH)?
        };
        let conversion = characters.next()?;
        let argument = arguments.get(next_argument)?;
        next_argument += 1;
        let piece = match (conversion, argument) {
            ('s', Computed::Text(text)) => text.clone(),
            ('s', Computed::Null) => String::new(),
            ('I', Computed::Text(text)) => quote_ident(text),
            ('I', Computed::AtRunTime) => UNKNOWN_IDENTIFIER.to_owned(),
            ('L', Computed::Text(text)) => quote_literal(text),
            ('L', Computed::Null | Computed::AtRunTime) => UNKNOWN_LITERAL.to_owned(),
            _ => return None,
        };
        let padding = " ".repeat(width.saturating_sub(piece.chars().count()));
        if left_aligned {
            output.push_str(&piece);
            output.push_str(&padding);
        } else {
            output.push_str(&padding);
            output.push_str(&piece);
        }
    }
    Some(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one text `expression` computes with no variable known.
    fn constant_text(expression: &str) -> Option<String> {
        match constant_texts(expression, &Given::new()).as_slice() {
            [text] => Some(text.clone()),
            [] => None,
            more => panic!("{more:?}"),
        }
    }

    #[test]
    fn constant_sql_is_read_and_sql_built_at_run_time_is_not() {
        for (expression, expected) in [
            ("'SELECT 1'", Some("SELECT 1")),
            (
                "'SELECT ' || 'name FROM ' || $q$models$q$",
                Some("SELECT name FROM models"),
            ),
            ("E'SELECT \\'a\\''", Some("SELECT 'a'")),
            ("'SELECT ' || target", None),
            ("'a' + 'b'", None),
            ("'SELECT ' || NULL", None),
        ] {
            assert_eq!(
                constant_text(expression).as_deref(),
                expected,
                "{expression}"
            );
        }
    }

    #[test]
    fn format_is_worked_out_as_postgres_documents_it() {
        for (expression, expected) in [
            (
                "format('SELECT %I FROM %I.%I', 'Name', 'public', 'models')",
                Some(r#"SELECT "Name" FROM "public"."models""#),
            ),
            (
                "pg_catalog.format('UPDATE %2$I SET note = %1$L, n = %3$s, m = %s', 'it''s', 'models', 3, 4)",
                Some(r#"UPDATE "models" SET note = 'it''s', n = 3, m = 4"#),
            ),
            (
                "format('DELETE FROM models WHERE %s%% > %-3s|', 'ratio', 1)",
                Some("DELETE FROM models WHERE ratio% > 1  |"),
            ),
            (
                "format('SELECT %L, %s', NULL, NULL::text)",
                Some("SELECT NULL, "),
            ),
            ("format('SELECT %I', NULL)", None),
            ("format('SELECT %s FROM models', columns)", None),
            ("format('SELECT %*s', 3, 'x')", None),
            ("format('SELECT 1%99999999999s', 'x')", None),
            ("format('SELECT 1%', 'x')", None),
            ("format('SELECT %I, %I', 'one')", None),
            ("format('SELECT %I', VARIADIC ARRAY['a'])", None),
            ("format(template, 'models')", None),
        ] {
            assert_eq!(
                constant_text(expression).as_deref(),
                expected,
                "{expression}"
            );
        }
    }

    #[test]
    fn each_combination_of_the_values_given_the_variables_is_read() {
        let given = Given::from([
            (
                "target".to_owned(),
                vec!["models".to_owned(), "owners".to_owned()],
            ),
            ("Column".to_owned(), vec!["note".to_owned()]),
        ]);
        assert_eq!(
            constant_texts(r#"format('SELECT %I FROM %I', "Column", target)"#, &given),
            [
                r#"SELECT "note" FROM "models""#,
                r#"SELECT "note" FROM "owners""#
            ]
        );
        assert_eq!(
            constant_texts("'SELECT ' || column_name || ' FROM models'", &given),
            Vec::<String>::new(),
            "a variable given nothing known is known at run time"
        );
        let many = Given::from(
            ["a", "b", "c", "d", "e"]
                .map(|name| (name.to_owned(), vec!["x".to_owned(), "y".to_owned()])),
        );
        assert_eq!(
            constant_texts("format('%I.%I.%I.%I.%I', a, b, c, d, e)", &many),
            [format!("{0}.{0}.{0}.{0}.{0}", UNKNOWN_IDENTIFIER)],
            "past {MAX_READINGS} readings, the variables are known at run time only"
        );
    }

    #[test]
    fn an_identifier_or_literal_known_only_at_run_time_stands_in_and_the_rest_is_read() {
        assert_eq!(
            constant_text("format('UPDATE models SET %I = %L WHERE id = $1', target, v)"),
            Some(format!(
                "UPDATE models SET {UNKNOWN_IDENTIFIER} = {UNKNOWN_LITERAL} WHERE id = $1"
            ))
        );
        assert_eq!(
            constant_text(
                "'DELETE FROM ' || quote_ident(name) || ' WHERE note = ' || quote_nullable(v)"
            ),
            Some(format!(
                "DELETE FROM {UNKNOWN_IDENTIFIER} WHERE note = {UNKNOWN_LITERAL}"
            ))
        );
        assert_eq!(
            constant_text(
                "'SELECT ' || quote_literal('a\\b') || ' FROM ' || quote_ident('models')"
            ),
            Some("SELECT E'a\\\\b' FROM \"models\"".to_owned())
        );
        let standing_in = pg_query::parse(
            &constant_text("format('SELECT %I FROM %I', a, b)").expect("worked out"),
        )
        .expect("parses");
        assert!(
            standing_in
                .tables()
                .iter()
                .all(|name| !name.contains("models")),
            "{:?}",
            standing_in.tables()
        );
    }
}
