//! A small, conservative SQL lexer for the shape cache: byte ranges of tokens, no parse.
//!
//! The shape cache (`shape.rs`) must find the same constants, comments and token boundaries
//! that sqlparser's tokenizer finds, or two statements could share a cache entry while the
//! parser reads them differently. So this lexer mirrors sqlparser 0.63's PostgreSqlDialect
//! rules where they depend on a token's *content* (where a string, comment or number ends), and
//! gives up (`None`) on anything it is not sure of: unterminated quotes or comments, control
//! characters, `U&'…'` strings, backslashes in `B''`/`X''`/`N''` strings, numbers glued to
//! identifier characters. Giving up is always safe: the statement then takes the full path.
//! Operators are one token per character (the shape key keeps their text and adjacency, so
//! how sqlparser groups them does not matter).

/// What a token is, as far as the shape key needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// `"…"`.
    QuotedIdentifier,
    /// `'…'` (standard conforming: a backslash is an ordinary character).
    String,
    /// `E'…'` without a backslash: the same as `'…'` to the parser.
    EscapeString,
    /// `E'…'` with backslashes, `B'…'`, `X'…'`, `N'…'`: constants whose content the parser
    /// interprets (and may reject), so they are never masked.
    KeptString,
    /// `$tag$…$tag$` or `$$…$$`.
    DollarString,
    /// An unsigned numeric constant: `12`, `1.5`, `.5`, `1e-3`.
    Number,
    /// `$1`, or `$` followed by a name.
    Parameter,
    /// One character of punctuation or operator.
    Punct,
    /// `-- …` or `/* … */` (nested).
    Comment,
}

impl Kind {
    /// Constants: their content does not decide how the statement is read.
    pub fn is_constant(self) -> bool {
        matches!(
            self,
            Kind::String | Kind::EscapeString | Kind::DollarString | Kind::Number
        )
    }

    /// Tokens whose extent sqlparser decides by their content (quotes and escapes).
    pub fn is_literal(self) -> bool {
        self.is_constant() || matches!(self, Kind::KeptString)
    }
}

/// Bytes of text per token the token list is first sized for: SQL averages about five (a
/// word or a constant and the space after it). A statement lexed into a new list grew it four
/// or five times before (3 % of a managed read's user time, `perf`).
const BYTES_PER_TOKEN_GUESS: usize = 4;

/// The most tokens reserved ahead: a megabyte `IN` list grows its list as it goes.
const TOKENS_RESERVED_AT_MOST: usize = 4096;

/// One token: its kind, byte range in the text, and whether whitespace or a comment precedes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub after_trivia: bool,
}

/// Lexes `sql` into `out` (cleared first); `None` when the text is outside what this lexer is
/// sure to read as sqlparser does.
pub fn lex(sql: &str, out: &mut Vec<Token>) -> Option<()> {
    out.clear();
    out.reserve((sql.len() / BYTES_PER_TOKEN_GUESS).min(TOKENS_RESERVED_AT_MOST));
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut after_trivia = false;
    while let Some(&b) = bytes.get(i) {
        if is_whitespace(b) {
            after_trivia = true;
            i += 1;
            continue;
        }
        let (kind, end) = token_at(bytes, i)?;
        out.push(Token {
            kind,
            start: i,
            end,
            after_trivia,
        });
        after_trivia = kind == Kind::Comment;
        i = end;
    }
    Some(())
}

/// The whitespace between tokens, as sqlparser's tokenizer skips it.
pub fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The token (not whitespace) starting at `start`, and where it ends; `None` where the lexer
/// gives up. It reads only from `start` on: what came before never changes a token (the shape
/// templates, `shape_template.rs`, rely on it).
#[inline]
pub fn token_at(bytes: &[u8], start: usize) -> Option<(Kind, usize)> {
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let i = start;
    let b = *bytes.get(i)?;
    let token = match b {
        b'-' if at(i + 1) == b'-' => {
            // sqlparser ends a line comment at \n or \r, without consuming it.
            let end = memchr::memchr2(b'\n', b'\r', &bytes[i..]).map_or(bytes.len(), |p| i + p);
            (Kind::Comment, end)
        }
        b'/' if at(i + 1) == b'*' => (Kind::Comment, block_comment_end(bytes, i)?),
        b'\'' => (Kind::String, quoted_end(bytes, i + 1, b'\'')?),
        b'"' => (Kind::QuotedIdentifier, quoted_end(bytes, i + 1, b'"')?),
        b'E' | b'e' if at(i + 1) == b'\'' => {
            let (end, backslash) = escape_string_end(bytes, i + 2)?;
            match backslash {
                true => (Kind::KeptString, end),
                false => (Kind::EscapeString, end),
            }
        }
        b'B' | b'b' | b'X' | b'x' | b'N' | b'n' if at(i + 1) == b'\'' => {
            let end = quoted_end(bytes, i + 2, b'\'')?;
            if bytes[i..end].contains(&b'\\') {
                return None;
            }
            (Kind::KeptString, end)
        }
        // sqlparser reads `b"…"` as a byte string; Postgres as a name and a quoted name.
        b'B' | b'b' if at(i + 1) == b'"' => return None,
        b'U' | b'u' if at(i + 1) == b'&' => return None,
        b'$' => {
            let (end, kind) = dollar_end(bytes, i)?;
            (kind, end)
        }
        b'0'..=b'9' => (Kind::Number, number_end(bytes, i)?),
        b'.' if at(i + 1).is_ascii_digit() => (Kind::Number, number_end(bytes, i)?),
        b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
            let mut end = i + 1;
            while end < bytes.len() && is_identifier_part(bytes[end]) {
                end += 1;
            }
            (Kind::Word, end)
        }
        b if b.is_ascii_punctuation() => (Kind::Punct, i + 1),
        _ => return None,
    };
    Some(token)
}

