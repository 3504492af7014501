//! Quoting of SQL identifiers and literals, the only way spec-supplied names reach generated SQL.
//!
//! Everything a spec names (schemas, tables, columns, versions) is quoted before it is pasted into
//! SQL, so no name can change the meaning of a statement. Declared expressions are the one
//! exception: they are SQL by definition. The same functions are the `ident` and `literal`
//! filters of the view templates.

/// Quotes an identifier the way Postgres reads it back unchanged: always double-quoted, with
/// embedded double quotes doubled. Always quoting keeps names case-exact and keyword-safe.
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for character in name.chars() {
        if character == '"' {
            quoted.push('"');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

/// Quotes a string literal like Postgres's `quote_literal`: single quotes are doubled, and a
/// value holding a backslash uses the `E'…'` form with doubled backslashes, so the literal means
/// the same whatever `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> String {
    let has_backslash = value.contains('\\');
    let mut quoted = String::with_capacity(value.len() + 3);
    if has_backslash {
        quoted.push('E');
    }
    quoted.push('\'');
    for character in value.chars() {
        match character {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            other => quoted.push(other),
        }
    }
    quoted.push('\'');
    quoted
}

/// A schema-qualified name, both parts quoted.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted_and_inner_quotes_doubled() {
        assert_eq!(quote_ident("id"), "\"id\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
    }

    #[test]
    fn literals_double_quotes_and_escape_backslashes() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn qualified_names_quote_both_parts() {
        assert_eq!(quote_qualified("public", "t"), "\"public\".\"t\"");
    }
}
