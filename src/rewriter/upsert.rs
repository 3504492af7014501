//! `INSERT … ON CONFLICT` through a trigger-backed view, as one upsert on the base table.
//!
//! Postgres cannot upsert through a view with an INSTEAD OF trigger: it infers a conflict
//! target from the view's unique indexes, which a view has none of (42P10), and `ON CONFLICT
//! DO NOTHING` without a target is silently ignored (the trigger's INSERT then raises 23505).
//! So the rewriter sends the statement to the base table, emulating the trigger exactly:
//!
//! ```sql
//! INSERT INTO public.t AS t (<the trigger's INSERT columns>)
//! SELECT <the trigger's INSERT values, over NEW>
//! FROM (SELECT CAST(viewgate_input.c AS <type>) AS c, …,             -- listed columns
//!              CAST(<the view's default function>() AS <type>) AS d, …  -- the others
//!       FROM (<the client's VALUES or SELECT>) AS viewgate_input (c, …)) AS new
//! ON CONFLICT (<base columns>) DO UPDATE SET (<the trigger's UPDATE columns>) =
//!     (SELECT <the trigger's UPDATE values, over NEW and OLD>
//!      FROM (SELECT CAST(<client's value> AS <type>) AS c, …, <read of the others>) AS new,
//!           (SELECT <read of every column>) AS old)
//! WHERE … RETURNING …
//! ```
//!
//! The input rows become a view-shaped derived table aliased `new`; a write expression is its
//! mapping function over `ROW(new.…)::<view>` (and `old`), which the view's schema holds with
//! a pinned search_path (`control::views::mapping_functions`); omitted columns (and `DEFAULT`
//! in VALUES) take the view's defaults, by their functions, as an INSERT through the view
//! would. Values are cast to the view's column types (in VALUES too, so parameters get the
//! view's types), spelled so that no type name is looked up in the client's temporary
//! schema. References to the target row and `EXCLUDED.col` in SET, WHERE and RETURNING are
//! mapped through the view's reads (a plain or renamed column is the base column, an
//! expression column its read function over that row), RETURNING `*` is the view's columns
//! under their names, and a bare column keeps its name. One statement on the base table: atomic, and as safe under
//! concurrency as any upsert. Everything it cannot map exactly is refused with a reason
//! ([`Refusal`]): subqueries in the mapped clauses (their scoping is not tracked), columns the
//! version does not have, a conflict target on an expression column, `DEFAULT` in SET,
//! `DEFAULT VALUES`, `INSERT … SELECT` without a column list.
//!
//! Every edit only inserts or replaces text between the client's tokens and never copies the
//! client's text, so the shape cache can apply it to statements with other constants.

use std::ops::Range;

use sqlparser::ast::{
    ConflictTarget, Expr, Ident, Insert, ObjectNamePart, OnConflict, OnConflictAction, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr,
};

use super::base_row::{
    BaseRow, NEW_ALIAS, OldRow, Resolution, RowName, Statement, insertion, join,
};
use super::identifier::{fold_identifier, quote_identifier};
use super::refusal::Refusal;
use super::splice::{Edit, TextIndex};
use super::statement_scan::Scan;
use super::targets::{BaseWrite, ViewTarget};

/// The derived table of the client's rows.
const INPUT_ALIAS: &str = "viewgate_input";
/// The proposed row of an upsert.
const EXCLUDED: &str = "excluded";

/// One upsert through a trigger-backed view.
pub struct Upsert<'a> {
    pub sql: &'a str,
    pub index: &'a TextIndex<'a>,
    pub target: &'a ViewTarget,
    pub write: &'a BaseWrite,
    pub version: &'a str,
}

impl Upsert<'_> {
    fn base_row(&self) -> BaseRow<'_> {
        BaseRow {
            sql: self.sql,
            index: self.index,
            target: self.target,
            write: self.write,
            version: self.version,
            statement: Statement::Upsert,
        }
    }

    /// The edits for `insert`, whose table name spans `name_range` and is written `written`.
    pub fn edits(
        &self,
        insert: &Insert,
        conflict: &OnConflict,
        name_range: Range<usize>,
        written: &str,
    ) -> Result<Vec<Edit>, Refusal> {
        self.base_row()
            .upsert(insert, conflict, name_range, written)
    }
}

