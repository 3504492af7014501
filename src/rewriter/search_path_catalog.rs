//! `information_schema` or a schema of catalog substitutes on the search_path: what would make
//! an unqualified `columns` or `tables` read the real `information_schema`, which describes
//! every version's columns, or another version's substitutes, which describe that version's.
//!
//! A version with catalog substitutes sends `information_schema.columns` to its own, but an
//! unqualified `columns` is far likelier an application's table and is left alone
//! (`model::catalog_substitutes`). So a versioned session may not put either kind of schema on
//! a search_path by any statement the proxy sees: `SET search_path`,
//! `ALTER ROLE | DATABASE … SET search_path` (the next login's path), a function's
//! `SET search_path` clause, and `set_config('search_path', …)` whose value is not a constant
//! (the proxy cannot tell what it holds), or whose parameter name is not. Paths set where the
//! proxy cannot see (a role's default set over a direct connection) are documented in
//! docs/rewriting.md.

use super::definitions::find_all_ignore_ascii_case;
use super::parse_tree::{Tree, location, name_parts, string_constant};
use crate::model::catalog_substitutes::{
    INFORMATION_SCHEMA, READING_SETTERS, SEARCH_PATH, SEARCH_PATH_SETTERS, SET_CONFIG,
    SUBSTITUTE_SCHEMA_PREFIX,
};

/// Where a text that is not parsed (longer than `MAX_CHECKED_BYTES`) may change the
/// search_path (which matters at a version with substitutes) or how later text reads
/// (`reading_settings.rs`, at every version).
pub fn unchecked_setting_change(sql: &str, with_substitutes: bool) -> Option<usize> {
    SEARCH_PATH_SETTERS
        .iter()
        .filter(|_| with_substitutes)
        .chain(READING_SETTERS)
        .filter_map(|name| find_all_ignore_ascii_case(sql.as_bytes(), name.as_bytes()).next())
        .min()
}

/// The byte offset of the first place in `statement` (a parse tree) that may put
/// `information_schema` or a schema of substitutes on a search_path. `unread_values`: whether
/// a `set_config` whose value (or setting name) is not a constant counts, as it does at a
/// version with substitutes (where information_schema matters and the fast path reads every
/// `set_config`); elsewhere only a value naming such a schema does.
pub fn catalog_on_path(statement: &Tree, unread_values: bool) -> Option<usize> {
    let mut found = None;
    visit(statement, unread_values, &mut found);
    found
}

fn visit(tree: &Tree, unread_values: bool, found: &mut Option<usize>) {
    match tree {
        Tree::Array(items) => items
            .iter()
            .for_each(|item| visit(item, unread_values, found)),
        Tree::Object(fields) => {
            for (key, child) in fields {
                let at = match key.as_ref() {
                    // Tagged as a statement or a function's option; untagged as the
                    // `setstmt` field of `ALTER ROLE | DATABASE | SYSTEM … SET`.
                    "VariableSetStmt" | "setstmt" => setting(child),
                    "FuncCall" => set_config_call(child, unread_values),
                    _ => None,
                };
                if let Some(at) = at {
                    *found = Some(found.map_or(at, |earlier| earlier.min(at)));
                }
                visit(child, unread_values, found);
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
        .filter_map(|argument| string_constant(argument))
        .find(|(value, _)| names_catalog_schema(value))
        .map(|(_, at)| at)
}

/// `set_config(name, value, is_local)`: refused when `name` may be `search_path` and `value`
/// may hold `information_schema`, or cannot be read as a constant.
fn set_config_call(call: &Tree, unread_values: bool) -> Option<usize> {
    let names = name_parts(call.get("funcname"));
    if !matches!(names.as_slice(), [SET_CONFIG] | ["pg_catalog", SET_CONFIG]) {
        return None;
    }
    let call_at = location(call).unwrap_or_default();
    let arguments = call.get("args").map(Tree::as_array).unwrap_or_default();
    let [name, value, ..] = arguments else {
        return None;
    };
    match string_constant(name) {
        Some((name, _)) if !name.eq_ignore_ascii_case(SEARCH_PATH) => None,
        Some(_) => match string_constant(value) {
            Some((value, at)) => names_catalog_schema(value).then_some(at),
            None => unread_values.then_some(call_at),
        },
        None => unread_values.then_some(call_at),
    }
}

/// Whether a search_path value (comma-separated names, unquoted ones folded to lower case)
/// names `information_schema` or a schema of catalog substitutes (any version's).
pub fn names_catalog_schema(value: &str) -> bool {
    value.split(',').map(str::trim).any(|name| {
        let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(quoted) => quoted.to_owned(),
            None => name.to_ascii_lowercase(),
        };
        name == INFORMATION_SCHEMA || name.starts_with(SUBSTITUTE_SCHEMA_PREFIX)
    })
}

#[cfg(test)]
mod tests {
    use super::names_catalog_schema;

    #[test]
    fn values_are_read_as_postgres_splits_them() {
        for value in [
            "information_schema",
            "public, Information_Schema",
            "\"$user\",\"information_schema\"",
            "public, VIEWGATE_CATALOG_V2",
        ] {
            assert!(names_catalog_schema(value), "{value}");
        }
        for value in [
            "public",
            "\"Information_Schema\"",
            "my_information_schema",
            "",
            "\"VIEWGATE_CATALOG_V2\"",
        ] {
            assert!(!names_catalog_schema(value), "{value}");
        }
    }
}
