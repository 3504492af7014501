//! A later migration that names what an earlier live one renames at its complete. A
//! migration's complete and rollback steps are recorded as SQL with the names of its day; the
//! earlier migration's contract renames columns and tables (a retyped column's stand-in into
//! place, `rename_column`, `rename_table`), after which those steps would name what is gone,
//! and the later migration could neither complete nor roll back (the forty-first red-team
//! pass changed a column's type twice in a chain). The earlier complete is refused while such
//! a later migration is live; and since migrations complete oldest first, that chain could
//! only move on by rolling the later one back, perhaps with clients at its version. So the
//! later migration is refused when it starts, naming the earlier one to complete first.

use super::derive::{MigrationPlan, Rename};
use super::error::MigrateError;
use super::state::{MigrationRecord, Phase};

/// What `earlier`'s complete renames that `later`'s recorded SQL still to run names, described
/// (`column _vg_v2_size of public.models to size`). A live migration's validation and index
/// steps have run; a backfilling one's have not.
pub fn renamed_and_named(
    earlier: &MigrationPlan,
    later: &MigrationPlan,
    later_phase: Phase,
) -> Option<String> {
    let still_to_run = match later_phase {
        Phase::Backfilling => vec![&later.validate, &later.concurrent, &later.referencing],
        _ => Vec::new(),
    };
    let texts: Vec<&str> = still_to_run
        .into_iter()
        .chain([
            &later.complete,
            &later.complete_concurrent,
            &later.rollback,
            &later.rollback_concurrent,
            &later.rollback_referencing,
        ])
        .flatten()
        .map(|step| step.sql.as_str())
        .collect();
    earlier.renames.iter().find_map(|rename| {
        let (name, described) = match rename {
            Rename::Column {
                schema,
                table,
                from,
                to,
            } => (from, format!("column {from} of {schema}.{table} to {to}")),
            Rename::Table { schema, from, to } => {
                (from, format!("table {schema}.{from} to {schema}.{to}"))
            }
            Rename::Constraint {
                schema,
                table,
                from,
                to,
            } => (
                from,
                format!("constraint {from} of {schema}.{table} to {to}"),
            ),
        };
        texts
            .iter()
            .any(|text| names_word(text, name))
            .then_some(described)
    })
}

/// Refuses `plan` (of the migration to `version`, about to start) if its SQL names what a live
/// migration in `current` renames at its complete.
pub fn refuse_naming_renamed(
    version: &str,
    plan: &MigrationPlan,
    current: &[MigrationRecord],
) -> Result<(), MigrateError> {
    for earlier in current.iter().filter(|record| record.phase == Phase::Live) {
        // Its validation and index steps run before it goes live, and the earlier complete
        // waits for that (refused while they would name the old name): its complete and
        // rollback steps are what would outlive the rename.
        if let Some(renamed) = renamed_and_named(&earlier.plan, plan, Phase::Live) {
            return Err(MigrateError::Refused {
                version: version.to_owned(),
                operation: "the file's operations".into(),
                problem: format!(
                    "the migration to {earlier} (live) renames {renamed} at its complete, and this migration's steps would name it: the migration to {earlier} could not complete while this one is live (only after rolling this one back). Complete the migration to {earlier} first (`viewgate migrate complete`), then start this one",
                    earlier = earlier.version
                ),
            });
        }
    }
    Ok(())
}

/// Whether `word` occurs in `text` as a whole identifier (not inside a longer one).
fn names_word(text: &str, word: &str) -> bool {
    let is_identifier = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_identifier) && !after.is_some_and(is_identifier)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_counts_only_as_a_whole_identifier() {
        assert!(names_word(
            "ALTER TABLE t DROP COLUMN \"_vg_v2_size\"",
            "_vg_v2_size"
        ));
        assert!(names_word("DROP COLUMN _vg_v2_size, x", "_vg_v2_size"));
        assert!(!names_word("DROP COLUMN _vg_v2_size2", "_vg_v2_size"));
        assert!(!names_word("DROP COLUMN x_vg_v2_size", "_vg_v2_size"));
    }
}
