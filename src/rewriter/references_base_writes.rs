//! Writes the rewriter sends to the base table rather than through the version's view:
//! `INSERT … ON CONFLICT` through a trigger-backed view (`upsert.rs`) and `MERGE` (`merge.rs`),
//! where the catalog recorded the view's mapping.

use sqlparser::ast::{OnInsert, Spanned, TableFactor, TableObject};

use super::super::base_row::{BaseRow, Statement as Written};
use super::super::merge::Source;
use super::super::upsert::Upsert;
use super::Collector;

impl Collector<'_> {
    /// Whether `range` overlaps an upsert's edits (which map such references themselves).
    pub(super) fn in_upsert(&self, range: std::ops::Range<usize>) -> bool {
        self.upsert_ranges.iter().any(|r| {
            r.start < range.end.max(range.start + 1) && range.start < r.end.max(r.start + 1)
        })
    }

    /// `INSERT … ON CONFLICT` through a trigger-backed view with a recorded mapping: the
    /// upsert on the base table (`upsert.rs`). `false` when it is not such an insert.
    pub(super) fn upsert(&mut self, insert: &sqlparser::ast::Insert) -> bool {
        let (TableObject::TableName(name), Some(OnInsert::OnConflict(conflict))) =
            (&insert.table, &insert.on)
        else {
            return false;
        };
        let Some((target, written)) = self.resolve_in(name, false) else {
            return false;
        };
        let Some(write) = self.targets.base_write(target) else {
            return false;
        };
        if !write.mapping.trigger_backed {
            // Through the view, as written: only a constraint's name needs its columns.
            let target = target.clone();
            self.constraint_as_columns(&target, conflict);
            return false;
        }
        let Some(name_range) = self.index.range(name.span()) else {
            self.unlocatable = true;
            return true;
        };
        let upsert = Upsert {
            sql: self.sql,
            index: self.index,
            target,
            write,
            version: &self.targets.version,
        };
        match upsert.edits(insert, conflict, name_range, written) {
            Ok(edits) => {
                self.upsert_ranges
                    .extend(edits.iter().map(|edit| edit.range.clone()));
                self.edits.extend(edits);
            }
            Err(refusal) => {
                self.refusal.get_or_insert(refusal);
            }
        }
        true
    }

    /// `MERGE` into a managed table whose view has a recorded mapping: one MERGE on the base
    /// table (`merge.rs`), since Postgres before 17 cannot MERGE into a view. `false` when it
    /// is not such a MERGE.
    pub(super) fn merge(&mut self, merge: &sqlparser::ast::Merge) -> bool {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &merge.table
        else {
            return false;
        };
        let Some((target, written)) = self.resolve_in(name, false) else {
            return false;
        };
        let written = written.to_owned();
        let Some(write) = self.targets.base_write(target) else {
            return false;
        };
        self.handled_factors
            .push(&merge.table as *const TableFactor as usize);
        let Some(name_range) = self.index.range(name.span()) else {
            self.unlocatable = true;
            return true;
        };
        let source = Source::of(&merge.source, &|name| {
            let (target, _) = self.resolve(name)?;
            let write = self.targets.base_write(target)?;
            Some(
                write
                    .mapping
                    .columns
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
            )
        });
        let base_row = BaseRow {
            sql: self.sql,
            index: self.index,
            target,
            write,
            version: &self.targets.version,
            statement: Written::Merge,
        };
        match base_row.merge(merge, name_range, &written, alias.as_ref(), &source) {
            Ok(edits) => {
                self.upsert_ranges.extend(
                    edits
                        .iter()
                        .filter(|edit| !edit.range.is_empty())
                        .map(|edit| edit.range.clone()),
                );
                self.edits.extend(edits);
            }
            Err(refusal) => {
                self.refusal.get_or_insert(refusal);
            }
        }
        true
    }
}
