//! `EXPLAIN (VERBOSE)` as Postgres's parse tree says it: a plan that lists each scan's output
//! columns, which a version may not be shown (`postgres_grammar::read` refuses it at every
//! version with managed tables).

use super::Tree;

/// `EXPLAIN (VERBOSE)`: its plan lists each scan's output columns, and the planner gives the
/// base table's scan under a version's view every column (a physical target list) or picks
/// an index on a hidden column for `count(*)`. (`mention::VERBOSE_MARK` has every such text
/// read.)
pub(super) fn explains_verbosely(statement: &Tree) -> bool {
    let Some(explain) = statement.get("ExplainStmt") else {
        return false;
    };
    explain
        .get("options")
        .map(Tree::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|option| option.get("DefElem"))
        .any(|option| {
            option.get("defname").and_then(Tree::as_text) == Some("verbose")
                && option.get("arg").is_none_or(option_not_off)
        })
}

/// Whether an option's value (`VERBOSE false`, `VERBOSE 0`, …) leaves it on; any value but
/// a spelling of false counts as on, the side that refuses.
fn option_not_off(value: &Tree) -> bool {
    if let Some(number) = value.get("Integer") {
        return number.get("ival").and_then(Tree::as_integer).unwrap_or(0) != 0;
    }
    if let Some(boolean) = value.get("Boolean") {
        return boolean
            .get("boolval")
            .and_then(Tree::as_bool)
            .unwrap_or(false);
    }
    let text = value
        .get("String")
        .and_then(|text| text.get("sval"))
        .and_then(Tree::as_text)
        .unwrap_or_default();
    !["false", "off", "no", "0"]
        .iter()
        .any(|off| text.eq_ignore_ascii_case(off))
}
