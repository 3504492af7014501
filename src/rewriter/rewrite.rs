//! The rewriter's entry point: one query string and one version in, the string to send out.

use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token};

use super::references::{Collector, view_reference};
use super::splice::{self, Edit, TextIndex};
use super::statements::{self, Kind, StatementText};
use super::targets::{VersionTargets, fold_identifier};

/// What to send instead of the client's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Send the text as it is.
    Unchanged,
    Rewritten(String),
}

/// A statement names a managed table but could not be read safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("viewgate cannot rewrite this statement for version {version}: {reason}")]
pub struct RewriteError {
    pub version: String,
    pub reason: String,
    /// 1-based character position in the query string, as in Postgres's error position.
    pub position: Option<usize>,
}

/// Rewrites the references to `targets`' tables in `sql`.
pub fn rewrite(sql: &str, targets: &VersionTargets) -> Result<Rewrite, RewriteError> {
    if !mentions_managed_table(sql, targets) {
        return Ok(Rewrite::Unchanged);
    }
    finish(sql, &targets.version, analyse(sql, targets).edits)
}

/// Why a statement cannot be rewritten, with a byte offset into the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub offset: Option<usize>,
}

/// What the full path learned about one text: the edits (or why there are none), and the byte
/// ranges of the tokens sqlparser read (whitespace and comments left out), which the shape
/// cache checks its own lexer against. `parser_tokens` is `None` when the tokenizer failed.
#[derive(Debug)]
pub struct Analysis {
    pub parser_tokens: Option<Vec<Range<usize>>>,
    pub edits: Result<Vec<Edit>, Failure>,
}

/// Tokenizes, splits, parses and collects the edits of a text that mentions a managed table.
pub fn analyse(sql: &str, targets: &VersionTargets) -> Analysis {
    let index = TextIndex::new(sql);
    let failure = |reason: String, location: Option<Location>| Failure {
        reason,
        offset: location.and_then(|l| index.offset(l)),
    };
    let mut parser_tokens = Vec::new();
    let statements = match statements::split_recording(sql, &index, Some(&mut parser_tokens)) {
        Ok(statements) => statements,
        Err(e) => {
            return Analysis {
                parser_tokens: None,
                edits: Err(failure(e.message.clone(), Some(e.location))),
            };
        }
    };
    let mut edits = Vec::new();
    for statement in statements {
        if statement.kind == Kind::PassThrough
            || !mentions_managed_table(&sql[statement.range.clone()], targets)
        {
            continue;
        }
        let statement_edits = match statement.kind {
            Kind::TableShorthand => table_shorthand(&statement, &index, targets),
            _ => {
                let start = statement_start(&statement);
                match parsed_edits(sql, statement, &index, targets) {
                    Ok(found) => found,
                    Err((reason, location)) => {
                        return Analysis {
                            parser_tokens: Some(parser_tokens),
                            edits: Err(failure(reason, location.or(Some(start)))),
                        };
                    }
                }
            }
        };
        edits.extend(statement_edits);
    }
    Analysis {
        parser_tokens: Some(parser_tokens),
        edits: Ok(edits),
    }
}

/// The outcome for `sql` from its edits: spliced, unchanged, or the error (its position in
/// characters, as Postgres counts them).
pub fn finish(
    sql: &str,
    version: &str,
    edits: Result<Vec<Edit>, Failure>,
) -> Result<Rewrite, RewriteError> {
    let error = |failure: Failure| RewriteError {
        version: version.to_owned(),
        reason: failure.reason,
        position: failure
            .offset
            .and_then(|o| sql.get(..o))
            .map(|before| before.chars().count() + 1),
    };
    match edits {
        Ok(edits) if edits.is_empty() => Ok(Rewrite::Unchanged),
        Ok(edits) => splice::apply(sql, edits)
            .map(Rewrite::Rewritten)
            .ok_or_else(|| {
                error(Failure {
                    reason: "overlapping table references".into(),
                    offset: None,
                })
            }),
        Err(failure) => Err(error(failure)),
    }
}

