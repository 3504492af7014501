//! `MERGE` into a version's view, as one MERGE on the base table.
//!
//! PostgreSQL before 17 cannot MERGE into any view, so where the catalog recorded how the
//! version's view maps onto its base table, the rewriter sends the MERGE to the base table,
//! written so that its effect is what MERGE on the view would do (as PostgreSQL 17 runs it):
//!
//! ```sql
//! MERGE INTO public.t AS t USING <source, as written> ON <mapped>
//! WHEN MATCHED AND <mapped> THEN UPDATE SET <base column> = <value>, …    -- auto-updatable
//! WHEN MATCHED THEN UPDATE SET (<the trigger's UPDATE columns>) =         -- trigger-backed
//!     (SELECT <the trigger's UPDATE values> FROM (SELECT CAST(<value> AS <type>) AS c, …,
//!      <the view's read of the other columns>) AS new, (SELECT <reads>) AS old)
//! WHEN MATCHED THEN DELETE | DO NOTHING
//! WHEN NOT MATCHED THEN INSERT (<base columns>) VALUES (<values>)
//! ```
//!
//! References to the target row (in ON, the WHEN conditions, SET values and INSERT values) are
//! the view's reads of its columns over the base row (`base_row.rs`): the base column of a
//! plain or renamed column, the spec's expression of an expression column; a column the
//! version does not have is refused, never read from the base table. An unqualified name is
//! the target's only where the source's columns are known (a subquery or VALUES with named
//! columns, an alias with a column list, the managed table itself) and do not include it;
//! otherwise it must be qualified. UPDATE SET and INSERT lists name base columns: through an
//! auto-updatable view the columns the view shows, through a trigger-backed view the base
//! columns its trigger writes, from the trigger's own expressions over `NEW` (and `OLD`).
//! INSERT leaves the view's defaults to the columns it omits (and to `DEFAULT`). In a
//! trigger-backed INSERT each listed value is spliced once, in place, into the one base value
//! the trigger computes from it (cast to the view column's type), so it is evaluated once, as
//! the trigger would see it; a trigger that reads a listed column twice, or computes one base
//! column from two listed ones, is refused. What cannot be written exactly is refused with a
//! reason: subqueries in the mapped clauses, RETURNING, `DEFAULT` in SET, `WHEN NOT MATCHED BY
//! SOURCE`, a SET of several columns at once, whole-row references to the target.
//!
//! Every edit inserts or replaces text between the client's tokens and never copies the
//! client's constants, so the shape cache can apply it to statements with other constants.

use std::ops::Range;

use sqlparser::ast::{
    Ident, Merge, MergeAction, MergeClauseKind, MergeInsertExpr, MergeInsertKind, MergeUpdateKind,
    ObjectNamePart,
};

use super::base_row::{BaseRow, Resolution, RowName, insertion, join};
use super::identifier::{fold_identifier, quote_identifier};
use super::refusal::Refusal;
use super::splice::Edit;
use super::statement_scan::Scan;
use crate::model::MappedColumn;

#[path = "merge_source.rs"]
mod source;
#[path = "merge_trigger.rs"]
mod trigger;

pub use source::Source;
use trigger::{Piece, Written};

