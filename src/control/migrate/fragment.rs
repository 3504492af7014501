//! SQL fragments from a migration file (types, `up`/`down`, defaults, checks) are pasted into
//! generated statements, so each must be one expression: this finds a statement separator
//! outside string literals, quoted identifiers, dollar quotes and comments, reading them as
//! Postgres's lexer does (escape strings, identifiers that swallow a `$`, `$1` parameters).

/// Whether `sql` has a `;` outside string literals, quoted identifiers, dollar quotes and
/// comments: a fragment with one would end the statement it is pasted into. A plain `'…'`
/// literal reads a backslash as an escape when `standard_conforming_strings` is off, which a
/// session may set before a trigger body is compiled in it: a `;` outside quotes under either
/// reading counts.
pub fn has_statement_separator(sql: &str) -> bool {
    scan(sql.as_bytes(), false) || scan(sql.as_bytes(), true)
}

/// A byte that may start an identifier (or a dollar quote's tag): Postgres's `ident_start`,
/// every byte of a multibyte character among them.
fn ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

/// A byte that may continue a dollar quote's tag.
fn tag_continue(byte: u8) -> bool {
    ident_start(byte) || byte.is_ascii_digit()
}

/// The index just past a quoted run opened at `index` by `quote`: a doubled quote stands for
/// itself, and with `backslashes` a backslash escapes the byte after it. An unterminated run
/// ends the text (Postgres refuses it, running nothing).
fn past_quoted(bytes: &[u8], mut index: usize, quote: u8, backslashes: bool) -> usize {
    index += 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if backslashes => index += 2,
            byte if byte == quote => {
                if bytes.get(index + 1) == Some(&quote) {
                    index += 2;
                    continue;
                }
                return index + 1;
            }
            _ => index += 1,
        }
    }
    bytes.len()
}

/// The scan, plain literals reading backslashes as escapes when `plain_backslashes`.
fn scan(bytes: &[u8], plain_backslashes: bool) -> bool {
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b';' => return true,
            b'\'' => index = past_quoted(bytes, index, b'\'', plain_backslashes),
            b'"' => index = past_quoted(bytes, index, b'"', false),
            byte if ident_start(byte) => {
                // A whole word at once: a `$` inside one is part of it (`a$b$` is an
                // identifier, not the start of a dollar quote).
                let start = index;
                while index < bytes.len() && (tag_continue(bytes[index]) || bytes[index] == b'$') {
                    index += 1;
                }
                let word = &bytes[start..index];
                if bytes.get(index) == Some(&b'\'') && word.eq_ignore_ascii_case(b"e") {
                    // An escape string: a backslash escapes the next byte, `\'` among them.
                    index = past_quoted(bytes, index, b'\'', true);
                }
                // `U&'…'` and `U&"…"` read as plain ones, at the `&`.
            }
            b'-' if bytes.get(index + 1) == Some(&b'-') => {
                while index < bytes.len() && bytes[index] != b'\n' {
                    index += 1;
                }
            }
            b'/' if bytes.get(index + 1) == Some(&b'*') => {
                // Postgres block comments nest.
                let mut depth = 0usize;
                while index < bytes.len() {
                    if bytes[index] == b'/' && bytes.get(index + 1) == Some(&b'*') {
                        depth += 1;
                        index += 2;
                        continue;
                    }
                    if bytes[index] == b'*' && bytes.get(index + 1) == Some(&b'/') {
                        depth -= 1;
                        index += 2;
                        if depth == 0 {
                            break;
                        }
                        continue;
                    }
                    index += 1;
                }
            }
            b'$' => {
                // A tag starts as an identifier does: `$1` is a parameter.
                let tag_end = match bytes.get(index + 1) {
                    Some(&first) if ident_start(first) => {
                        let mut end = index + 2;
                        while end < bytes.len() && tag_continue(bytes[end]) {
                            end += 1;
                        }
                        end
                    }
                    _ => index + 1,
                };
                if bytes.get(tag_end) != Some(&b'$') {
                    index += 1;
                    continue;
                }
                let tag = &bytes[index..=tag_end];
                let body = tag_end + 1;
                match bytes[body..]
                    .windows(tag.len())
                    .position(|window| window == tag)
                {
                    Some(close) => index = body + close + tag.len(),
                    None => return true, // an unterminated dollar quote swallows the rest
                }
            }
            _ => index += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_found_only_outside_quotes_and_comments() {
        assert!(!has_statement_separator("'a;b'"));
        assert!(!has_statement_separator("\"a;b\""));
        assert!(!has_statement_separator("1 -- ;"));
        assert!(!has_statement_separator("1 /* /* ; */ ; */ + 2"));
        assert!(!has_statement_separator("$x$;$x$"));
        assert!(!has_statement_separator("$$;$$"));
        assert!(!has_statement_separator("'it''s;'"));
        assert!(has_statement_separator("1; 2"));
        assert!(has_statement_separator("'a' ; 'b'"));
        assert!(has_statement_separator("$x$ unterminated ;"));
        assert!(has_statement_separator("1 /* c */ ;"));
    }

    /// The forty-first red-team pass hid a statement behind `\'` in an escape string.
    #[test]
    fn an_escaped_quote_does_not_end_an_escape_string() {
        for sql in [
            r"E'\'' ; CREATE TABLE public.injected(); SELECT E'\''",
            r"e'\'' ; SELECT 1; SELECT e'\''",
            r"x || E'\\' ; SELECT 1",
            r"E'a\\\'' ; SELECT 1",
        ] {
            assert!(has_statement_separator(sql), "{sql}");
        }
        assert!(!has_statement_separator(r"E'\';' || E'it''s;'"));
        assert!(!has_statement_separator(r"E'\\' || ';'"));
        // A word ending in e before a quote is an identifier, then a plain literal.
        assert!(has_statement_separator(r"type'\' ; SELECT 1; --'"));
    }

    /// With standard_conforming_strings off, `'\'` does not end there either.
    #[test]
    fn a_backslash_in_a_plain_literal_is_read_both_ways() {
        assert!(has_statement_separator(r"'\' ; SELECT 1; --'"));
        // Quoted throughout with the setting on; `\'` an escape with it off.
        assert!(!scan(br"'\'' ; SELECT 1; SELECT ''", false));
        assert!(has_statement_separator(r"'\'' ; SELECT 1; SELECT ''"));
        assert!(!has_statement_separator(r"'C:\dir;x'"));
    }

    #[test]
    fn unicode_strings_parameters_and_identifiers_with_dollars() {
        assert!(!has_statement_separator(r"U&'d\0061;t' UESCAPE '!'"));
        assert!(!has_statement_separator(r#"U&"a;b""#));
        assert!(has_statement_separator(r"U&'a' ; SELECT 1"));
        // `a$b$` is an identifier: what follows is outside any quote.
        assert!(has_statement_separator("a$b$ ; SELECT 1; $b$"));
        // `$1` is a parameter, not a tag.
        assert!(has_statement_separator("$1$ ; SELECT 1; $1$"));
        // After a number a dollar quote may start.
        assert!(!has_statement_separator("1$a$;$a$"));
        assert!(has_statement_separator("1$a$'$a$ ; SELECT 1; --'"));
    }
}
