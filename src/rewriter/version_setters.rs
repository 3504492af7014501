//! Whether a statement from a session without a version may set `viewgate.version` where the
//! proxy does not follow it.
//!
//! A versioned session's statements are read whole by the rewriter, which refuses such changes
//! (`reading_settings`); a session the proxy gives no version is not rewritten, and was left
//! free to `set_config('viewgate.version', …)`: the server kept the value and `current_setting`
//! reported it, while the session read the base tables (the fifty-fourth red-team pass).

use super::mention::contains_ignore_ascii_case;
use super::parse_tree::{Tree, location, name_parts, string_constant};
use super::postgres_grammar::{MAX_CHECKED_BYTES, on_check_stack};
use super::postgres_parser;
use super::reading_settings::sets_the_version;
use crate::model::catalog_substitutes::{PG_CATALOG, SET_CONFIG, VERSION_SETTING};

/// Whether `sql`, from a session the proxy gives no version, may set `viewgate.version` in a
/// way the proxy does not follow: a `SET LOCAL`, a spelling it does not recognise (`SET
/// viewgate . version`), `ALTER ROLE … SET`, `set_config` naming it or with a name that is not
/// a constant, or a function's or DO block's body that mentions it. Postgres would keep the
/// value and `current_setting` report it while the session reads the base tables (the
/// fifty-fourth red-team pass). Only a text that spells `viewgate` or `set_config` is parsed;
/// one longer than [`MAX_CHECKED_BYTES`] is not.
pub fn may_set_the_version(sql: &str) -> bool {
    let spells = |word: &str| contains_ignore_ascii_case(sql.as_bytes(), word.as_bytes());
    let names_the_setting = spells(VERSION_SETTING_PREFIX);
    if !names_the_setting && !spells(SET_CONFIG) || sql.len() > MAX_CHECKED_BYTES {
        return false;
    }
    on_check_stack(sql.len(), || {
        let Ok(json) = postgres_parser::parse(sql) else {
            return false;
        };
        let Ok(Ok(tree)) = json.text().map(Tree::read) else {
            return false;
        };
        tree.get("stmts")
            .map(Tree::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(|raw| raw.get("stmt"))
            .any(|statement| {
                let body = matches!(statement, Tree::Object(fields)
                    if fields.first().is_some_and(|(kind, _)| BODY_KINDS.contains(&kind.as_ref())));
                (body && names_the_setting) || {
                    let mut found = None;
                    visit_version_setters(statement, &mut found);
                    found.is_some()
                }
            })
    })
}

/// Statements whose body Postgres runs later, as text [`may_set_the_version`] does not read.
const BODY_KINDS: &[&str] = &["DoStmt", "CreateFunctionStmt"];

/// What a text must spell to name `viewgate.version` (`viewgate . version` too).
const VERSION_SETTING_PREFIX: &str = "viewgate";

fn visit_version_setters(tree: &Tree, found: &mut Option<usize>) {
    match tree {
        Tree::Array(items) => items
            .iter()
            .for_each(|item| visit_version_setters(item, found)),
        Tree::Object(fields) => {
            for (key, child) in fields {
                let at = match key.as_ref() {
                    "VariableSetStmt" | "setstmt" => sets_the_version(child),
                    "FuncCall" => set_config_may_set_the_version(child),
                    _ => None,
                };
                if at.is_some() {
                    *found = at;
                    return;
                }
                visit_version_setters(child, found);
            }
        }
        _ => {}
    }
}

/// `set_config(name, …)` whose name is `viewgate.version` or not a constant.
fn set_config_may_set_the_version(call: &Tree) -> Option<usize> {
    let names = name_parts(call.get("funcname"));
    if !matches!(names.as_slice(), [SET_CONFIG] | [PG_CATALOG, SET_CONFIG]) {
        return None;
    }
    let arguments = call.get("args").map(Tree::as_array).unwrap_or_default();
    let name = arguments
        .first()
        .and_then(string_constant)
        .map(|(name, _)| name);
    name.is_none_or(|name| name.eq_ignore_ascii_case(VERSION_SETTING))
        .then(|| location(call).unwrap_or_default())
}
