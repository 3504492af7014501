//! Whether sqlparser, which the rewriter edits with, and Postgres's own scanner split a text
//! into the same tokens. Where a statement's column references are mapped by sqlparser's
//! reading alone (a MERGE or an upsert written to the base table), a reference only Postgres
//! sees would read the base row, so such a text is refused when the two part ways.

use std::ops::Range;

use super::mention::contains_ignore_ascii_case;
use super::postgres_parser;

/// Whether `sql` may hold a statement the rewriter writes to the base table with its column
/// references mapped by sqlparser's reading (`merge.rs`, `upsert.rs`): there a reference that
/// reading misses reads the base row.
pub fn writes_base_rows(sql: &str) -> bool {
    contains_ignore_ascii_case(sql.as_bytes(), b"merge")
        || contains_ignore_ascii_case(sql.as_bytes(), b"conflict")
}

/// Where sqlparser's tokens (`parser_tokens`, or none: its tokenizer failed) and Postgres's
/// scanner's first part ways, if they do: the first token start one of them has and the other
/// lacks. The twenty-eighth red-team pass hid a MERGE's references to hidden columns in what
/// sqlparser took for a `$$` string behind `#--`, an operator and a comment to Postgres.
pub fn lexers_disagree(sql: &str, parser_tokens: Option<&[Range<usize>]>) -> Option<usize> {
    let Some(postgres) = postgres_parser::token_starts(sql) else {
        // Postgres's scanner rejects the text: so will the server.
        return None;
    };
    let Some(parser_tokens) = parser_tokens else {
        return Some(0);
    };
    let ours: Vec<usize> = parser_tokens.iter().map(|token| token.start).collect();
    let first_missing = |from: &[usize], within: &[usize]| {
        from.iter()
            .find(|start| within.binary_search(start).is_err())
            .copied()
    };
    match (
        first_missing(&postgres, &ours),
        first_missing(&ours, &postgres),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (found, None) | (None, found) => found,
    }
}
