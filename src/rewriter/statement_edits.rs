//! One statement's edits by sqlparser's reading: parsed from its own tokens, on a stack sized
//! for the depth its tokens allow (`expression_depth.rs`), then walked by the reference
//! collector. The full path (`rewrite.rs`) takes each statement of a text here.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;

use super::expression_depth;
use super::references::{Collector, NotCollected};
use super::refusal::Refusal;
use super::splice::{Edit, TextIndex};
use super::statements::{self, StatementText};
use super::targets::VersionTargets;

/// Why a statement gives no edits: sqlparser could not read it (or locate a reference in
/// it), or it was read and is refused.
pub enum NotParsed {
    Parser(String, Option<Location>),
    Refused(Refusal),
}

pub fn parsed_edits(
    sql: &str,
    statement: StatementText,
    index: &TextIndex,
    targets: &VersionTargets,
) -> Result<Vec<Edit>, NotParsed> {
    let depth = expression_depth::depth_bound(&statement.tokens);
    if depth > expression_depth::MAX_EXPRESSION_DEPTH {
        return Err(NotParsed::Refused(Refusal::new(
            format!(
                "its expressions may nest {depth} levels deep, more than the {} viewgate reads; split the expression (a long AND/OR chain into an IN list or a join, say)",
                expression_depth::MAX_EXPRESSION_DEPTH
            ),
            statement
                .tokens
                .first()
                .and_then(|t| index.offset(t.span.start)),
        )));
    }
    // The tree is built, walked and dropped on the stack its depth needs.
    expression_depth::on_expression_stack(depth, || {
        let parsed = Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(statements::parser_tokens(statement))
            .parse_statements()
            .map_err(|e| {
                let (reason, location) = parser_reason(&e.to_string());
                NotParsed::Parser(reason, location)
            })?;
        let mut edits = Vec::new();
        for parsed_statement in &parsed {
            let found = Collector::new(sql, index, targets)
                .collect(parsed_statement)
                .map_err(|not| match not {
                    NotCollected::Unlocatable => NotParsed::Parser(
                        "a table reference could not be located in the text".to_owned(),
                        None,
                    ),
                    NotCollected::Refused(refusal) => NotParsed::Refused(refusal),
                })?;
            edits.extend(found);
        }
        Ok(edits)
    })
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
