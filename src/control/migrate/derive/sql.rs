//! SQL text from a file's fragments: expressions moved from logical to physical names, column
//! definitions of a new table.

use std::ops::Range;

use sha2::{Digest, Sha256};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Word};

use super::{Assign, ColumnMap};
use crate::control::migrate::error::MigrateError;
use crate::control::migrate::operation::ColumnDefinition;
use crate::control::quote::quote_ident;
use crate::model::identifier::MAX_IDENTIFIER_BYTES;

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
/// ones. Identifiers are replaced token by token in one pass (sqlparser's tokenizer), spliced
/// into the text where they stand, so strings (a `'it''s'`, an `E'\n'`), comments and longer
/// names that merely contain a name stay exactly as written. Text the tokenizer cannot read,
/// or whose identifiers it cannot place, is returned unchanged: [`translatable`] refuses it
/// where that matters.
pub fn over_physical(expression: &str, names: &[(String, String)]) -> String {
    if names.iter().all(|(logical, physical)| logical == physical) {
        return expression.to_owned();
    }
    let Some(tokens) = placed_tokens(expression) else {
        return expression.to_owned();
    };
    // Only words where a column can stand: not a type after `::` or `AS` (`created::date`
    // beside a column `date`; an alias), not a function before `(` (`lower(note)` beside a
    // column `lower`), which the sync triggers' variables do not take either.
    let significant: Vec<&(Token, Range<usize>)> = tokens
        .iter()
        .filter(|(token, _)| !matches!(token, Token::Whitespace(_)))
        .collect();
    let mut moved = String::with_capacity(expression.len());
    let mut written = 0;
    for (at, (token, range)) in significant.iter().enumerate() {
        let after_cast = at
            .checked_sub(1)
            .is_some_and(|before| match &significant[before].0 {
                Token::DoubleColon => true,
                Token::Word(word) => {
                    word.quote_style.is_none() && word.value.eq_ignore_ascii_case("as")
                }
                _ => false,
            });
        let called = matches!(significant.get(at + 1), Some((Token::LParen, _)));
        if let Token::Word(word) = token
            && !after_cast
            && !called
            && let Some(name) = identifier_name(word)
            && let Some((_, physical)) = names.iter().find(|(logical, _)| *logical == name)
        {
            moved.push_str(&expression[written..range.start]);
            moved.push_str(&quote_ident(physical));
            written = range.end;
        }
    }
    moved.push_str(&expression[written..]);
    moved
}

/// `expression`'s tokens, each identifier with the byte range where it is spelled; `None`
/// when the tokenizer cannot read the text or an identifier's range does not hold it as
/// spelled. (A string is not written back from its token, which holds its value: a
/// `'it''s'` written back as `'it's'` would change what the expression means.)
fn placed_tokens(expression: &str) -> Option<Vec<(Token, Range<usize>)>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, expression)
        .with_unescape(false)
        .tokenize_with_location()
        .ok()?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(expression.match_indices('\n').map(|(at, _)| at + 1))
        .collect();
    let offset = |location: Location| -> Option<usize> {
        let line = usize::try_from(location.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
        let start = *line_starts.get(line)?;
        let rest = &expression[start..];
        Some(
            start
                + rest
                    .char_indices()
                    .nth(column)
                    .map_or(rest.len(), |(at, _)| at),
        )
    };
    tokens
        .into_iter()
        .map(|TokenWithSpan { token, span }| {
            let range = offset(span.start)?..offset(span.end)?;
            if let Token::Word(word) = &token
                && expression.get(range.clone()) != Some(word.to_string().as_str())
            {
                return None;
            }
            Some((token, range))
        })
        .collect()
}

/// The name an identifier token stands for, as Postgres reads it (unquoted: folded to lower
/// case; quoted: its doubled quotes undone); `None` for a token quoted otherwise.
fn identifier_name(word: &Word) -> Option<String> {
    match word.quote_style {
        None => Some(word.value.to_lowercase()),
        Some('"') => Some(word.value.replace("\"\"", "\"")),
        Some(_) => None,
    }
}

