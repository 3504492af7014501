//! `INSERT … ON CONFLICT ON CONSTRAINT name` through a view Postgres writes by itself. A view
//! has no constraints, so Postgres refuses the name there (42704: constraint … for table
//! "model_metadata_v1" does not exist), though it infers the same arbiter from the view's
//! columns. Where the proxy knows the constraint (a primary key or unique constraint of the
//! base table, not deferrable, whose every column the view shows: `catalog_read::
//! base_table_kin`, read again every `relation_refresh_interval`), the clause names its
//! columns instead, under the version's names: `ON CONFLICT ("id")`. Anything else is left as
//! written, for Postgres to answer. Through a trigger-backed view the upsert goes to the base
//! table (`upsert.rs`), where the constraint is found by its name.

use sqlparser::ast::{ConflictTarget, OnConflict, Spanned};

use super::super::identifier::{fold_identifier, quote_identifier};
use super::super::splice::Edit;
use super::super::targets::ViewTarget;
use super::Collector;

impl Collector<'_> {
    /// Names the key's columns in place of `ON CONSTRAINT name`, where `target`'s view shows
    /// them all.
    pub(super) fn constraint_as_columns(&mut self, target: &ViewTarget, conflict: &OnConflict) {
        let Some(ConflictTarget::OnConstraint(name)) = &conflict.conflict_target else {
            return;
        };
        let [part] = name.0.as_slice() else {
            return;
        };
        let Some(ident) = part.as_ident() else {
            return;
        };
        let constraint = fold_identifier(&ident.value, ident.quote_style.is_some());
        let Some(columns) = self.targets.constraint_key(&target.view, &constraint) else {
            return;
        };
        let Some(name_range) = self.index.range(name.span()) else {
            self.unlocatable = true;
            return;
        };
        // `ON CONSTRAINT` is the two tokens before the name.
        let tokens = self.index.tokens().ranges();
        let at = tokens.partition_point(|token| token.start < name_range.start);
        let word = |i: Option<usize>, word: &str| {
            i.and_then(|i| tokens.get(i))
                .and_then(|token| self.sql.get(token.clone()))
                .is_some_and(|text| text.eq_ignore_ascii_case(word))
        };
        if !(word(at.checked_sub(1), "constraint") && word(at.checked_sub(2), "on")) {
            self.unlocatable = true;
            return;
        }
        let listed: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
        self.edits.push(Edit {
            range: tokens[at - 2].start..name_range.end,
            text: format!("({})", listed.join(", ")),
            relation: false,
        });
    }
}
