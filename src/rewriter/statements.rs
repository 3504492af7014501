//! A query string split into statements, each classified and prepared for the parser.
//!
//! The tokenizer (which understands strings, quoted identifiers, comments and dollar quoting)
//! finds the top-level semicolons, so one statement the parser cannot read does not stop the
//! others from being rewritten. Only statements that read or write rows are candidates for
//! sqlparser; everything else (DDL, SET, VACUUM, DO, ...) is left to Postgres's parser, which
//! reads only the DDL that would copy or keep a managed table's shape (`definitions.rs`).
//!
//! Each candidate is parsed from its own tokens (the query string is tokenized once), which
//! carry their line/column positions in the original text, so the parser's spans locate table
//! names there. Dropping tokens works around parser gaps that do not change which tables a
//! statement names: `ONLY` before a relation, `NO KEY` / `KEY` in locking clauses and `SYMMETRIC` are left out
//! of what the parser reads, and stay in the text that is sent. A MERGE clause's `INSERT
//! DEFAULT VALUES`, which sqlparser does not know, is read as `INSERT VALUES (DEFAULT)` (the
//! added tokens have no position; `merge.rs` recognises the form by the text).

use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer, TokenizerError};

use super::splice::TextIndex;

/// How a statement is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads or writes rows: parse it and rewrite managed tables.
    Rewritable,
    /// `TABLE name`: the parser cannot read it, but its one relation is easy to find.
    TableShorthand,
    /// Anything else: forwarded as written.
    PassThrough,
}

/// One statement of a query string.
#[derive(Debug)]
pub struct StatementText {
    /// Byte range in the original text (without the terminating semicolon).
    pub range: std::ops::Range<usize>,
    pub kind: Kind,
    /// The tokens of the statement, with positions in the original text.
    pub tokens: Vec<TokenWithSpan>,
}

/// Splits `sql` at top-level semicolons.
pub fn split(sql: &str, index: &TextIndex) -> Result<Vec<StatementText>, TokenizerError> {
    split_recording(sql, index, None)
}

/// [`split`], also appending to `significant` the byte range of every token other than
/// whitespace and comments (the shape cache checks its lexer against them).
pub fn split_recording(
    sql: &str,
    index: &TextIndex,
    mut significant: Option<&mut Vec<Range<usize>>>,
) -> Result<Vec<StatementText>, TokenizerError> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location()?;
    let mut statements = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for token in tokens {
        if let Some(significant) = significant.as_deref_mut()
            && !is_trivia(&token.token)
            && token.token != Token::EOF
            && let Some(range) = index.range(token.span)
        {
            significant.push(range);
        }
        if token.token == Token::SemiColon {
            push_statement(&mut statements, std::mem::take(&mut current), index);
        } else if token.token != Token::EOF {
            current.push(token);
        }
    }
    push_statement(&mut statements, current, index);
    Ok(statements)
}

fn push_statement(out: &mut Vec<StatementText>, tokens: Vec<TokenWithSpan>, index: &TextIndex) {
    let meaningful: Vec<&TokenWithSpan> = tokens.iter().filter(|t| !is_trivia(&t.token)).collect();
    let (Some(first), Some(last)) = (meaningful.first(), meaningful.last()) else {
        return;
    };
    let (Some(start), Some(end)) = (index.offset(first.span.start), index.offset(last.span.end))
    else {
        return;
    };
    let kind = classify(&meaningful);
    out.push(StatementText {
        range: start..end,
        kind,
        tokens,
    });
}

fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

fn keyword(token: &Token) -> Option<Keyword> {
    match token {
        Token::Word(word) if word.quote_style.is_none() => Some(word.keyword),
        _ => None,
    }
}

fn classify(tokens: &[&TokenWithSpan]) -> Kind {
    match tokens.first().map(|t| &t.token) {
        Some(Token::LParen) => Kind::Rewritable,
        Some(token) => match keyword(token) {
            Some(Keyword::TABLE) => Kind::TableShorthand,
            Some(
                Keyword::SELECT
                | Keyword::WITH
                | Keyword::INSERT
                | Keyword::UPDATE
                | Keyword::DELETE
                | Keyword::MERGE
                | Keyword::COPY
                | Keyword::EXPLAIN
                | Keyword::PREPARE
                | Keyword::DECLARE
                | Keyword::VALUES,
            ) => Kind::Rewritable,
            Some(Keyword::CREATE) => create_kind(&tokens[1..]),
            _ => Kind::PassThrough,
        },
        None => Kind::PassThrough,
    }
}

