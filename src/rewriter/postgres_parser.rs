//! PostgreSQL's parser, called directly: a query string in, its parse tree as JSON out.
//!
//! The `pg_query` crate links libpg_query (the server's parser compiled as a library), but its
//! `parse` returns the tree through protobuf: libpg_query packs it with protobuf-c, whose
//! size computation is repeated at every level of nesting, then the crate decodes it and
//! builds summaries the rewriter never reads. Measured with callgrind on a 386-character ORM
//! SELECT, the packing alone was 58 % of the check's instructions and the parse itself 3 %.
//! libpg_query's JSON output is written in one pass, so the check asks for that instead, through
//! the library's C entry points (`pg_query_parse` / `pg_query_free_parse_result`), which the
//! `pg_query` crate links but does not expose. The crate's scanner (`pg_query::scan`) is used
//! as it is, for the rare texts with a comment after a quote.

use std::ffi::{CStr, CString, c_char, c_int};

/// libpg_query's `PgQueryError` (pg_query.h), of which only the message is read.
#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

/// libpg_query's `PgQueryParseResult` (pg_query.h): the JSON tree, or an error.
#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

unsafe extern "C" {
    fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// Why there is no tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFailure {
    /// Postgres rejects the statement's syntax; its message.
    Syntax(String),
    /// The text cannot be handed to the parser (a NUL byte), or its output was not UTF-8.
    Unreadable(String),
}

/// A parse tree in libpg_query's JSON form, owned by the library until dropped.
pub struct JsonTree {
    result: PgQueryParseResult,
}

impl JsonTree {
    /// The tree's JSON text (`{"version":…,"stmts":[{"stmt":{"SelectStmt":{…}}}]}`).
    pub fn text(&self) -> Result<&str, ParseFailure> {
        // SAFETY: `parse` returns a `JsonTree` only when `parse_tree` is non-null; it is a
        // NUL-terminated string that lives until `drop` frees the result.
        let text = unsafe { CStr::from_ptr(self.result.parse_tree) };
        text.to_str()
            .map_err(|error| ParseFailure::Unreadable(error.to_string()))
    }
}

impl Drop for JsonTree {
    fn drop(&mut self) {
        let result = PgQueryParseResult {
            parse_tree: self.result.parse_tree,
            stderr_buffer: self.result.stderr_buffer,
            error: self.result.error,
        };
        // SAFETY: the result came from `pg_query_parse` and is freed exactly once, here.
        unsafe { pg_query_free_parse_result(result) };
    }
}

