//! `MERGE … WHEN NOT MATCHED THEN INSERT` into a version's view, written as the base table's
//! INSERT clause (part of [`super`]'s one MERGE on the base table).
//!
//! Through an auto-updatable view the listed view columns are renamed to their base columns
//! and the view's own defaults are written out for the columns left out. Through a
//! trigger-backed view each base value is the trigger's expression over `NEW`, with the one
//! listed value it reads spliced in place (cast to the view column's type), so the client's
//! value is evaluated once, as the trigger would see it; a trigger that reads a listed column
//! twice, or computes one base column from two listed ones, is refused.

use sqlparser::ast::{Ident, MergeInsertExpr, MergeInsertKind, ObjectNamePart};

use super::trigger::{Piece, Written};
use crate::model::MappedColumn;
use crate::rewriter::base_row::{BaseRow, Resolution, insertion, join};
use crate::rewriter::identifier::{fold_identifier, quote_identifier};
use crate::rewriter::refusal::Refusal;
use crate::rewriter::splice::Edit;
use crate::rewriter::statement_scan::Scan;

impl BaseRow<'_> {
    /// `WHEN NOT MATCHED THEN INSERT [(cols)] VALUES (…)` or `INSERT DEFAULT VALUES`.
    pub(super) fn insert(
        &self,
        scan: &Scan,
        insert: &MergeInsertExpr,
        resolve: &dyn Fn(&[&Ident], &Ident) -> Resolution,
        edits: &mut Vec<Edit>,
    ) -> Result<(), Refusal> {
        let at_insert = self
            .index
            .range(insert.insert_token.0.span)
            .map(|r| r.start);
        let MergeInsertKind::Values(values) = &insert.kind else {
            return Err(self.refusal("this INSERT form", at_insert));
        };
        if insert.insert_predicate.is_some() {
            return Err(self.refusal("this INSERT form", at_insert));
        }
        let cannot_locate = || self.refusal("the INSERT could not be located", at_insert);
        let first = at_insert
            .and_then(|at| scan.after(at))
            .ok_or_else(cannot_locate)?;
        if !scan.word(first, "insert") {
            return Err(cannot_locate());
        }
        let default_values = scan.word(first + 1, "default") && scan.word(first + 2, "values");
        // The column list: its names, and the tokens of its parentheses.
        let mut listed = Vec::with_capacity(insert.columns.len());
        let mut list = None;
        for name in &insert.columns {
            let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
                return Err(self.refusal("a qualified column in the INSERT list", at_insert));
            };
            let offset = self.offset(ident);
            let name = fold_identifier(&ident.value, ident.quote_style.is_some());
            self.column(&name, offset)?;
            if listed.iter().any(|(n, _)| *n == name) {
                return Err(self.refusal(format!("column \"{name}\" is listed twice"), offset));
            }
            listed.push((
                name,
                self.index.range(ident.span).ok_or_else(cannot_locate)?,
            ));
        }
        if !listed.is_empty() {
            let (items, close) = scan
                .parenthesised(first + 1)
                .filter(|(items, _)| items.len() == listed.len())
                .ok_or_else(cannot_locate)?;
            list = Some((first + 1, close));
            let _ = items;
        }
        let values_token = match (default_values, list) {
            (true, _) => first + 2,
            (false, Some((_, close))) => close + 1,
            (false, None) => first + 1,
        };
        if !scan.word(values_token, "values") {
            return Err(cannot_locate());
        }
        // The VALUES row: each value's tokens, and its closing parenthesis.
        let row_values = if default_values {
            None
        } else {
            let [expressions] = values.rows.as_slice() else {
                return Err(self.refusal("more than one VALUES row", at_insert));
            };
            let expressions = expressions.content.as_slice();
            let (items, close) = scan
                .parenthesised(values_token + 1)
                .filter(|(items, _)| items.len() == expressions.len())
                .ok_or_else(cannot_locate)?;
            if listed.is_empty() {
                if items.len() > self.mapping().columns.len() {
                    return Err(self.refusal("more values than the view has columns", at_insert));
                }
                // No list: the view's first columns, in its order.
                for column in &self.mapping().columns[..items.len()] {
                    listed.push((column.name.clone(), 0..0));
                }
            }
            Some((items, expressions, close))
        };
        let write_list = |edits: &mut Vec<Edit>, columns: &[String]| {
            let text = format!("({})", join(columns.iter().map(|c| quote_identifier(c))));
            match list {
                Some((open, close)) => edits.push(Edit {
                    range: scan.tokens[open].start..scan.tokens[close].end,
                    text,
                    relation: false,
                }),
                None => edits.push(insertion(
                    scan.tokens[values_token].start,
                    format!("{text} "),
                )),
            }
        };
        let default_of = |column: &MappedColumn| -> Result<String, Refusal> {
            Ok(format!(
                "CAST({} AS {})",
                self.default_value(column, at_insert)?,
                self.type_of(column, at_insert)?
            ))
        };

        if !self.mapping().trigger_backed {
            // Auto-updatable: the listed view columns are base columns; the ones left out
            // whose view default is not the base column's get it written out.
            let mut columns = Vec::with_capacity(listed.len());
            for (name, _) in &listed {
                let column = self.column(name, at_insert)?;
                columns.push(self.base_column(column, at_insert)?.to_owned());
            }
            let omitted: Vec<&MappedColumn> = self
                .mapping()
                .columns
                .iter()
                .filter(|c| !listed.iter().any(|(n, _)| *n == c.name) && !c.base_default_applies())
                .collect();
            let mut extra_values = Vec::with_capacity(omitted.len());
            for column in &omitted {
                columns.push(self.base_column(column, at_insert)?.to_owned());
                extra_values.push(self.default_value(column, at_insert)?);
            }
            let Some((items, expressions, close)) = row_values else {
                if !omitted.is_empty() {
                    edits.push(Edit {
                        range: scan.tokens[first + 1].start..scan.tokens[values_token].end,
                        text: format!(
                            "({}) VALUES ({})",
                            join(columns.iter().map(|c| quote_identifier(c))),
                            extra_values.join(", ")
                        ),
                        relation: false,
                    });
                }
                return Ok(());
            };
            if list.is_some() && omitted.is_empty() {
                // Rename in place.
                for ((_, range), base) in listed.iter().zip(&columns) {
                    edits.push(Edit {
                        range: range.clone(),
                        text: quote_identifier(base),
                        relation: false,
                    });
                }
            } else {
                write_list(edits, &columns);
            }
            for ((value, expr), (name, _)) in items.iter().zip(expressions).zip(&listed) {
                let column = self.column(name, at_insert)?;
                if scan.is_default(value) {
                    if !column.base_default_applies() {
                        edits.push(Edit {
                            range: scan.tokens[value.start].start..scan.tokens[value.end - 1].end,
                            text: self.default_value(column, at_insert)?,
                            relation: false,
                        });
                    }
                    continue;
                }
                self.map_expression(expr, resolve, edits)?;
            }
            if !extra_values.is_empty() {
                edits.push(insertion(
                    scan.tokens[close].start,
                    extra_values.iter().map(|v| format!(", {v}")).collect(),
                ));
            }
            return Ok(());
        }

        // Trigger-backed: the trigger's INSERT, each base value computed from at most one
        // listed view column, spliced around that column's value.
        let written = self.trigger_insert()?;
        let reads = |name: &str| -> usize {
            written
                .iter()
                .flat_map(|w| &w.pieces)
                .filter(|p| matches!(p, Piece::New(n) if n == name))
                .count()
        };
        for (name, range) in &listed {
            let offset = Some(range.start)
                .filter(|_| !range.is_empty())
                .or(at_insert);
            match reads(name) {
                1 => {}
                0 => {
                    return Err(self.refusal(
                        format!("the view's trigger does not write column \"{name}\", so its value would not be evaluated"),
                        offset,
                    ));
                }
                _ => {
                    return Err(self.refusal(
                        format!("the view's trigger reads column \"{name}\" more than once"),
                        offset,
                    ));
                }
            }
        }
        for column in &self.mapping().columns {
            if column.default.is_some()
                && !listed.iter().any(|(n, _)| *n == column.name)
                && reads(&column.name) > 1
            {
                return Err(self.refusal(
                    format!(
                        "the view's trigger reads column \"{}\", left to its default, more than once",
                        column.name
                    ),
                    at_insert,
                ));
            }
        }
        // Which listed column (by position) each base value is spliced around.
        let mut owners: Vec<Option<usize>> = Vec::with_capacity(written.len());
        for w in &written {
            let slots: Vec<usize> = w
                .pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::New(n) => listed.iter().position(|(l, _)| l == n),
                    _ => None,
                })
                .collect();
            if slots.len() > 1 {
                return Err(self.refusal(
                    format!(
                        "the view's trigger computes base column \"{}\" from more than one listed column",
                        w.base_column
                    ),
                    at_insert,
                ));
            }
            owners.push(slots.first().copied());
        }
        // Renders a base value, with the listed column at `slot` split out (prefix, suffix).
        let render = |w: &Written, slot: Option<&str>| -> Result<(String, String), Refusal> {
            let (mut before, mut after) = (String::new(), String::new());
            let mut split = false;
            for piece in &w.pieces {
                let out = if split { &mut after } else { &mut before };
                match piece {
                    Piece::Text(text) => out.push_str(text),
                    Piece::New(name) if Some(name.as_str()) == slot => split = true,
                    Piece::New(name) => out.push_str(&default_of(self.column(name, at_insert)?)?),
                }
            }
            Ok((before, after))
        };
        let mut columns = Vec::with_capacity(written.len());
        let mut rest = Vec::new();
        for (slot, (name, _)) in listed.iter().enumerate() {
            if let Some(w) = owners
                .iter()
                .position(|o| *o == Some(slot))
                .map(|i| &written[i])
            {
                columns.push(w.base_column.clone());
            } else {
                return Err(self.refusal(
                    format!("the view's trigger does not write column \"{name}\""),
                    at_insert,
                ));
            }
        }
        for (w, owner) in written.iter().zip(&owners) {
            if owner.is_none() {
                columns.push(w.base_column.clone());
                rest.push(render(w, None)?.0);
            }
        }
        let Some((items, expressions, close)) = row_values else {
            edits.push(Edit {
                range: scan.tokens[first + 1].start..scan.tokens[values_token].end,
                text: format!(
                    "({}) VALUES ({})",
                    join(columns.iter().map(|c| quote_identifier(c))),
                    rest.join(", ")
                ),
                relation: false,
            });
            return Ok(());
        };
        write_list(edits, &columns);
        for (slot, ((value, expr), (name, _))) in
            items.iter().zip(expressions).zip(&listed).enumerate()
        {
            let column = self.column(name, at_insert)?;
            let Some(w) = owners
                .iter()
                .position(|o| *o == Some(slot))
                .map(|i| &written[i])
            else {
                return Err(cannot_locate());
            };
            let (before, after) = render(w, Some(name))?;
            let (start, end) = (
                scan.tokens[value.start].start,
                scan.tokens[value.end - 1].end,
            );
            if scan.is_default(value) {
                edits.push(Edit {
                    range: start..end,
                    text: format!("{before}{}{after}", default_of(column)?),
                    relation: false,
                });
                continue;
            }
            edits.push(insertion(start, format!("{before}CAST(")));
            self.map_expression(expr, resolve, edits)?;
            edits.push(insertion(
                end,
                format!(" AS {}){after}", self.type_of(column, Some(start))?),
            ));
        }
        if !rest.is_empty() {
            edits.push(insertion(
                scan.tokens[close].start,
                rest.iter().map(|v| format!(", {v}")).collect(),
            ));
        }
        Ok(())
    }
}