/// A CREATE statement that holds a query is read like one: `CREATE … TABLE … AS query`
/// (the new table gets the rows and columns the version sees, as `SELECT … INTO` does) and
/// `CREATE [MATERIALIZED] VIEW … AS query` (whose managed names the collector refuses). Other
/// CREATE statements are DDL and pass through.
fn create_kind(tokens: &[&TokenWithSpan]) -> Kind {
    let mut words = tokens.iter().map(|t| keyword(&t.token)).skip_while(|word| {
        matches!(
            word,
            Some(
                Keyword::OR
                    | Keyword::REPLACE
                    | Keyword::TEMP
                    | Keyword::TEMPORARY
                    | Keyword::LOCAL
                    | Keyword::GLOBAL
                    | Keyword::UNLOGGED
                    | Keyword::RECURSIVE
                    | Keyword::MATERIALIZED
            )
        )
    });
    match words.next() {
        Some(Some(Keyword::VIEW)) => Kind::Rewritable,
        Some(Some(Keyword::TABLE)) if has_top_level_as(tokens) => Kind::Rewritable,
        _ => Kind::PassThrough,
    }
}

/// Whether `AS` stands outside every parenthesis (`CREATE TABLE t (a, b) AS …`, not a
/// generated column's `AS (…)`).
fn has_top_level_as(tokens: &[&TokenWithSpan]) -> bool {
    let mut depth = 0usize;
    tokens.iter().any(|token| match &token.token {
        Token::LParen => {
            depth += 1;
            false
        }
        Token::RParen => {
            depth = depth.saturating_sub(1);
            false
        }
        other => depth == 0 && keyword(other) == Some(Keyword::AS),
    })
}