impl BaseRow<'_> {
    /// How an upsert's clauses read a column reference: unqualified or naming the target row,
    /// the view's read over the target row; `EXCLUDED.col`, over the proposed row; anything
    /// else is another relation's, refused.
    fn upsert_resolution(&self, qualifiers: &[&Ident], row: &RowName) -> Resolution {
        let fold = |i: &Ident| fold_identifier(&i.value, i.quote_style.is_some());
        match qualifiers {
            [] => Ok(Some(row.text.clone())),
            [q] if fold(q) == EXCLUDED => Ok(Some(EXCLUDED.to_owned())),
            _ if self.names_row(qualifiers, row) => Ok(Some(row.text.clone())),
            _ => Err(self.refusal(
                "a reference to another relation's column",
                qualifiers.first().and_then(|i| self.offset(i)),
            )),
        }
    }

    /// The upsert's edits: `insert`'s table name spans `name_range` and is written `written`.
    fn upsert(
        &self,
        insert: &Insert,
        conflict: &OnConflict,
        name_range: Range<usize>,
        written: &str,
    ) -> Result<Vec<Edit>, Refusal> {
        let at_name = Some(name_range.start);
        self.check_pinned(at_name)?;
        // A trigger-backed view writes at least its key columns on INSERT and UPDATE.
        if self.mapping().update.is_empty() || self.mapping().insert.is_empty() {
            return Err(self.refusal(
                "the catalog has no write mapping for the view; run viewgate views apply again",
                at_name,
            ));
        }
        if !insert.assignments.is_empty() || insert.partitioned.is_some() || insert.or.is_some() {
            return Err(self.refusal("this INSERT form", at_name));
        }
        let row = self.row_name(insert.table_alias.as_ref().map(|a| &a.alias), written);
        if row.text.is_empty() {
            return Err(self.refusal("the table's alias could not be located", at_name));
        }
        self.check_row_name(&row, at_name)?;
        let tokens = self.significant_tokens(at_name)?;
        let scan = Scan {
            sql: self.sql,
            tokens: &tokens,
        };

        // Where the client's source rows are: after the column list (or alias, or name), up to
        // `ON CONFLICT` at the statement's own level.
        let mut head_end = match &insert.table_alias {
            Some(alias) => self.index.range(alias.alias.span).map(|r| r.end),
            None => Some(name_range.end),
        }
        .ok_or_else(|| self.refusal("the table's alias could not be located", at_name))?;
        let mut listed = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            let [ObjectNamePart::Identifier(ident)] = column.0.as_slice() else {
                return Err(self.refusal("a qualified column in the column list", at_name));
            };
            let range = self
                .index
                .range(ident.span)
                .ok_or_else(|| self.refusal("a column could not be located", at_name))?;
            head_end = head_end.max(range.end);
            let name = fold_identifier(&ident.value, ident.quote_style.is_some());
            self.column(&name, Some(range.start))?;
            if listed.contains(&name) {
                return Err(self.refusal(
                    format!("column \"{name}\" is listed twice"),
                    Some(range.start),
                ));
            }
            listed.push(name);
        }
        if !insert.columns.is_empty() {
            head_end = scan
                .after(head_end)
                .filter(|&i| scan.punct(i, ")"))
                .map(|i| tokens[i].end)
                .ok_or_else(|| self.refusal("the column list could not be located", at_name))?;
        }
        let Some(source) = &insert.source else {
            return Err(self.refusal("DEFAULT VALUES", at_name));
        };
        let first = scan
            .after(head_end)
            .ok_or_else(|| self.refusal("the rows could not be located", at_name))?;
        let on = scan
            .on_conflict(first)
            .ok_or_else(|| self.refusal("ON CONFLICT could not be located", at_name))?;
        if on == first {
            return Err(self.refusal("the rows could not be located", at_name));
        }
        let source_end = tokens[on - 1].end;
        let values =
            match &*source.body {
                SetExpr::Values(values)
                    if source.with.is_none()
                        && source.order_by.is_none()
                        && scan.word(first, "values") =>
                {
                    let rows = scan.rows(first + 1, on).filter(|rows| {
                        rows.len() == values.rows.len()
                            && rows
                                .iter()
                                .zip(&values.rows)
                                .all(|(r, v)| r.len() == v.len())
                    });
                    Some(rows.ok_or_else(|| {
                        self.refusal("the VALUES rows could not be located", at_name)
                    })?)
                }
                _ => None,
            };
        if listed.is_empty() {
            let Some(width) = values.as_ref().and_then(|rows| rows.first()).map(Vec::len) else {
                return Err(self.refusal(
                    "INSERT … SELECT without a column list; list the columns",
                    at_name,
                ));
            };
            if width > self.mapping().columns.len() {
                return Err(self.refusal("more values than the view has columns", at_name));
            }
            listed = self.mapping().columns[..width]
                .iter()
                .map(|c| c.name.clone())
                .collect();
        }

        let mut edits = Vec::new();
        // The head: the base table, the trigger's INSERT, the view-shaped `new` row.
        let base = self.base();
        let insert_columns = join(
            self.mapping()
                .insert
                .iter()
                .map(|a| quote_identifier(&a.base_column)),
        );
        let insert_values = join(
            self.mapping()
                .insert
                .iter()
                .map(|a| self.written_value(a, &row, OldRow::Null))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let mut new_row = Vec::with_capacity(self.mapping().columns.len());
        for column in &self.mapping().columns {
            let value = if listed.contains(&column.name) {
                format!("{INPUT_ALIAS}.{}", quote_identifier(&column.name))
            } else {
                self.default_value(column, at_name)?
            };
            new_row.push(format!(
                "CAST({value} AS {}) AS {}",
                self.type_of(column, at_name)?,
                quote_identifier(&column.name)
            ));
        }
        edits.push(Edit {
            range: name_range.start..head_end,
            text: format!(
                "{base} AS {} ({insert_columns}) SELECT {insert_values} FROM (SELECT {} FROM (",
                row.text,
                new_row.join(", ")
            ),
            relation: true,
        });
        // VALUES: each value cast to its column's type (so parameters get it), DEFAULT the
        // view's default.
        for row_values in values.iter().flatten() {
            for (value, name) in row_values.iter().zip(&listed) {
                let column = self.column(name, None)?;
                let type_name = self.type_of(column, Some(value.start))?;
                if scan.is_default(value) {
                    edits.push(Edit {
                        range: tokens[value.start].start..tokens[value.end - 1].end,
                        text: format!(
                            "CAST({} AS {type_name})",
                            self.default_value(column, Some(value.start))?
                        ),
                        relation: false,
                    });
                } else {
                    let (start, end) = (tokens[value.start].start, tokens[value.end - 1].end);
                    edits.push(insertion(start, "CAST(".into()));
                    edits.push(insertion(end, format!(" AS {type_name})")));
                }
            }
        }
        edits.push(insertion(
            source_end,
            format!(
                ") AS {INPUT_ALIAS} ({})) AS {NEW_ALIAS}",
                join(listed.iter().map(|c| quote_identifier(c)))
            ),
        ));

        // The conflict target names base columns.
        if let Some(ConflictTarget::Columns(columns)) = &conflict.conflict_target {
            for ident in columns {
                let offset = self.offset(ident);
                let name = fold_identifier(&ident.value, ident.quote_style.is_some());
                let column = self.column(&name, offset)?;
                let Some(base) = &column.base_column else {
                    return Err(self.refusal(
                        format!(
                            "conflict target column \"{name}\" is an expression at this version"
                        ),
                        offset,
                    ));
                };
                let range = self.index.range(ident.span).ok_or_else(|| {
                    self.refusal("a conflict target could not be located", offset)
                })?;
                edits.push(Edit {
                    range,
                    text: quote_identifier(base),
                    relation: false,
                });
            }
        }
        if let OnConflictAction::DoUpdate(update) = &conflict.action {
            self.do_update(&scan, on, &update.assignments, &row, &mut edits)?;
            if let Some(selection) = &update.selection {
                self.map_expression(
                    selection,
                    &|q, _| self.upsert_resolution(q, &row),
                    &mut edits,
                )?;
            }
        }
        for item in insert.returning.iter().flatten() {
            self.returning(item, &row, &mut edits)?;
        }
        Ok(edits)
    }

    /// `DO UPDATE SET c = x, …`: the trigger's UPDATE over a `new` row made of the client's
    /// values (in place, cast) and the current row's other columns, and an `old` row.
    fn do_update(
        &self,
        scan: &Scan,
        on: usize,
        assignments: &[sqlparser::ast::Assignment],
        row: &RowName,
        edits: &mut Vec<Edit>,
    ) -> Result<(), Refusal> {
        let at = |i: usize| scan.tokens.get(i).map(|t| t.start);
        let segments = scan
            .set_list(on)
            .filter(|s| s.len() == assignments.len())
            .ok_or_else(|| self.refusal("the SET list could not be located", at(on)))?;
        let resolve = |qualifiers: &[&Ident], _: &Ident| self.upsert_resolution(qualifiers, row);
        let set = self.set_columns(scan, assignments, &segments, &resolve, edits)?;
        self.trigger_update(scan, &set, row, edits)
    }

    /// A RETURNING item, over the base row: `*` and `t.*` as the view's columns, a bare column
    /// under its view name, any other expression mapped.
    fn returning(
        &self,
        item: &SelectItem,
        row: &RowName,
        edits: &mut Vec<Edit>,
    ) -> Result<(), Refusal> {
        let all = || -> Result<String, Refusal> {
            Ok(join(
                self.mapping()
                    .columns
                    .iter()
                    .map(|c| {
                        Ok(format!(
                            "{} AS {}",
                            self.read(c, &row.text)?,
                            quote_identifier(&c.name)
                        ))
                    })
                    .collect::<Result<Vec<_>, Refusal>>()?,
            ))
        };
        match item {
            SelectItem::Wildcard(options) => {
                let range = self
                    .index
                    .range(options.wildcard_token.0.span)
                    .ok_or_else(|| self.refusal("RETURNING * could not be located", None))?;
                edits.push(Edit {
                    range,
                    text: all()?,
                    relation: false,
                });
            }
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) => {
                let idents: Option<Vec<&Ident>> =
                    name.0.iter().map(ObjectNamePart::as_ident).collect();
                let start = name
                    .0
                    .first()
                    .and_then(|p| p.as_ident())
                    .and_then(|i| self.offset(i));
                let names_row = idents.is_some_and(|idents| self.names_row(&idents, row));
                let end = self
                    .index
                    .range(options.wildcard_token.0.span)
                    .map(|r| r.end);
                let (Some(start), Some(end), true) = (start, end, names_row) else {
                    return Err(self.refusal("RETURNING of another relation's columns", start));
                };
                edits.push(Edit {
                    range: start..end,
                    text: all()?,
                    relation: false,
                });
            }
            SelectItem::UnnamedExpr(expr @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_))) => {
                let before = edits.len();
                self.map_expression(expr, &|q, _| self.upsert_resolution(q, row), edits)?;
                let column = match expr {
                    Expr::Identifier(ident) => Some(ident),
                    Expr::CompoundIdentifier(parts) => parts.last(),
                    _ => None,
                };
                if let (Some(edit), Some(ident)) = (edits.get_mut(before), column) {
                    edit.text.push_str(" AS ");
                    edit.text.push_str(&quote_identifier(&fold_identifier(
                        &ident.value,
                        ident.quote_style.is_some(),
                    )));
                }
            }
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                self.map_expression(expr, &|q, _| self.upsert_resolution(q, row), edits)?;
            }
            SelectItem::QualifiedWildcard(..) | SelectItem::ExprWithAliases { .. } => {
                return Err(self.refusal("this RETURNING item", None));
            }
        }
        Ok(())
    }
}