/// The cheap test run on every statement: does it mention a managed table's name at all, in
/// any case? Most statements of most applications do not, and are forwarded without parsing.
pub fn mentions_managed_table(sql: &str, targets: &VersionTargets) -> bool {
    targets
        .table_names()
        .any(|name| contains_ignore_ascii_case(sql.as_bytes(), name.as_bytes()))
}

/// Substring search ignoring ASCII case, without lowering a copy: memchr finds each
/// occurrence of the needle's first byte (in either case), then the rest is compared.
pub fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    let (Some((&first, rest)), Some(last_start)) = (
        needle.split_first(),
        haystack.len().checked_sub(needle.len()),
    ) else {
        return false;
    };
    let candidates = haystack.get(..=last_start).unwrap_or_default();
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        candidates,
    )
    .any(|start| {
        haystack
            .get(start + 1..start + needle.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(rest))
    })
}

fn statement_start(statement: &StatementText) -> Location {
    statement
        .tokens
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| t.span.start)
        .unwrap_or(Location::new(1, 1))
}

fn parsed_edits(
    sql: &str,
    statement: StatementText,
    index: &TextIndex,
    targets: &VersionTargets,
) -> Result<Vec<Edit>, (String, Option<Location>)> {
    let parsed = Parser::new(&PostgreSqlDialect {})
        .with_tokens_with_locations(statements::parser_tokens(statement))
        .parse_statements()
        .map_err(|e| parser_reason(&e.to_string()))?;
    let mut edits = Vec::new();
    for parsed_statement in &parsed {
        let found = Collector::new(sql, index, targets)
            .collect(parsed_statement)
            .ok_or((
                "a table reference could not be located in the text".to_owned(),
                None,
            ))?;
        edits.extend(found);
    }
    Ok(edits)
}

/// sqlparser reports positions inside its message ("... at Line: 1, Column: 15").
fn parser_reason(message: &str) -> (String, Option<Location>) {
    let location = message.rfind(" at Line: ").and_then(|at| {
        let rest = &message[at + " at Line: ".len()..];
        let (line, column) = rest.split_once(", Column: ")?;
        Some(Location::new(
            line.trim().parse().ok()?,
            column.trim().parse().ok()?,
        ))
    });
    let reason = match message.rfind(" at Line: ") {
        Some(at) => &message[..at],
        None => message,
    };
    let reason = reason.strip_prefix("sql parser error: ").unwrap_or(reason);
    (reason.to_owned(), location)
}

/// `TABLE [ONLY] name`: the whole statement is the relation.
fn table_shorthand(
    statement: &StatementText,
    index: &TextIndex,
    targets: &VersionTargets,
) -> Vec<Edit> {
    let words: Vec<_> = statement
        .tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mut rest = &words[1..];
    if let Some(first) = rest.first()
        && matches!(&first.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::ONLY)
    {
        rest = &rest[1..];
    }
    let mut names = Vec::new();
    for (i, token) in rest.iter().enumerate() {
        match (&token.token, i % 2) {
            (Token::Word(word), 0) => {
                names.push(fold_identifier(&word.value, word.quote_style.is_some()))
            }
            (Token::Period, 1) => {}
            _ => return Vec::new(),
        }
    }
    let (Some(name), Some(first), Some(last)) = (names.pop(), rest.first(), rest.last()) else {
        return Vec::new();
    };
    let schema = names.pop();
    let Some(target) = targets.resolve(schema.as_deref(), &name) else {
        return Vec::new();
    };
    let (Some(start), Some(end)) = (index.offset(first.span.start), index.offset(last.span.end))
    else {
        return Vec::new();
    };
    let text = view_reference(target, schema.is_some());
    vec![Edit {
        range: start..end,
        text,
    }]
}