/// Whether [`over_physical`] can move `expression` to other names faithfully: its tokenizer
/// reads it and places its identifiers, and it has no identifier spelled with Unicode
/// escapes (`U&"…"`), whose name the tokenizer does not decode (the fifty-first red-team
/// pass: such a name was left as it was and read the physical column of that name, which the
/// version does not have).
pub fn translatable(expression: &str) -> bool {
    let Some(tokens) = placed_tokens(expression) else {
        return false;
    };
    !tokens.windows(3).any(|window| {
        matches!(
            window,
            [(Token::Word(u), _), (Token::Ampersand, _), (Token::Word(name), _)]
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

/// Whether two expressions are written alike, whatever their spacing (both as sqlparser
/// prints them back). Names and keywords are compared as written: a difference of case only
/// tells them apart, which costs at most what the caller does for different expressions.
pub fn same_expression(left: &str, right: &str) -> bool {
    use sqlparser::parser::Parser;
    let printed = |expression: &str| {
        let mut parser = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(expression)
            .ok()?;
        let expr = parser.parse_expr().ok()?;
        (parser.peek_token().token == Token::EOF).then(|| expr.to_string())
    };
    matches!((printed(left), printed(right)), (Some(left), Some(right)) if left == right)
}

/// Whether `expression` names `logical` as an identifier (the way Postgres folds names). An
/// expression the tokenizer cannot read is assumed to name it.
pub fn mentions(expression: &str, logical: &str) -> bool {
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

/// A column of `CREATE TABLE`; `references` is its `REFERENCES …` clause, named as the
/// server knows the table (`Deriver::references_clause`).
pub(super) fn column_sql(column: &ColumnDefinition, references: Option<&str>) -> String {
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
    if let Some(references) = references {
        sql.push(' ');
        sql.push_str(references);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::{mentions, over_physical, same_expression, translatable};

    #[test]
    fn expressions_written_alike_are_the_same_whatever_their_spacing() {
        assert!(same_expression("nextval('t_seq')", " nextval( 't_seq' )\n"));
        assert!(same_expression("now()", "now( )"));
        assert!(!same_expression("nextval('t_seq')", "nextval('u_seq')"));
        assert!(!same_expression("1", "2"));
        assert!(
            !same_expression("now()", "now() now()"),
            "not one expression"
        );
        assert!(!same_expression("(", "("), "unreadable is never the same");
    }

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

    #[test]
    fn over_physical_keeps_literals_as_written() {
        let names = [("note".to_owned(), "_vg_v2_note".to_owned())];
        for (expression, moved) in [
            ("note <> 'it''s'", "\"_vg_v2_note\" <> 'it''s'"),
            (
                "note <> 'x'' OR ''1''=''1'",
                "\"_vg_v2_note\" <> 'x'' OR ''1''=''1'",
            ),
            (
                "note || E'\\n' || \"no\"\"te\"",
                "\"_vg_v2_note\" || E'\\n' || \"no\"\"te\"",
            ),
            (
                "$q$it's$q$ || note -- note\n",
                "$q$it's$q$ || \"_vg_v2_note\" -- note\n",
            ),
            (
                "E'it\\'s' <> Note\n  AND U&'d\\0061t' <> \"note\"",
                "E'it\\'s' <> \"_vg_v2_note\"\n  AND U&'d\\0061t' <> \"_vg_v2_note\"",
            ),
        ] {
            assert_eq!(over_physical(expression, &names), moved, "{expression}");
        }
    }

    #[test]
    fn over_physical_leaves_types_and_functions_named_like_a_column() {
        let names = [
            ("date".to_owned(), "_vg_v2_date".to_owned()),
            ("lower".to_owned(), "_vg_v2_lower".to_owned()),
        ];
        assert_eq!(
            over_physical(
                "date::date || lower (lower) || pg_catalog.lower(x) || CAST(date AS date)",
                &names
            ),
            "\"_vg_v2_date\"::date || lower (\"_vg_v2_lower\") || pg_catalog.lower(x) || CAST(\"_vg_v2_date\" AS date)"
        );
    }
}