/// The tokens the parser reads for `statement`: its own tokens, with their positions in the
/// original text, minus the parser-gap keywords.
pub fn parser_tokens(statement: StatementText) -> Vec<TokenWithSpan> {
    let meaningful: Vec<usize> = statement
        .tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !is_trivia(&t.token))
        .map(|(i, _)| i)
        .collect();
    let keyword_at = |position: Option<usize>| {
        position
            .and_then(|p| meaningful.get(p))
            .and_then(|&i| statement.tokens.get(i))
            .and_then(|t| keyword(&t.token))
    };
    let mut gaps = vec![false; statement.tokens.len()];
    // The VALUES tokens of `THEN INSERT DEFAULT VALUES`, after which `(DEFAULT)` is read.
    let mut default_values = Vec::new();
    for (position, &index) in meaningful.iter().enumerate() {
        let previous = keyword_at(position.checked_sub(1));
        let next = meaningful
            .get(position + 1)
            .and_then(|&i| statement.tokens.get(i))
            .map(|t| &t.token);
        let gap = match statement.tokens.get(index).and_then(|t| keyword(&t.token)) {
            // `FROM ONLY t`, `JOIN ONLY t`, `UPDATE ONLY t`, `USING ONLY t`, `FROM a, ONLY t`:
            // ONLY before a relation name (ONLY is reserved, so a comma before it can only be
            // a FROM list's).
            Some(Keyword::ONLY) => {
                let after_comma = position
                    .checked_sub(1)
                    .and_then(|p| meaningful.get(p))
                    .and_then(|&i| statement.tokens.get(i))
                    .is_some_and(|t| t.token == Token::Comma);
                (after_comma
                    || matches!(
                        previous,
                        Some(
                            Keyword::FROM
                                | Keyword::JOIN
                                | Keyword::UPDATE
                                | Keyword::INTO
                                | Keyword::USING
                        )
                    ))
                    && matches!(next, Some(Token::Word(_)))
            }
            // `FOR NO KEY UPDATE`, `FOR KEY SHARE`.
            Some(Keyword::NO) => {
                previous == Some(Keyword::FOR) && next.and_then(keyword) == Some(Keyword::KEY)
            }
            Some(Keyword::KEY) => {
                matches!(previous, Some(Keyword::FOR | Keyword::NO))
                    && matches!(
                        next.and_then(keyword),
                        Some(Keyword::UPDATE | Keyword::SHARE)
                    )
            }
            Some(Keyword::SYMMETRIC) => previous == Some(Keyword::BETWEEN),
            // `WHEN NOT MATCHED THEN INSERT DEFAULT VALUES` (MERGE).
            Some(Keyword::DEFAULT) => {
                let merge_insert = previous == Some(Keyword::INSERT)
                    && keyword_at(position.checked_sub(2)) == Some(Keyword::THEN)
                    && next.and_then(keyword) == Some(Keyword::VALUES);
                if merge_insert && let Some(&values) = meaningful.get(position + 1) {
                    default_values.push(values);
                }
                merge_insert
            }
            _ => false,
        };
        if let Some(slot) = gaps.get_mut(index) {
            *slot = gap;
        }
    }
    let mut tokens = Vec::with_capacity(statement.tokens.len() + 3 * default_values.len());
    for (index, (token, gap)) in statement.tokens.into_iter().zip(gaps).enumerate() {
        if !gap {
            tokens.push(token);
        }
        if default_values.contains(&index) {
            tokens.extend(
                [Token::LParen, Token::make_keyword("DEFAULT"), Token::RParen]
                    .map(|token| TokenWithSpan::new(token, Span::empty())),
            );
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(String, Kind)> {
        let index = TextIndex::new(sql);
        split(sql, &index)
            .unwrap()
            .into_iter()
            .map(|s| (sql[s.range.clone()].to_owned(), s.kind))
            .collect()
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "SELECT ';' ; /* ; */ VACUUM t;DO $$ BEGIN PERFORM 1; END $$ ;  TABLE t";
        assert_eq!(
            kinds(sql),
            vec![
                ("SELECT ';'".to_owned(), Kind::Rewritable),
                ("VACUUM t".to_owned(), Kind::PassThrough),
                (
                    "DO $$ BEGIN PERFORM 1; END $$".to_owned(),
                    Kind::PassThrough
                ),
                ("TABLE t".to_owned(), Kind::TableShorthand),
            ]
        );
    }

    #[test]
    fn create_statements_with_a_query_are_read_and_other_ddl_is_not() {
        let read = [
            "CREATE TABLE t AS SELECT 1",
            "CREATE TEMP TABLE t (a, b) AS SELECT 1, 2",
            "create unlogged table if not exists t as table x",
            "CREATE VIEW v AS SELECT 1",
            "CREATE OR REPLACE TEMP RECURSIVE VIEW v (n) AS VALUES (1)",
            "CREATE MATERIALIZED VIEW v AS SELECT 1",
        ];
        for sql in read {
            assert_eq!(
                kinds(sql),
                vec![(sql.to_owned(), Kind::Rewritable)],
                "{sql}"
            );
        }
        let ddl = [
            "CREATE TABLE t (a int GENERATED ALWAYS AS (a * 2) STORED)",
            "CREATE TABLE t (LIKE x)",
            "CREATE INDEX ON t (a)",
            "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        ];
        for sql in ddl {
            assert_eq!(
                kinds(sql),
                vec![(sql.to_owned(), Kind::PassThrough)],
                "{sql}"
            );
        }
    }

    fn parser_text(tokens: &[TokenWithSpan]) -> String {
        tokens.iter().map(|t| t.token.to_string()).collect()
    }

    #[test]
    fn drops_parser_gaps_but_nothing_else() {
        let sql = "SELECT x FROM ONLY t WHERE a BETWEEN SYMMETRIC 1 AND 2 FOR NO KEY UPDATE; SELECT 'ONLY'";
        let index = TextIndex::new(sql);
        let mut statements = split(sql, &index).unwrap().into_iter();
        let first = parser_tokens(statements.next().unwrap());
        assert_eq!(
            parser_text(&first),
            "SELECT x FROM  t WHERE a BETWEEN  1 AND 2 FOR   UPDATE"
        );
        let t = first.iter().find(|t| t.token.to_string() == "t").unwrap();
        assert_eq!(index.offset(t.span.start), sql.find(" t ").map(|o| o + 1));
        let second = parser_tokens(statements.next().unwrap());
        assert_eq!(parser_text(&second).trim(), "SELECT 'ONLY'");
    }

    #[test]
    fn reads_a_merge_insert_of_default_values_as_a_row_of_default() {
        let sql = "MERGE INTO t USING s ON true WHEN NOT MATCHED THEN INSERT DEFAULT VALUES; INSERT INTO t DEFAULT VALUES";
        let index = TextIndex::new(sql);
        let mut statements = split(sql, &index).unwrap().into_iter();
        let merge = parser_tokens(statements.next().unwrap());
        assert!(
            parser_text(&merge).ends_with("THEN INSERT  VALUES(DEFAULT)"),
            "{}",
            parser_text(&merge)
        );
        let insert = parser_tokens(statements.next().unwrap());
        assert!(parser_text(&insert).ends_with("INSERT INTO t DEFAULT VALUES"));
    }
}
