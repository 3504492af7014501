//! A trigger-backed version's writes inside a MERGE: the trigger's INSERT and UPDATE, each
//! base value as pieces (text, and the `NEW.col` it reads), so `merge.rs` can splice the
//! client's values into the one base value each of them feeds. A write expression is its
//! mapping function over the view's row; which columns it reads, as `NEW.col` and `OLD.col`,
//! is read from the spec's expression, which is never pasted.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, visit_expressions};

use super::super::base_row::{
    BaseRow, NEW_ALIAS, OLD_ALIAS, OldRow, RowName, insertion, parse_expression,
};
use super::super::identifier::{fold_identifier, quote_identifier};
use super::super::refusal::Refusal;
use super::super::splice::Edit;
use super::super::statement_scan::{Scan, SetSegment};
use crate::model::MappedColumn;

/// One piece of a trigger's write: text, or the view column `NEW.col` it reads.
pub(super) enum Piece {
    Text(String),
    New(String),
}

/// The view columns a write expression reads as `NEW.col` and as `OLD.col`.
struct Reads {
    new: Vec<String>,
    old: Vec<String>,
}

/// A base column as the trigger's INSERT writes it.
pub(super) struct Written {
    pub(super) base_column: String,
    pub(super) pieces: Vec<Piece>,
}
impl BaseRow<'_> {
    /// `SET c = x, …` as the trigger's UPDATE, one base column at a time: `b = (SELECT <the
    /// trigger's value> FROM (SELECT <new row>) AS new, (SELECT <old row>) AS old)`, the
    /// client's value spliced into the one base value that reads it. Refused where a SET
    /// column is read by other than one of the trigger's assignments, or one assignment reads
    /// two SET columns.
    pub(super) fn trigger_update_per_column(
        &self,
        scan: &Scan,
        set: &[(&MappedColumn, &SetSegment)],
        row: &RowName,
        at_update: Option<usize>,
        edits: &mut Vec<Edit>,
    ) -> Result<(), Refusal> {
        let update = &self.mapping().update;
        // The view columns each assignment reads as NEW (or compares, when it changed).
        let mut reads = Vec::with_capacity(update.len());
        for assignment in update {
            let mut columns: Vec<String> = match (&assignment.view_column, &assignment.expression) {
                (Some(view_column), _) => vec![view_column.clone()],
                (None, Some(expression)) => {
                    let reads = self.write_reads(expression, &assignment.base_column, at_update)?;
                    reads.new.into_iter().chain(reads.old).collect()
                }
                (None, None) => Vec::new(),
            };
            columns.extend(assignment.when_changed.clone());
            reads.push(columns);
        }
        let mut owners = Vec::with_capacity(set.len());
        for (column, segment) in set {
            let at = scan.tokens.get(segment.target).map(|t| t.start);
            let readers: Vec<usize> = (0..update.len())
                .filter(|&i| reads[i].contains(&column.name))
                .collect();
            let [owner] = readers.as_slice() else {
                return Err(self.refusal(
                    format!(
                        "a second UPDATE action setting column \"{}\", which the view's trigger reads in {} of its assignments (one is mapped)",
                        column.name,
                        readers.len()
                    ),
                    at,
                ));
            };
            let others = set
                .iter()
                .filter(|(c, _)| c.name != column.name && reads[*owner].contains(&c.name))
                .count();
            if others > 0 {
                return Err(self.refusal(
                    format!(
                        "a second UPDATE action setting columns the view's trigger combines into base column \"{}\"",
                        update[*owner].base_column
                    ),
                    at,
                ));
            }
            owners.push(*owner);
        }
        let mut old = Vec::with_capacity(self.mapping().columns.len());
        for column in &self.mapping().columns {
            old.push(format!(
                "{} AS {}",
                self.read(column, &row.text)?,
                quote_identifier(&column.name)
            ));
        }
        // The `new` row of an assignment: the read of every column but `set_column`.
        let others = |set_column: Option<&str>| -> Vec<String> {
            self.mapping()
                .columns
                .iter()
                .zip(&old)
                .filter(|(c, _)| Some(c.name.as_str()) != set_column)
                .map(|(_, read)| read.clone())
                .collect()
        };
        let from_old = format!("(SELECT {}) AS {}", old.join(", "), OLD_ALIAS);
        for ((column, segment), &owner) in set.iter().zip(&owners) {
            let assignment = &update[owner];
            let value_start = scan.tokens[segment.value.start].start;
            let value_end = scan.tokens[segment.value.end - 1].end;
            edits.push(Edit {
                range: scan.tokens[segment.target].start..value_start,
                text: format!(
                    "{} = (SELECT {} FROM (SELECT CAST(",
                    quote_identifier(&assignment.base_column),
                    self.written_value(assignment, row, OldRow::InScope)?
                ),
                relation: false,
            });
            edits.push(insertion(
                value_end,
                format!(
                    " AS {}) AS {}{}) AS {}, {from_old})",
                    self.type_of(column, at_update)?,
                    quote_identifier(&column.name),
                    others(Some(&column.name))
                        .iter()
                        .map(|r| format!(", {r}"))
                        .collect::<String>(),
                    NEW_ALIAS
                ),
            ));
        }
        let rest: Vec<String> = update
            .iter()
            .enumerate()
            .filter(|(i, _)| !owners.contains(i))
            .map(|(_, assignment)| {
                Ok(format!(
                    ", {} = (SELECT {} FROM (SELECT {}) AS {}, {from_old})",
                    quote_identifier(&assignment.base_column),
                    self.written_value(assignment, row, OldRow::InScope)?,
                    others(None).join(", "),
                    NEW_ALIAS
                ))
            })
            .collect::<Result<_, Refusal>>()?;
        if let Some((_, last)) = set.last() {
            edits.push(insertion(
                scan.tokens[last.value.end - 1].end,
                rest.concat(),
            ));
        }
        Ok(())
    }

    /// The trigger's INSERT, each base value as pieces: a view column as `NEW.col`, an
    /// expression as its mapping function over `ROW(…)::<view>` (`OLD` is NULL on INSERT),
    /// the row made of the columns the expression reads as `NEW.col` (NULL for the others,
    /// which it does not read). An expression that names a column any other way, or has a
    /// subquery, is refused: which columns it reads would not be known.
    pub(super) fn trigger_insert(&self) -> Result<Vec<Written>, Refusal> {
        let mut written = Vec::with_capacity(self.mapping().insert.len());
        for assignment in &self.mapping().insert {
            let pieces = match (&assignment.view_column, &assignment.expression) {
                (Some(view_column), _) => vec![Piece::New(view_column.clone())],
                (None, Some(expression)) => {
                    let reads = self.write_reads(expression, &assignment.base_column, None)?;
                    let mut pieces = vec![Piece::Text(format!(
                        "{}(ROW(",
                        self.write_function(assignment)?
                    ))];
                    for (i, column) in self.mapping().columns.iter().enumerate() {
                        if i > 0 {
                            pieces.push(Piece::Text(", ".into()));
                        }
                        pieces.push(if reads.new.contains(&column.name) {
                            Piece::New(column.name.clone())
                        } else {
                            Piece::Text("NULL".into())
                        });
                    }
                    pieces.push(Piece::Text(format!(")::{}, NULL)", self.view_type())));
                    pieces
                }
                (None, None) => vec![Piece::Text("NULL".into())],
            };
            written.push(Written {
                base_column: assignment.base_column.clone(),
                pieces,
            });
        }
        Ok(written)
    }

    /// The columns `expression`, the trigger's write of `base_column`, reads; refused (at
    /// `offset`) when that cannot be known.
    fn write_reads(
        &self,
        expression: &str,
        base_column: &str,
        offset: Option<usize>,
    ) -> Result<Reads, Refusal> {
        write_reads(expression).ok_or_else(|| {
            self.refusal(
                format!(
                    "the trigger's write expression for base column \"{base_column}\" (only expressions over NEW and OLD without subqueries are mapped)"
                ),
                offset,
            )
        })
    }
}

/// The view columns a write expression of the spec's reads as `NEW.col` and `OLD.col`, each
/// once; `None` when it names anything else as a column (a whole row among them), has a
/// subquery, or cannot be parsed.
fn write_reads(expression: &str) -> Option<Reads> {
    let parsed = parse_expression(expression)?;
    let mut reads = Reads {
        new: Vec::new(),
        old: Vec::new(),
    };
    let flow = visit_expressions(&parsed, |e| match e {
        Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::InSubquery { .. }
        | Expr::Identifier(_)
        | Expr::Wildcard(_)
        | Expr::QualifiedWildcard(..) => ControlFlow::Break(()),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [row, column] if row.quote_style.is_none() => {
                let column = fold_identifier(&column.value, column.quote_style.is_some());
                let list = match row.value.to_ascii_lowercase().as_str() {
                    "new" => &mut reads.new,
                    "old" => &mut reads.old,
                    _ => return ControlFlow::Break(()),
                };
                if !list.contains(&column) {
                    list.push(column);
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(()),
        },
        _ => ControlFlow::Continue(()),
    });
    flow.is_continue().then_some(reads)
}
