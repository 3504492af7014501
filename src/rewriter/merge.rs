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

use sqlparser::ast::{Ident, Merge, MergeAction, MergeClauseKind, MergeUpdateKind};

use super::base_row::{BaseRow, Resolution, RowName};
use super::identifier::{fold_identifier, quote_identifier};
use super::refusal::Refusal;
use super::splice::Edit;
use super::statement_scan::Scan;
use crate::model::MappedColumn;

#[path = "merge_insert.rs"]
mod insert;
#[path = "merge_source.rs"]
mod source;
#[path = "merge_trigger.rs"]
mod trigger;

pub use source::Source;

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
            (false, Some(false)) => Err(Refusal::undefined_column(
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
            // Postgres: `column "x" does not exist` (42703), the target being out of scope.
            Some(false) => Err(Refusal::undefined_column(
                format!(
                    "column \"{name}\" does not exist (WHEN NOT MATCHED sees only the source, and \"{name}\" is not the source's)"
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
}
