//! Which SQL commands make or release what holds a session at its version, read from a
//! statement's words: the cheap test every statement passes first (one of the commands'
//! words anywhere, or `DO`), and what a `CREATE` makes (code, a temporary object, a copy of
//! rows). `prepared.rs` decides what each one holds; this only reads the words.

use super::statement_words::{self, identifier, is_word};
use crate::rewriter::lexer::Token;
use crate::rewriter::resolution::TEMP_SCHEMA;
use crate::rewriter::word_scan::{WordSet, Words};

/// Whether a `CREATE` statement says its object is temporary, as the word after `CREATE [OR
/// REPLACE] [GLOBAL | LOCAL]`. Anything else counts as lasting, which holds longer.
pub(super) fn says_temporary(sql: &str, words: &[&Token]) -> bool {
    let word = |at: usize, w: &str| words.get(at).is_some_and(|t| is_word(sql, t, w));
    let mut at = 1;
    if word(at, "OR") && word(at + 1, "REPLACE") {
        at += 2;
    }
    if word(at, "GLOBAL") || word(at, "LOCAL") {
        at += 1;
    }
    word(at, "TEMP") || word(at, "TEMPORARY")
}

/// Whether a `CREATE` statement makes a table from a query's rows (`CREATE [GLOBAL | LOCAL]
/// [TEMP | TEMPORARY | UNLOGGED] TABLE … AS query`, an `AS` outside parentheses): a copy,
/// which reads nothing later. `TABLE` must be the kind made: a trigger's `REFERENCING NEW
/// TABLE AS` is no copy (the twenty-third pass hid a WHEN clause reading the view so).
pub(super) fn copies_rows(sql: &str, words: &[&Token]) -> bool {
    let word = |at: usize, w: &str| words.get(at).is_some_and(|t| is_word(sql, t, w));
    let mut table = 1;
    if word(table, "GLOBAL") || word(table, "LOCAL") {
        table += 1;
    }
    if ["TEMP", "TEMPORARY", "UNLOGGED"]
        .iter()
        .any(|modifier| word(table, modifier))
    {
        table += 1;
    }
    if !word(table, "TABLE") {
        return false;
    }
    let mut depth = 0usize;
    words[table..].iter().any(|token| {
        match statement_words::text(sql, token) {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            _ => {}
        }
        depth == 0 && is_word(sql, token, "AS")
    })
}

/// Whether a `CREATE` statement makes a view, a function, a procedure or a rule (`CREATE [OR
/// REPLACE] [TEMP | TEMPORARY] [RECURSIVE | MATERIALIZED] {VIEW | FUNCTION | PROCEDURE |
/// RULE}`), and if so whether it says it is temporary (the keyword, or a `pg_temp…` schema).
/// A view Postgres makes temporary by itself (it reads a temporary table) counts as lasting:
/// it holds longer.
pub(super) fn creates_code(sql: &str, words: &[&Token]) -> Option<bool> {
    let word = |at: usize, w: &str| words.get(at).is_some_and(|t| is_word(sql, t, w));
    let mut at = 1;
    if word(at, "OR") && word(at + 1, "REPLACE") {
        at += 2;
    }
    let mut temporary = word(at, "TEMP") || word(at, "TEMPORARY");
    if temporary {
        at += 1;
    }
    // A materialized view keeps its query, which REFRESH runs again.
    if word(at, "RECURSIVE") || word(at, "MATERIALIZED") {
        at += 1;
    }
    if !["VIEW", "FUNCTION", "PROCEDURE", "RULE"]
        .iter()
        .any(|kind| word(at, kind))
    {
        return None;
    }
    temporary |= words
        .get(at + 1)
        .and_then(|t| identifier(sql, t))
        .is_some_and(|schema| schema.starts_with(TEMP_SCHEMA))
        && words
            .get(at + 2)
            .is_some_and(|t| statement_words::text(sql, t) == ".");
    Some(temporary)
}

/// The commands that make or release what holds a session, but `DO` (a word of its own, looked
/// for apart: as a part of a word it is everywhere, `model_id`). One pass, where a
/// byte-by-byte look at every `p`, `d`, `c` and `a` was the most sampled function of the
/// router (14 % of an unmanaged read's time in `SessionRouter::statement`); now a part of the
/// statement's one pass for every test's words (`word_scan.rs`).
pub(super) const HOLDING: [&str; 7] = [
    "prepare",
    "deallocate",
    "discard",
    "declare",
    "close",
    "create",
    "alter",
];
const HOLDING_WORDS: WordSet = WordSet::of(&HOLDING);

/// The cheap test first, on every statement: most are none of these commands. One of the
/// words anywhere in the text (its `words`), in any case, or `DO` as a word of its own.
pub fn mentions_a_holding_command(sql: &str, words: Words) -> bool {
    let bytes = sql.as_bytes();
    words.any(HOLDING_WORDS)
        || memchr::memchr2_iter(b'd', b'D', bytes).any(|at| opens_a_do_block(bytes, at))
}

/// Whether `DO` starts at `at` as a word of its own: followed by anything that cannot
/// continue a word (a space, a comment: the twenty-second pass sent `DO/**/E'…'`, a quote).
pub(super) fn opens_a_do_block(bytes: &[u8], at: usize) -> bool {
    let continues_a_word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80;
    bytes
        .get(at..at + 2)
        .is_some_and(|word| word.eq_ignore_ascii_case(b"do"))
        && bytes
            .get(at + 2)
            .is_none_or(|&next| !continues_a_word(next))
        && (at == 0 || !continues_a_word(bytes[at - 1]))
}