impl BaseRow<'_> {
    /// The edits for `merge`, whose target's name spans `name_range` and is written
    /// `written`, with `alias` if the client gave one, reading from `source`.
    pub fn merge(
        &self,
        merge: &Merge,
        name_range: Range<usize>,
        written: &str,
        alias: Option<&sqlparser::ast::TableAlias>,
        source: &Source,
    ) -> Result<Vec<Edit>, Refusal> {
        let at_name = Some(name_range.start);
        self.check_pinned(at_name)?;
        if alias.is_some_and(|a| !a.columns.is_empty()) {
            return Err(self.refusal("a column list on the target's alias", at_name));
        }
        if merge.output.is_some() {
            return Err(self.refusal("RETURNING (MERGE … RETURNING is PostgreSQL 17's)", at_name));
        }
        let row = self.row_name(alias.map(|a| &a.name), written);
        if row.text.is_empty() {
            return Err(self.refusal("the target's alias could not be located", at_name));
        }
        let trigger_backed = self.mapping().trigger_backed;
        if trigger_backed {
            self.check_row_name(&row, at_name)?;
        }
        if trigger_backed && (self.mapping().update.is_empty() || self.mapping().insert.is_empty())
        {
            return Err(self.refusal(
                "the catalog has no write mapping for the view; run viewgate views apply again",
                at_name,
            ));
        }
        let tokens = self.significant_tokens(at_name)?;
        let scan = Scan {
            sql: self.sql,
            tokens: &tokens,
        };
        let resolve = |qualifiers: &[&Ident], column: &Ident| {
            self.merge_resolution(qualifiers, column, &row, source)
        };
        let resolve_not_matched = |qualifiers: &[&Ident], column: &Ident| {
            self.not_matched_resolution(qualifiers, column, &row, source)
        };
        let mut edits = vec![Edit {
            range: name_range,
            text: match alias {
                Some(_) => self.base(),
                None => format!("{} AS {}", self.base(), row.text),
            },
            relation: true,
        }];
        self.map_expression(&merge.on, &resolve, &mut edits)?;
        let mut updates = 0;
        for clause in &merge.clauses {
            let at_when = self.index.range(clause.when_token.0.span).map(|r| r.start);
            if clause.clause_kind == MergeClauseKind::NotMatchedBySource {
                return Err(self.refusal("WHEN NOT MATCHED BY SOURCE (PostgreSQL 17's)", at_when));
            }
            let resolve: &dyn Fn(&[&Ident], &Ident) -> Resolution = match clause.clause_kind {
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => {
                    &resolve_not_matched
                }
                _ => &resolve,
            };
            if let Some(predicate) = &clause.predicate {
                self.map_expression(predicate, resolve, &mut edits)?;
            }
            match &clause.action {
                MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
                MergeAction::Update(update) => {
                    let at_update = self
                        .index
                        .range(update.update_token.0.span)
                        .map(|r| r.start);
                    let MergeUpdateKind::Set(assignments) = &update.kind else {
                        return Err(self.refusal("UPDATE SET *", at_update));
                    };
                    if update.update_predicate.is_some() || update.delete_predicate.is_some() {
                        return Err(self.refusal("this UPDATE form", at_update));
                    }
                    let segments = at_update
                        .and_then(|at| scan.after(at))
                        .and_then(|i| scan.merge_set_list(i))
                        .filter(|s| s.len() == assignments.len())
                        .ok_or_else(|| {
                            self.refusal("the SET list could not be located", at_update)
                        })?;
                    let set =
                        self.set_columns(&scan, assignments, &segments, resolve, &mut edits)?;
                    updates += 1;
                    if trigger_backed && updates == 1 {
                        self.trigger_update(&scan, &set, &row, &mut edits)?;
                    } else if trigger_backed {
                        // PostgreSQL 15 crashes on a correlated multi-column assignment in
                        // a MERGE's second UPDATE action: one sub-select per base column.
                        self.trigger_update_per_column(&scan, &set, &row, at_update, &mut edits)?;
                    } else {
                        for (column, segment) in &set {
                            let at = scan.tokens[segment.target].start;
                            let base = self.base_column(column, Some(at))?;
                            edits.push(Edit {
                                range: at..scan.tokens[segment.target].end,
                                text: quote_identifier(base),
                                relation: false,
                            });
                        }
                    }
                }
                MergeAction::Insert(insert) => {
                    self.insert(&scan, insert, resolve, &mut edits)?;
                }
            }
        }
        Ok(edits)
    }

    /// `schema.table.col` whose table is written like the row's name, not taken for the row by
    /// `names_row`: the rewriter may drop `schema.` (`references::schema_qualified`), leaving
    /// the row's name (the thirty-fourth red-team pass read the base row so). It is the row's
    /// when the row is aliased; unaliased, only an alias tells it from another schema's table.
    fn named_like_the_row(&self, row: &RowName, offset: Option<usize>) -> Resolution {
        match row.aliased {
            true => Ok(Some(row.text.clone())),
            false => Err(self.refusal(
                "a column qualified by another schema's table of the target's name; give the target or that table an alias",
                offset,
            )),
        }
    }

    /// How MERGE's clauses read a column reference: a name qualified by the target row is
    /// the target's; an unqualified one is the target's when it is a column of the view and
    /// not of the source (which must then be known); anything else is left to Postgres.
    fn merge_resolution(
        &self,
        qualifiers: &[&Ident],
        column: &Ident,
        row: &RowName,
        source: &Source,
    ) -> Resolution {
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        let offset = self.reference_offset(qualifiers, column);
        match qualifiers {
            [] => {}
            _ if self.names_row(qualifiers, row) => return Ok(Some(row.text.clone())),
            [first, ..] if qualifiers.len() > 1 && fold(first) == row.folded => {
                return Err(self.refusal(
                    "a field of a target column written without parentheses; write (t.col).field",
                    offset,
                ));
            }
            [.., table] if qualifiers.len() > 1 && fold(table) == row.folded => {
                return self.named_like_the_row(row, offset);
            }
            _ => return Ok(None),
        }
        let name = fold(column);
        let in_view = self.mapping().column(&name).is_some();
        let in_source = source
            .columns
            .as_ref()
            .map(|columns| columns.contains(&name));
        match (in_view, in_source) {
            (true, Some(false)) => Ok(Some(row.text.clone())),
            (false, Some(true)) => Ok(None),
            (true, Some(true)) => Err(self.refusal(
                format!("column reference \"{name}\" is ambiguous (the target's and the source's)"),
                offset,
            )),
            _ if name == row.folded => Err(self.refusal(
                "a whole-row reference to the target (it would read the base table's row)",
                offset,
            )),
            // The source's name alone (`to_jsonb(s)`) stays refused here: Postgres reads a
            // column of the target first, and the MERGE goes to the base table, whose hidden
            // columns the mapping does not list (a source called `model_type` would read
            // the hidden column). `(s.*)` says it unambiguously.
            (false, Some(false)) => Err(self.refusal(
                format!(
                    "column \"{name}\" does not exist at version {} (nor in the source)",
                    self.version
                ),
                offset,
            )),
            (_, None) => Err(self.refusal(
                format!(
                    "the unqualified column reference \"{name}\", where viewgate does not know the source's columns (qualify it with the target's or the source's name)"
                ),
                offset,
            )),
        }
    }

    /// How a `WHEN NOT MATCHED` clause reads a column reference. Postgres hides the target
    /// there (`setNamespaceForMergeWhen`): an unqualified name is the source's, and the
    /// target's row cannot be named. So a name the source is known to have is left to
    /// Postgres; a name it does not have, or may not, is refused here, since Postgres's own
    /// error would hint at a base column of that name ("There is a column named … in table
    /// …, but it cannot be referenced from this part of the query").
    fn not_matched_resolution(
        &self,
        qualifiers: &[&Ident],
        column: &Ident,
        row: &RowName,
        source: &Source,
    ) -> Resolution {
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        let offset = self.reference_offset(qualifiers, column);
        if !qualifiers.is_empty() {
            return match self.names_row(qualifiers, row)
                || qualifiers.first().is_some_and(|first| fold(first) == row.folded)
                || qualifiers.last().is_some_and(|last| fold(last) == row.folded)
            {
                true => Err(self.refusal(
                    "a reference to the target in WHEN NOT MATCHED (only the source is visible there)",
                    offset,
                )),
                false => Ok(None),
            };
        }
        let name = fold(column);
        if source.name.as_deref() == Some(name.as_str()) {
            // The source's whole row, or its column of that name: the target is not in
            // scope here, so the source's either way (forty-second red-team pass).
            return Ok(None);
        }
        match source.columns.as_ref().map(|c| c.contains(&name)) {
            Some(true) => Ok(None),
            Some(false) => Err(self.refusal(
                format!(
                    "column \"{name}\" is not the source's (WHEN NOT MATCHED sees only the source)"
                ),
                offset,
            )),
            None => Err(self.refusal(
                format!(
                    "the unqualified column reference \"{name}\", where viewgate does not know the source's columns (qualify it with the source's name)"
                ),
                offset,
            )),
        }
    }

    /// Where a column reference starts: its first qualifier, or the column.
    fn reference_offset(&self, qualifiers: &[&Ident], column: &Ident) -> Option<usize> {
        qualifiers
            .first()
            .and_then(|first| self.offset(first))
            .or(self.offset(column))
    }

    /// The base column an auto-updatable view's column shows.
    fn base_column<'m>(
        &self,
        column: &'m MappedColumn,
        offset: Option<usize>,
    ) -> Result<&'m str, Refusal> {
        column.base_column.as_deref().ok_or_else(|| {
            self.refusal(
                format!(
                    "column \"{}\" is an expression at version {}",
                    column.name, self.version
                ),
                offset,
            )
        })
    }

    /// `WHEN NOT MATCHED THEN INSERT [(cols)] VALUES (…)` or `INSERT DEFAULT VALUES`.
    fn insert(
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
