//! COPY's references: `COPY t TO` reads through the version's view with a query; `COPY t
//! FROM` writes through the view, or, where the view is auto-updatable (Postgres cannot copy
//! into it), into the base table with the view's columns mapped.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Ident, ObjectName, Spanned,
};

use super::super::identifier::{fold_identifier, quote_identifier};
use super::super::lexer::{self, Kind};
use super::super::refusal::{self, Refusal};
use super::super::splice::Edit;
use super::super::targets::{BaseWrite, ViewTarget};
use super::Collector;

/// A COPY statement's options that name columns (`FORCE_NOT_NULL`, `FORCE_NULL`, and the
/// pre-9.0 `FORCE NOT NULL`).
pub(super) fn copy_option_columns<'s>(
    options: &'s [CopyOption],
    legacy_options: &'s [CopyLegacyOption],
) -> impl Iterator<Item = &'s Ident> {
    let modern = options.iter().flat_map(|option| match option {
        CopyOption::ForceNotNull(columns) | CopyOption::ForceNull(columns) => columns.as_slice(),
        _ => &[],
    });
    let legacy = legacy_options.iter().flat_map(|option| match option {
        CopyLegacyOption::Csv(csv) => csv
            .iter()
            .flat_map(|option| match option {
                CopyLegacyCsvOption::ForceNotNull(columns) => columns.as_slice(),
                _ => &[],
            })
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    });
    modern.chain(legacy)
}

/// Just past the `)` that closes a column list whose last name ends at `from`: the next
/// token that is not a comment, which must be that `)`. Found by tokens, never by searching
/// the text: a `)` inside a comment is no parenthesis (the thirtieth red-team pass ended the
/// list there and the rewrite cut the comment open).
fn closing_parenthesis(sql: &str, from: usize) -> Option<usize> {
    let rest = sql.get(from..)?;
    let mut tokens = Vec::new();
    lexer::lex(rest, &mut tokens)?;
    let next = tokens.iter().find(|token| token.kind != Kind::Comment)?;
    (rest.get(next.start..next.end) == Some(")")).then_some(from + next.end)
}

