//! What covers a replaced column, rebuilt on the column that replaces it. `alter_column`
//! through a new column drops the old column at `migrate complete`, and Postgres drops every
//! index and constraint on it along: a unique constraint, a check, a foreign key or an index
//! the application's queries rely on would vanish (red-team pass 41, finding 1). So each is
//! built again over the replacement under a name of the migration's own
//! (`_vg_<version>_<name>`), and the contract gives it back its old name: indexes and unique
//! constraints in [`indexes`], checks and foreign keys in [`constraints`]. What cannot be
//! rebuilt from the catalog alone is refused before any change, naming the object; primary
//! keys, exclusion constraints and foreign keys of other tables that reference the column
//! are refused by `preconditions.rs`.

mod constraints;
mod indexes;

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::derive::{MigrationPlan, NEW_COLUMN_PREFIX, Replaced, Step, fit_identifier};
use super::error::MigrateError;

/// Adds to `plan` the steps that rebuild, on each replacement column, the indexes and
/// constraints covering the column it replaces; refuses one that cannot be rebuilt so.
pub async fn rebuild_replaced(
    client: &impl GenericClient,
    plan: &mut MigrationPlan,
) -> Result<(), MigrateError> {
    let mut tables: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (position, replaced) in plan.replaced.iter().enumerate() {
        tables
            .entry((replaced.schema.clone(), replaced.table.clone()))
            .or_default()
            .push(position);
    }
    for ((schema, table), positions) in tables {
        let replaced: Vec<Replaced> = positions
            .iter()
            .map(|&position| plan.replaced[position].clone())
            .collect();
        let mut rebuilds = Vec::new();
        for index in indexes::covering_indexes(client, &schema, &table, &replaced).await? {
            if let Some(rebuild) = indexes::rebuild(plan, &schema, &table, &replaced, &index)? {
                let covered = replaced
                    .iter()
                    .filter(|old| index.names_column(&old.column))
                    .map(|old| old.column.clone())
                    .collect();
                rebuilds.push((index.name.clone(), covered, rebuild));
            }
        }
        for constraint in
            constraints::covering_constraints(client, &schema, &table, &replaced).await?
        {
            let rebuild = constraints::rebuild(plan, &schema, &table, &replaced, &constraint)?;
            rebuilds.push((constraint.name.clone(), constraint.columns.clone(), rebuild));
        }
        for (name, covered, rebuild) in rebuilds {
            for &position in &positions {
                if covered.contains(&plan.replaced[position].column) {
                    plan.replaced[position].rebuilt.push(name.clone());
                }
            }
            rebuild.add_to(plan);
        }
    }
    Ok(())
}

/// The steps that rebuild one index or constraint on the replacement columns, by phase.
#[derive(Default)]
struct Rebuild {
    /// In the expand's transaction, after the new columns are added.
    expand: Vec<Step>,
    /// After the backfill.
    validate: Vec<Step>,
    /// A concurrent build after the backfill, and its undo.
    concurrent: Option<(Step, Step)>,
    /// In the contract's transaction, after the old columns are dropped.
    complete: Vec<Step>,
    /// In the rollback's transaction, before the new columns are dropped.
    rollback: Vec<Step>,
}

impl Rebuild {
    fn add_to(self, plan: &mut MigrationPlan) {
        plan.expand.extend(self.expand);
        plan.validate.extend(self.validate);
        if let Some((build, undo)) = self.concurrent {
            // `start` pairs each build with its undo by position.
            plan.concurrent.push(build);
            plan.rollback_concurrent.push(undo);
        }
        plan.complete.extend(self.complete);
        for (position, step) in self.rollback.into_iter().enumerate() {
            plan.rollback.insert(position, step);
        }
    }
}

/// `_vg_<version>_<name>`, cut to an identifier's length if need be.
fn rebuilt_name(version: &str, name: &str) -> String {
    fit_identifier(format!("{NEW_COLUMN_PREFIX}{version}_{name}"))
}

/// The refusal of a migration whose contract would lose `object` (`index …`, `check …`)
/// covering `column`, because it cannot be rebuilt on the replacement: `why`.
fn unsafe_to_replace(
    plan: &MigrationPlan,
    schema: &str,
    table: &str,
    column: &str,
    object: &str,
    why: &str,
) -> MigrateError {
    MigrateError::Unsafe {
        version: plan.version.clone(),
        table: format!("{schema}.{table}"),
        objects: format!("column {column} is covered by {object}"),
        problem: format!(
            "the old column is dropped at `migrate complete` with what covers it, and this one cannot be rebuilt on the new column: {why}"
        ),
        remedy: "drop it first if the table can do without it while the migration runs and create it on the new column after `migrate complete` (`create_index` or `add_constraint` in the next migration), or add the new column with `add_column` and its own index or constraint, and drop the old one later".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::views::spec::MAX_IDENTIFIER_BYTES;

    #[test]
    fn rebuilt_names_fit_an_identifier_and_stay_apart() {
        assert_eq!(
            rebuilt_name("v2", "models_name_key"),
            "_vg_v2_models_name_key"
        );
        let long = "i".repeat(60);
        let (a, b) = (
            rebuilt_name("v2", &format!("{long}a")),
            rebuilt_name("v2", &format!("{long}b")),
        );
        assert!(a.len() <= MAX_IDENTIFIER_BYTES && b.len() <= MAX_IDENTIFIER_BYTES);
        assert_ne!(a, b);
    }
}