/// Parses `sql` with PostgreSQL's grammar. Recursive in C on deep trees: callers run it on a
/// stack sized for the longest text they pass (see `postgres_grammar::CHECK_STACK_BYTES`).
pub fn parse(sql: &str) -> Result<JsonTree, ParseFailure> {
    let input = CString::new(sql).map_err(|error| ParseFailure::Unreadable(error.to_string()))?;
    // SAFETY: `input` is a valid NUL-terminated string for the duration of the call; the
    // result is owned by `JsonTree` (or freed below) and never used after being freed.
    let result = unsafe { pg_query_parse(input.as_ptr()) };
    if result.error.is_null() && !result.parse_tree.is_null() {
        return Ok(JsonTree { result });
    }
    let message = if result.error.is_null() {
        "the parser returned neither a tree nor an error".to_owned()
    } else {
        // SAFETY: a non-null error carries a NUL-terminated message, freed with the result.
        unsafe { CStr::from_ptr((*result.error).message) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: as above; freed once, and nothing read from it afterwards.
    unsafe { pg_query_free_parse_result(result) };
    Err(ParseFailure::Syntax(message))
}

/// Where a string constant continues after a `--` comment (`'a' -- c⏎'b'`), by Postgres's own
/// scanner: the offset of the part after the comment. The server's lexer (up to PostgreSQL 16
/// at least) takes the comment for the whitespace between the two parts and reads one string;
/// the parser libpg_query compiles reads two, so a body or a value split that way would be
/// judged in halves. Only a quoted string continues (`'…'`, `E'…'`, `N'…'`, `U&'…'`, not a
/// dollar-quoted one), and only into a part that opens with the quote itself (`'b'`, not
/// `E'b'`): the scanner calls every one of them a string constant, and the server reads the
/// others as two constants side by side, a syntax error. `None` also for a text the scanner
/// rejects (the server rejects it too).
pub fn string_continued_after_comment(sql: &str) -> Option<usize> {
    use pg_query::protobuf::Token;
    let tokens = pg_query::scan(sql).ok()?.tokens;
    let is = |at: usize, token: Token| tokens.get(at).is_some_and(|t| t.token == token as i32);
    let opens_with = |at: usize, byte: u8| {
        tokens
            .get(at)
            .and_then(|token| usize::try_from(token.start).ok())
            .and_then(|start| sql.as_bytes().get(start))
            == Some(&byte)
    };
    (0..tokens.len()).find_map(|at| {
        let quoted = is(at, Token::Usconst) || (is(at, Token::Sconst) && !opens_with(at, b'$'));
        if !quoted {
            return None;
        }
        let comments = (at + 1..)
            .take_while(|&next| is(next, Token::SqlComment))
            .count();
        let next = at + 1 + comments;
        (comments > 0 && is(next, Token::Sconst) && opens_with(next, b'\''))
            .then(|| usize::try_from(tokens[next].start).ok())
            .flatten()
    })
}

/// Where each token of `sql` starts, by Postgres's own scanner, comments left out; `None`
/// for a text the scanner rejects (the server rejects it too).
pub fn token_starts(sql: &str) -> Option<Vec<usize>> {
    use pg_query::protobuf::Token;
    let comment = |token: i32| token == Token::SqlComment as i32 || token == Token::CComment as i32;
    pg_query::scan(sql)
        .ok()?
        .tokens
        .iter()
        .filter(|token| !comment(token.token))
        .map(|token| usize::try_from(token.start).ok())
        .collect()
}

/// Every token of `sql`, comments included, as byte ranges, by Postgres's own scanner;
/// `None` for a text the scanner rejects (the server rejects it too).
pub fn token_ranges(sql: &str) -> Option<Vec<std::ops::Range<usize>>> {
    pg_query::scan(sql)
        .ok()?
        .tokens
        .iter()
        .map(|token| Some(usize::try_from(token.start).ok()?..usize::try_from(token.end).ok()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_quoted_string_continues_after_a_comment_and_only_into_a_quote() {
        for (sql, continued) in [
            ("SELECT 'a' -- c\n'b'", true),
            ("SELECT E'a' -- c\n'b'", true),
            ("SELECT N'a' -- c\n'b'", true),
            ("SELECT U&'a' -- c\n'b'", true),
            ("SELECT 'a' -- one\n -- two\n'b'", true),
            // Two constants side by side to the server: a syntax error, not one string.
            ("SELECT $$a$$ -- c\n'b'", false),
            ("SELECT $q$a$q$ -- c\n'b'", false),
            ("SELECT 'a' -- c\nE'b'", false),
            ("SELECT 'a' -- c\n$$b$$", false),
            ("$$ E'\\ $$ -- \n E'\\ '", false),
            ("SELECT 'a' -- c\nFROM t", false),
        ] {
            assert_eq!(
                string_continued_after_comment(sql).is_some(),
                continued,
                "{sql:?}"
            );
        }
    }

    #[test]
    fn gives_the_tree_or_postgres_message() {
        let tree = parse("SELECT 1 FROM t").unwrap();
        let text = tree.text().unwrap();
        assert!(text.contains(r#""RangeVar":{"relname":"t""#), "{text}");
        match parse("SELEC 1") {
            Err(ParseFailure::Syntax(message)) => assert!(message.contains("syntax error")),
            other => panic!("{:?}", other.map(|tree| tree.text().map(str::to_owned))),
        }
        assert!(matches!(
            parse("SELECT 1\0"),
            Err(ParseFailure::Unreadable(_))
        ));
    }
}
