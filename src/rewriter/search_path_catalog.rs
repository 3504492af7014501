//! `information_schema` on the search_path: what would make an unqualified `columns` or
//! `tables` read the real `information_schema`, which describes every version's columns.
//!
//! A version with catalog substitutes sends `information_schema.columns` to its own, but an
//! unqualified `columns` is far likelier an application's table and is left alone
//! (`model::catalog_substitutes`). So a session at such a version may not put
//! `information_schema` on a search_path by any statement the proxy sees: `SET search_path`,
//! `ALTER ROLE | DATABASE … SET search_path` (the next login's path), a function's
//! `SET search_path` clause, and `set_config('search_path', …)` whose value is not a constant
//! (the proxy cannot tell what it holds), or whose parameter name is not. Paths set where the
//! proxy cannot see (a role's default set over a direct connection) are documented in
//! docs/rewriting.md.

use super::definitions::find_all_ignore_ascii_case;
use super::parse_tree::{Tree, location, name_parts};
use crate::model::catalog_substitutes::{
    INFORMATION_SCHEMA, SEARCH_PATH, SEARCH_PATH_SETTERS, SET_CONFIG,
};

/// Where a text that is not parsed (longer than `MAX_CHECKED_BYTES`) may change the
/// search_path.
pub fn unchecked_path_change(sql: &str) -> Option<usize> {
    SEARCH_PATH_SETTERS
        .iter()
        .filter_map(|name| find_all_ignore_ascii_case(sql.as_bytes(), name.as_bytes()).next())
        .min()
}

/// The byte offset of the first place in `statement` (a parse tree) that may put
/// `information_schema` on a search_path.
pub fn information_schema_on_path(statement: &Tree) -> Option<usize> {
    let mut found = None;
    visit(statement, &mut found);
    found
}

fn visit(tree: &Tree, found: &mut Option<usize>) {
    match tree {
        Tree::Array(items) => items.iter().for_each(|item| visit(item, found)),
        Tree::Object(fields) => {
            for (key, child) in fields {
                let at = match key.as_ref() {
                    // Tagged as a statement or a function's option; untagged as the
                    // `setstmt` field of `ALTER ROLE | DATABASE | SYSTEM … SET`.
                    "VariableSetStmt" | "setstmt" => setting(child),
                    "FuncCall" => set_config_call(child),
                    _ => None,
                };
                if let Some(at) = at {
                    *found = Some(found.map_or(at, |earlier| earlier.min(at)));
                }
                visit(child, found);
            }
        }
        _ => {}
    }
}

/// `SET search_path = …` (alone, or inside `ALTER ROLE … SET` and a function's options):
/// its values, each a name or a quoted list of names.
fn setting(set: &Tree) -> Option<usize> {
    if set.get("name").and_then(Tree::as_text) != Some(SEARCH_PATH) {
        return None;
    }
    let arguments = set.get("args").map(Tree::as_array).unwrap_or_default();
    arguments
        .iter()
        .filter_map(|argument| constant(argument))
        .find(|(value, _)| names_information_schema(value))
        .map(|(_, at)| at)
}

/// `set_config(name, value, is_local)`: refused when `name` may be `search_path` and `value`
/// may hold `information_schema`, or cannot be read as a constant.
fn set_config_call(call: &Tree) -> Option<usize> {
    let names = name_parts(call.get("funcname"));
    if !matches!(names.as_slice(), [SET_CONFIG] | ["pg_catalog", SET_CONFIG]) {
        return None;
    }
    let call_at = location(call).unwrap_or_default();
    let arguments = call.get("args").map(Tree::as_array).unwrap_or_default();
    let [name, value, ..] = arguments else {
        return None;
    };
    match constant(name) {
        Some((name, _)) if !name.eq_ignore_ascii_case(SEARCH_PATH) => None,
        Some(_) => match constant(value) {
            Some((value, at)) => names_information_schema(value).then_some(at),
            None => Some(call_at),
        },
        None => Some(call_at),
    }
}

/// A string constant (possibly cast) and its byte offset.
fn constant<'t>(argument: &'t Tree) -> Option<(&'t str, usize)> {
    let constant = argument
        .get("A_Const")
        .or_else(|| argument.get("TypeCast")?.get("arg")?.get("A_Const"))?;
    let text = constant.get("sval")?.get("sval")?.as_text()?;
    Some((text, location(constant)?))
}

/// Whether a search_path value (comma-separated names, unquoted ones folded to lower case)
/// names `information_schema`.
pub fn names_information_schema(value: &str) -> bool {
    value.split(',').map(str::trim).any(|name| {
        match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(quoted) => quoted == INFORMATION_SCHEMA,
            None => name.eq_ignore_ascii_case(INFORMATION_SCHEMA),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::names_information_schema;

    #[test]
    fn values_are_read_as_postgres_splits_them() {
        for value in [
            "information_schema",
            "public, Information_Schema",
            "\"$user\",\"information_schema\"",
        ] {
            assert!(names_information_schema(value), "{value}");
        }
        for value in [
            "public",
            "\"Information_Schema\"",
            "my_information_schema",
            "",
        ] {
            assert!(!names_information_schema(value), "{value}");
        }
    }
}