/// Identifier characters after the first, as sqlparser's PostgreSqlDialect has them (every
/// non-ASCII character, hence every byte of one).
fn is_identifier_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The end of `'…'` or `"…"` whose body starts at `from`, a doubled quote standing for one.
fn quoted_end(bytes: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    loop {
        i += memchr::memchr(quote, bytes.get(i..)?)?;
        if bytes.get(i + 1) == Some(&quote) {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// The end of an `E'…'` body starting at `from`, and whether it holds a backslash (which
/// escapes the next character).
fn escape_string_end(bytes: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut i = from;
    let mut backslash = false;
    loop {
        i += memchr::memchr2(b'\'', b'\\', bytes.get(i..)?)?;
        if bytes[i] == b'\\' {
            backslash = true;
            // The escaped character may be multi-byte: only its first byte needs skipping,
            // continuation bytes are never a quote or a backslash.
            i += 2;
        } else if bytes.get(i + 1) == Some(&b'\'') {
            i += 2;
        } else {
            return Some((i + 1, backslash));
        }
    }
}

/// The end of a nested `/* … */` comment starting at `from`.
fn block_comment_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = from + 2;
    loop {
        match (*bytes.get(i)?, bytes.get(i + 1).copied()) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
}

/// `$1`, `$name` (a parameter) or `$tag$…$tag$` (a string). sqlparser takes the tag as ASCII
/// letters, digits and `_` here; non-ASCII tags and tags starting with a digit (which Postgres
/// reads differently) are left to the full path.
fn dollar_end(bytes: &[u8], from: usize) -> Option<(usize, Kind)> {
    let mut i = from + 1;
    while let Some(&b) = bytes.get(i) {
        if b >= 0x80 {
            return None;
        }
        if !(b.is_ascii_alphanumeric() || b == b'_') {
            break;
        }
        i += 1;
    }
    if bytes.get(i) != Some(&b'$') {
        return Some((i, Kind::Parameter));
    }
    if bytes.get(from + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let delimiter = &bytes[from..=i];
    let body = i + 1;
    let end = memchr::memmem::find(bytes.get(body..)?, delimiter)?;
    Some((body + end + delimiter.len(), Kind::DollarString))
}

/// The end of a number: digits, one optional `.` and digits, an optional exponent. Anything
/// glued to it that sqlparser or Postgres might read as part of it (`_`, letters, `.`, `0x`)
/// makes the lexer give up.
fn number_end(bytes: &[u8], from: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = digits(from);
    if bytes.get(i) == Some(&b'.') {
        i = digits(i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(i + 1 + sign);
        }
    }
    match bytes.get(i) {
        Some(&b) if is_identifier_part(b) || b == b'.' => None,
        _ => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Option<Vec<(Kind, &str, bool)>> {
        let mut out = Vec::new();
        lex(sql, &mut out)?;
        Some(
            out.iter()
                .map(|t| (t.kind, &sql[t.start..t.end], t.after_trivia))
                .collect(),
        )
    }

    #[test]
    fn reads_strings_comments_and_names_whole() {
        let sql = "SELECT 'it''s -- no', E'a''b', $q$ 'x' $$ $q$, \"a\"\"b\" /* /* x */ */ model_metadata_id--c\n1.5e3";
        let got = kinds(sql).unwrap();
        let expected = vec![
            (Kind::Word, "SELECT", false),
            (Kind::String, "'it''s -- no'", true),
            (Kind::Punct, ",", false),
            (Kind::EscapeString, "E'a''b'", true),
            (Kind::Punct, ",", false),
            (Kind::DollarString, "$q$ 'x' $$ $q$", true),
            (Kind::Punct, ",", false),
            (Kind::QuotedIdentifier, "\"a\"\"b\"", true),
            (Kind::Comment, "/* /* x */ */", true),
            (Kind::Word, "model_metadata_id", true),
            (Kind::Comment, "--c", false),
            (Kind::Number, "1.5e3", true),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn escape_strings_with_backslashes_are_kept_and_end_at_the_real_quote() {
        let got = kinds(r"E'a\'b' x").unwrap();
        assert_eq!(got[0], (Kind::KeptString, r"E'a\'b'", false));
        assert_eq!(got[1], (Kind::Word, "x", true));
        // A standard string ends at the first lone quote, backslash or not.
        let got = kinds(r"'a\' x").unwrap();
        assert_eq!(got[0], (Kind::String, r"'a\'", false));
    }

    #[test]
    fn parameters_and_periods() {
        let got = kinds("$1 t.c .5 $").unwrap();
        let texts: Vec<_> = got.iter().map(|t| (t.0, t.1)).collect();
        assert_eq!(
            texts,
            vec![
                (Kind::Parameter, "$1"),
                (Kind::Word, "t"),
                (Kind::Punct, "."),
                (Kind::Word, "c"),
                (Kind::Number, ".5"),
                (Kind::Parameter, "$"),
            ]
        );
    }

    #[test]
    fn gives_up_where_unsure() {
        for sql in [
            "'open",
            "\"open",
            "/* open",
            "$a$ open",
            "$1$x$1$",
            "E'\\",
            "U&'x'",
            "X'\\''",
            "b\"x\"",
            "1_000",
            "0x1F",
            "1e",
            "5L",
            "1..2",
            "a\u{b}b",
            "$é$x$é$",
        ] {
            assert_eq!(kinds(sql), None, "{sql:?}");
        }
    }
}
