//! SQL text from a file's fragments: expressions moved from logical to physical names, column
//! definitions of a new table.

use sha2::{Digest, Sha256};

use super::{Assign, ColumnMap};
use crate::control::migrate::error::MigrateError;
use crate::control::migrate::operation::ColumnDefinition;
use crate::control::quote::{quote_ident, quote_qualified};
use crate::control::views::spec::MAX_IDENTIFIER_BYTES;

/// Bytes of the hash that ends a name of viewgate's own cut to fit an identifier.
const NAME_HASH_BYTES: usize = 6;

/// `name` if it fits an identifier; else cut, and ended by a hash of the whole name so that
/// two long names cut alike stay apart. For names of viewgate's own objects only, which it
/// finds again by the plan that recorded them, never by the name.
pub fn fit_identifier(name: String) -> String {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest[..NAME_HASH_BYTES]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut cut = MAX_IDENTIFIER_BYTES - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

/// A check names columns by their logical names; on the base table it must name the physical
/// ones. Identifiers are replaced token by token in one pass (sqlparser's tokenizer), so
/// strings, comments and longer names that merely contain a name stay as they are.
pub fn over_physical(expression: &str, names: &[(String, String)]) -> String {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    if names.iter().all(|(logical, physical)| logical == physical) {
        return expression.to_owned();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, expression).tokenize() else {
        return expression.to_owned();
    };
    tokens
        .into_iter()
        .map(|token| {
            if let Token::Word(word) = &token {
                let name = match word.quote_style {
                    None => word.value.to_lowercase(),
                    Some('"') => word.value.clone(),
                    Some(_) => return token.to_string(),
                };
                if let Some((_, physical)) = names.iter().find(|(logical, _)| *logical == name) {
                    return quote_ident(physical);
                }
            }
            token.to_string()
        })
        .collect()
}

/// Whether [`over_physical`] can move `expression` to other names faithfully: its tokenizer
/// reads it, and it has no identifier spelled with Unicode escapes (`U&"…"`), whose name the
/// tokenizer does not decode (the fifty-first red-team pass: such a name was left as it was
/// and read the physical column of that name, which the version does not have).
pub fn translatable(expression: &str) -> bool {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, expression).tokenize() else {
        return false;
    };
    !tokens.windows(3).any(|window| {
        matches!(
            window,
            [Token::Word(u), Token::Ampersand, Token::Word(name)]
                if u.quote_style.is_none()
                    && u.value.eq_ignore_ascii_case("u")
                    && name.quote_style == Some('"')
        )
    })
}

/// Refuses an `up` or `down` that names columns by the version's names where those differ from
/// the physical ones, in a spelling [`translatable`] cannot move to the physical names.
pub(super) fn refuse_untranslatable(
    version: &str,
    side: &str,
    assigns: &[Assign],
    names: &ColumnMap,
) -> Result<(), MigrateError> {
    if names.iter().all(|(logical, physical)| logical == physical) {
        return Ok(());
    }
    match assigns
        .iter()
        .find(|assign| !translatable(&assign.expression))
    {
        None => Ok(()),
        Some(assign) => Err(MigrateError::Refused {
            version: version.to_owned(),
            operation: format!("the {side} expression for base column {}", assign.target),
            problem: format!(
                "`{}` spells a name with Unicode escapes (U&\"…\") or is text viewgate cannot tokenize, so it cannot be moved from the version's column names to the physical ones; spell column names plainly",
                assign.expression
            ),
        }),
    }
}

/// Whether `expression` is a constant: a literal, optionally signed or cast. Postgres adds a
/// column with such a default without touching a row (the value is kept in the catalog), so
/// existing rows need no backfill; any other default (a volatile one would rewrite the table
/// under an exclusive lock) is set for new rows only and backfilled.
pub fn is_constant(expression: &str) -> bool {
    use sqlparser::ast::{Expr, UnaryOperator};
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    use sqlparser::tokenizer::Token;
    fn constant(expr: &Expr) -> bool {
        match expr {
            Expr::Value(_) | Expr::TypedString { .. } => true,
            Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => constant(inner),
            Expr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                expr,
            } => constant(expr),
            _ => false,
        }
    }
    let Ok(mut parser) = Parser::new(&PostgreSqlDialect {}).try_with_sql(expression) else {
        return false;
    };
    match parser.parse_expr() {
        Ok(expr) => constant(&expr) && parser.peek_token().token == Token::EOF,
        Err(_) => false,
    }
}

/// Whether `expression` names `logical` as an identifier (the way Postgres folds names). An
/// expression the tokenizer cannot read is assumed to name it.
pub fn mentions(expression: &str, logical: &str) -> bool {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, expression).tokenize() else {
        return true;
    };
    tokens.iter().any(|token| match token {
        Token::Word(word) => match word.quote_style {
            None => word.value.to_lowercase() == logical,
            Some('"') => word.value == logical,
            Some(_) => false,
        },
        _ => false,
    })
}

pub(super) fn check_over_physical(check: &str, logical: &str, physical: &str) -> String {
    over_physical(check, &[(logical.to_owned(), physical.to_owned())])
}

pub(super) fn column_sql(column: &ColumnDefinition) -> String {
    let mut sql = format!("{} {}", quote_ident(&column.name), column.sql_type);
    if !column.nullable && !column.primary_key {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if column.unique {
        sql.push_str(" UNIQUE");
    }
    if let Some(check) = &column.check {
        sql.push_str(&format!(" CHECK ({check})"));
    }
    if let Some(references) = &column.references {
        let target = match &references.schema {
            Some(schema) => quote_qualified(schema, &references.table),
            None => quote_ident(&references.table),
        };
        sql.push_str(&format!(
            " REFERENCES {target} ({})",
            quote_ident(&references.column)
        ));
        if let Some(action) = references.on_delete {
            sql.push_str(&format!(" ON DELETE {}", action.sql()));
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::{mentions, translatable};

    #[test]
    fn unicode_escaped_identifiers_are_not_translatable() {
        assert!(translatable("upper(name) || 'U&\"x\"'"));
        assert!(translatable("u & \"flags\""));
        assert!(!translatable("U&\"model\\005fversion\"::text"));
        assert!(!translatable("u&\"name\" || 'x'"));
        assert!(!translatable("'unterminated"));
    }

    #[test]
    fn mentions_reads_identifiers_not_strings() {
        assert!(mentions("CASE WHEN Size >= 500 THEN 1 END", "size"));
        assert!(mentions("\"Size\" * 2", "Size"));
        assert!(!mentions("\"Size\" * 2", "size"));
        assert!(!mentions("'size' || note", "size"));
    }
}
