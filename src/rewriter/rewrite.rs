//! The rewriter's entry point: one query string and one version in, the string to send out.

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
    let index = TextIndex::new(sql);
    let error = |reason: String, location: Option<Location>| RewriteError {
        version: targets.version.clone(),
        reason,
        position: location
            .and_then(|l| index.offset(l))
            .map(|o| sql[..o].chars().count() + 1),
    };
    let statements =
        statements::split(sql, &index).map_err(|e| error(e.message.clone(), Some(e.location)))?;
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
                parsed_edits(sql, statement, &index, targets)
                    .map_err(|(reason, location)| error(reason, location.or(Some(start))))?
            }
        };
        edits.extend(statement_edits);
    }
    if edits.is_empty() {
        return Ok(Rewrite::Unchanged);
    }
    splice::apply(sql, edits)
        .map(Rewrite::Rewritten)
        .ok_or_else(|| error("overlapping table references".into(), None))
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
fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
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
