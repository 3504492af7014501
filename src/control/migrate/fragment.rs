//! SQL fragments from a migration file (types, `up`/`down`, defaults, checks) are pasted into
//! generated statements, so each must be one expression: this finds a statement separator
//! outside string literals, quoted identifiers, dollar quotes and comments.

/// Whether `sql` has a `;` outside string literals, quoted identifiers, dollar quotes and
/// comments: a fragment with one would end the statement it is pasted into.
pub fn has_statement_separator(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b';' => return true,
            quote @ (b'\'' | b'"') => {
                index += 1;
                while index < bytes.len() {
                    if bytes[index] == quote {
                        if bytes.get(index + 1) == Some(&quote) {
                            index += 2;
                            continue;
                        }
                        break;
                    }
                    index += 1;
                }
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
                continue;
            }
            b'$' => {
                let rest = &sql[index..];
                let tag_len = rest[1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|end| end + 1);
                if let Some(tag_end) = tag_len
                    && rest.as_bytes().get(tag_end) == Some(&b'$')
                {
                    let tag = &rest[..=tag_end];
                    if let Some(close) = rest[tag.len()..].find(tag) {
                        index += tag.len() + close + tag.len();
                        continue;
                    }
                    return true; // an unterminated dollar quote swallows the rest
                }
            }
            _ => {}
        }
        index += 1;
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
        assert!(!has_statement_separator("'it''s;'"));
        assert!(has_statement_separator("1; 2"));
        assert!(has_statement_separator("'a' ; 'b'"));
        assert!(has_statement_separator("$x$ unterminated ;"));
        assert!(has_statement_separator("1 /* c */ ;"));
    }
}
