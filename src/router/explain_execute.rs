//! sqlx's compile-time check of a query's nullability: after preparing the query as
//! `sqlx_s_N`, its macros (`query!`, `query_as!`) send
//! `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_N(NULL, …)` and read which output columns
//! sit under an outer join. A verbose plan lists the base table's columns, which a version's
//! clients may not see, so the rewriter refuses `EXPLAIN (VERBOSE)` at a version with managed
//! tables, and every macro failed to build against viewgate. Exactly that statement is sent
//! instead to the version's `explain_execute`, which runs it and returns the plan's outline
//! with each output column a salted digest (`view-templates/version_catalog.sql.j2`): the
//! macros get the same answer as from a database of the version's shape, and nothing of the
//! base table is shown. Any other spelling of a verbose EXPLAIN is refused as before.

use super::statement_words::{is_word, statements, text};
use crate::model::catalog_substitutes::EXPLAIN_EXECUTE;
use crate::rewriter::VersionTargets;
use crate::rewriter::identifier::quote_identifier;
use crate::rewriter::lexer::{Kind, Token};
use crate::rewriter::word_scan::{WordSet, Words};

/// The word every such statement holds, found by the statement's one word scan.
const EXPLAIN_WORD: WordSet = WordSet::of(&["explain"]);
/// A prepared statement takes at most this many parameters (Postgres's protocol limit).
const MAX_PARAMETERS: usize = 65_535;
/// Postgres's longest identifier; a longer statement name is not sqlx's.
const MAX_NAME_BYTES: usize = 63;

/// The statement to send for `sql` (holding `words`) at `targets`' version when `sql` is
/// sqlx's nullability EXPLAIN and the version has managed tables and catalog substitutes;
/// `None` otherwise.
pub fn outline_call(sql: &str, words: Words, targets: &VersionTargets) -> Option<String> {
    // The cheap test first: almost no statement is an EXPLAIN.
    if !words.any(EXPLAIN_WORD) || targets.managed().is_empty() {
        return None;
    }
    let function = targets.substitutes_function(EXPLAIN_EXECUTE)?;
    let (name, parameters) = sqlx_explain(sql)?;
    Some(format!(
        "SELECT {}.{}('{name}', {parameters}) AS \"QUERY PLAN\"",
        quote_identifier(&function.schema),
        quote_identifier(&function.name)
    ))
}

/// The statement name and argument count of `EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE name` or
/// `… EXECUTE name(NULL, …)` (any case, spacing and comments; one statement, `;` allowed). The
/// name is an unquoted identifier of ASCII letters, digits and underscores, folded to lower
/// case, so it can be written in a string literal as it is.
fn sqlx_explain(sql: &str) -> Option<(String, usize)> {
    let mut lexed = Vec::new();
    let mut found = statements(sql, &mut lexed)?;
    if found.last().is_some_and(|(_, words)| words.is_empty()) {
        found.pop();
    }
    let [(_, words)] = found.as_slice() else {
        return None;
    };
    let word = |token: &Token, expected: &str| is_word(sql, token, expected);
    let mark = |token: &Token, expected: &str| text(sql, token) == expected;
    let [
        explain,
        open,
        verbose,
        comma,
        format,
        json,
        close,
        execute,
        name,
        arguments @ ..,
    ] = words.as_slice()
    else {
        return None;
    };
    let head = word(explain, "explain")
        && mark(open, "(")
        && word(verbose, "verbose")
        && mark(comma, ",")
        && word(format, "format")
        && word(json, "json")
        && mark(close, ")")
        && word(execute, "execute");
    let name_text = text(sql, name);
    let plain_name = name.kind == Kind::Word
        && name_text.len() <= MAX_NAME_BYTES
        && name_text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if !head || !plain_name {
        return None;
    }
    Some((
        name_text.to_ascii_lowercase(),
        null_arguments(sql, arguments)?,
    ))
}

/// How many NULLs `(NULL, NULL, …)` lists; 0 for no list; `None` for anything else.
fn null_arguments(sql: &str, tokens: &[&Token]) -> Option<usize> {
    let [open, inner @ .., close] = tokens else {
        return tokens.is_empty().then_some(0);
    };
    if text(sql, open) != "(" || text(sql, close) != ")" || inner.len() % 2 == 0 {
        return None;
    }
    let listed = inner.iter().enumerate().all(|(at, token)| match at % 2 {
        0 => is_word(sql, token, "null"),
        _ => text(sql, token) == ",",
    });
    let count = inner.len().div_ceil(2);
    (listed && count <= MAX_PARAMETERS).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exactly_what_sqlx_sends() {
        let read = |sql: &str| sqlx_explain(sql);
        assert_eq!(
            read("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE sqlx_s_3(NULL, NULL)"),
            Some(("sqlx_s_3".into(), 2))
        );
        assert_eq!(
            read("explain (verbose,format json) execute SQLX_S_1 ;"),
            Some(("sqlx_s_1".into(), 0))
        );
        assert_eq!(
            read("EXPLAIN /* c */ (VERBOSE, FORMAT JSON)\nEXECUTE s(NULL) -- x"),
            Some(("s".into(), 1))
        );
        for other in [
            "EXPLAIN (VERBOSE) EXECUTE s(NULL)",
            "EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE s",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE \"S\"(NULL)",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s(1)",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s(NULL,)",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s(NULL NULL)",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s(); SELECT 1",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s; SELECT 1",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s'x'",
            "EXPLAIN (VERBOSE, FORMAT JSON) SELECT 1",
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE naïve",
        ] {
            assert_eq!(read(other), None, "{other}");
        }
    }
}