impl Collector<'_> {
    /// Refuses the statement for naming `column`, which the version's `table` does not have:
    /// 42703, as Postgres tells a COPY naming a column its table lacks (and as `COPY … TO`,
    /// which reads through the view, is told).
    fn refuse_undefined_column(&mut self, column: &str, table: &str, offset: Option<usize>) {
        let reason = refusal::missing_column(column, table, &self.targets.version);
        self.refusal
            .get_or_insert(Refusal::undefined_column(reason, offset));
    }

    /// `COPY t [(cols)] TO ...` reads through the view with a query. `COPY t FROM` writes
    /// through the view where it has an INSTEAD OF INSERT trigger (Postgres runs it for each
    /// row); into an auto-updatable view, which Postgres cannot copy to, it writes the base
    /// table with the view's columns mapped (`copy_into_base`), where the catalog recorded the
    /// mapping (otherwise through the view, and Postgres says it cannot).
    pub(super) fn copy(
        &mut self,
        table_name: &ObjectName,
        columns: &[Ident],
        to: bool,
        force_columns: Vec<&Ident>,
    ) {
        let Some((target, _)) = self.resolve(table_name) else {
            return;
        };
        let Some(name_range) = self.index.range(table_name.span()) else {
            self.unlocatable = true;
            return;
        };
        let view = self.targets.view_reference(target);
        if !to
            && let Some(write) = self.targets.base_write(target)
            && !write.mapping.trigger_backed
        {
            self.copy_into_base(target, write, name_range, columns, force_columns);
            return;
        }
        if !to {
            self.edits.push(Edit {
                range: name_range,
                text: view,
                relation: true,
            });
            return;
        }
        let mut end = name_range.end;
        let mut selected = "*".to_owned();
        if let Some(last) = columns.last() {
            let close = self
                .index
                .range(last.span)
                .and_then(|r| closing_parenthesis(self.sql, r.end));
            let Some(close) = close else {
                self.unlocatable = true;
                return;
            };
            end = close;
            selected = columns
                .iter()
                .filter_map(|c| self.index.range(c.span).map(|r| self.sql[r].to_owned()))
                .collect::<Vec<_>>()
                .join(", ");
        }
        self.edits.push(Edit {
            range: name_range.start..end,
            text: format!("(SELECT {selected} FROM {view})"),
            relation: true,
        });
    }

    /// The column list's end: just past the `)` after its last column, or the name's end.
    fn column_list_end(&mut self, name_end: usize, columns: &[Ident]) -> Option<usize> {
        let Some(last) = columns.last() else {
            return Some(name_end);
        };
        let close = self
            .index
            .range(last.span)
            .and_then(|r| closing_parenthesis(self.sql, r.end));
        if close.is_none() {
            self.unlocatable = true;
        }
        close
    }

    /// `COPY t [(cols)] FROM …` through an auto-updatable view: `COPY base (base cols) FROM …`.
    /// Exact when every column it writes is a view column shown as a base column (plain or
    /// renamed; always so in an auto-updatable view), none is an identity column `GENERATED
    /// ALWAYS` (an INSERT through the view refuses a value for it, a COPY would store it), and
    /// every view column it leaves out gets the base column's default (an INSERT through the
    /// view would apply the view's own default). No column list means the view's columns in
    /// the view's order. `FORCE_NOT_NULL` / `FORCE_NULL` name the base columns too.
    fn copy_into_base(
        &mut self,
        target: &ViewTarget,
        write: &BaseWrite,
        name_range: std::ops::Range<usize>,
        columns: &[Ident],
        force_columns: Vec<&Ident>,
    ) {
        let mapping = &write.mapping;
        let table = &target.table.name;
        let version = &self.targets.version;
        let Some(end) = self.column_list_end(name_range.end, columns) else {
            return;
        };
        let listed: Vec<(String, Option<usize>)> = if columns.is_empty() {
            mapping
                .columns
                .iter()
                .map(|c| (c.name.clone(), None))
                .collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    let offset = self.index.range(c.span).map(|r| r.start);
                    (fold_identifier(&c.value, c.quote_style.is_some()), offset)
                })
                .collect()
        };
        let mut base_columns = Vec::with_capacity(listed.len());
        for (name, offset) in &listed {
            let Some(column) = mapping.column(name) else {
                return self.refuse_undefined_column(
                    name,
                    table,
                    offset.or(Some(name_range.start)),
                );
            };
            let Some(base) = &column.base_column else {
                return self.refuse(
                    format!("COPY … FROM cannot write column \"{name}\" of \"{table}\", an expression at version {version}"),
                    offset.or(Some(name_range.start)),
                );
            };
            if column.base_identity_always {
                return self.refuse(
                    format!("COPY … FROM would write column \"{name}\" of \"{table}\", an identity column GENERATED ALWAYS, which an insert through version {version} may not; leave it out of the column list"),
                    offset.or(Some(name_range.start)),
                );
            }
            base_columns.push(quote_identifier(base));
        }
        if let Some(omitted) = mapping.columns.iter().find(|column| {
            !listed.iter().any(|(name, _)| *name == column.name) && !column.base_default_applies()
        }) {
            return self.refuse(
                format!(
                    "COPY … FROM leaves out column \"{}\" of \"{table}\", whose default at version {version} ({}) is not the base table's, and viewgate copies into the base table; list the column and give its values",
                    omitted.name,
                    omitted.default.as_deref().unwrap_or_default()
                ),
                Some(name_range.start),
            );
        }
        for ident in force_columns {
            let name = fold_identifier(&ident.value, ident.quote_style.is_some());
            let Some(range) = self.index.range(ident.span) else {
                self.unlocatable = true;
                return;
            };
            let Some(base) = mapping.column(&name).and_then(|c| c.base_column.as_deref()) else {
                return self.refuse_undefined_column(&name, table, Some(range.start));
            };
            self.edits.push(Edit {
                range,
                text: quote_identifier(base),
                relation: false,
            });
        }
        self.edits.push(Edit {
            range: name_range.start..end,
            text: format!(
                "{}.{} ({})",
                quote_identifier(&write.base.schema),
                quote_identifier(&write.base.name),
                base_columns.join(", ")
            ),
            relation: true,
        });
    }
}
