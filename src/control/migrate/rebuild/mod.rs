//! What covers a replaced column, rebuilt on the column that replaces it. `alter_column`
//! through a new column drops the old column at `migrate complete`, and Postgres drops every
//! index and constraint on it along: a unique constraint, a check, a foreign key or an index
//! the application's queries rely on would vanish (red-team pass 41, finding 1). So each is
//! built again over the replacement under a name of the migration's own
//! (`_vg_<version>_<name>`), and the contract gives it back its old name: indexes and unique
//! constraints in [`indexes`] (their names and their columns' given back in [`index_names`]),
//! checks and foreign keys (the table's, and those into the column) in [`constraints`]. What
//! the column carries besides (its storage, comment, privileges and statistics settings)
//! goes over in [`column_settings`], the extended
//! statistics over it in [`statistics`], a serial's or an identity's sequence in
//! [`sequences`]. What cannot be rebuilt from the catalog alone is refused
//! before any change, naming the object; exclusion constraints are refused by
//! `preconditions.rs`.

mod column_settings;
mod constraints;
mod index_names;
mod indexes;
mod sequences;
mod statistics;

pub use column_settings::carried_settings;
pub use index_names::index_column_kept;
pub use sequences::{HeldIdentity, held_identities, identity_steps};
pub use statistics::{HeldStatistics, held_statistics, remake_statistics};

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::derive::{
    Dropped, MigrationPlan, NEW_COLUMN_PREFIX, PartitionBuilds, Replaced, Replacement, Step,
    fit_identifier, rename_table_name,
};
use super::error::MigrateError;
use crate::control::error::ControlError;
use crate::control::views::introspect::{self, Partitioning};

/// Whether constraint `k` is a check that a column is not null, the shape a migration's
/// stand-in for NOT NULL has (`introspect.rs` counts it as NOT NULL): `alter_column` carries
/// NOT NULL over by itself, and a stand-in goes at its own migration's complete.
const NOT_NULL_SHAPED: &str = "(k.contype = 'c'
      AND pg_catalog.cardinality(k.conkey) = 1
      AND pg_catalog.regexp_replace(pg_catalog.pg_get_constraintdef(k.oid), ' NOT VALID$', '')
          = pg_catalog.format('CHECK ((%s IS NOT NULL))',
              pg_catalog.quote_ident((SELECT a.attname FROM pg_catalog.pg_attribute a
                                       WHERE a.attrelid = k.conrelid AND a.attnum = k.conkey[1]))))";

/// The table `$1`.`$2` and, if partitioned, every partition under it, as rows of (`relid`,
/// `level`): `pg_partition_tree` alone gives no row for a table that is not partitioned.
const TABLE_AND_PARTITIONS: &str = "(SELECT relid, level FROM pg_catalog.pg_partition_tree(
                  pg_catalog.format('%I.%I', $1::text, $2::text)::regclass)
          UNION SELECT pg_catalog.format('%I.%I', $1::text, $2::text)::regclass, 0)";

/// The head of the catalog reads over a table's replaced columns: `t`, the table (`$1`.`$2`),
/// and `replaced`, the attribute numbers of the columns named in `$3`.
const REPLACED_COLUMNS: &str = "WITH t AS (
                SELECT c.oid FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2),
             replaced AS (
                SELECT a.attnum FROM pg_catalog.pg_attribute a, t
                 WHERE a.attrelid = t.oid AND a.attname = ANY($3::text[]) AND NOT a.attisdropped)";

/// Adds to `plan` the steps that rebuild, on each replacement column, the indexes and
/// constraints covering the column it replaces; refuses one that cannot be rebuilt so. What
/// goes with the migration's own drops is left to go.
pub async fn rebuild_replaced(
    client: &impl GenericClient,
    plan: &mut MigrationPlan,
) -> Result<(), MigrateError> {
    sequences::reown_sequences(client, plan).await?;
    column_settings::plan_storage(client, plan).await?;
    for ((schema, table), positions) in replaced_by_table(plan) {
        let replaced: Vec<Replaced> = positions
            .iter()
            .map(|&position| plan.replaced[position].clone())
            .collect();
        let drops = Drops::of(plan, &schema, &table);
        let complete_table = table_at_complete(plan, &schema, &table);
        let partitioning = introspect::partitioning_of(client, &schema, &table).await?;
        let context = TableContext {
            plan,
            schema: &schema,
            table: &table,
            complete_table: &complete_table,
            replaced: &replaced,
            partitioning: partitioning.as_ref(),
        };
        let mut outcomes: Vec<(String, Vec<String>, Outcome)> = Vec::new();
        for index in indexes::covering_indexes(client, &schema, &table, &replaced).await? {
            let covered = replaced
                .iter()
                .filter(|old| {
                    index.names_column(&old.column) || index.mentions_in_expression(&old.column)
                })
                .map(|old| old.column.clone())
                .collect();
            let outcome = if index.dropped_along(&drops) {
                Outcome::DroppedAlong(Box::default())
            } else {
                match indexes::rebuild(&context, &index)? {
                    Some(rebuild) => Outcome::Rebuilt(Box::new(rebuild)),
                    None => Outcome::Left,
                }
            };
            outcomes.push((index.name.clone(), covered, outcome));
        }
        for constraint in
            constraints::covering_constraints(client, &schema, &table, &replaced).await?
        {
            let outcome = if constraint.dropped_along(&drops) {
                Outcome::DroppedAlong(Box::default())
            } else {
                Outcome::Rebuilt(Box::new(constraints::rebuild(&context, &constraint)?))
            };
            outcomes.push((constraint.name.clone(), constraint.columns.clone(), outcome));
        }
        for key in constraints::referencing_keys(client, &schema, &table, &replaced).await? {
            let (key_schema, key_table) = &key.referencing_table;
            let outcome = if key.dropped_along(&Drops::of(plan, key_schema, key_table)) {
                Outcome::DroppedAlong(Box::new(constraints::drop_referencing_first(&key)))
            } else {
                Outcome::Rebuilt(Box::new(constraints::rebuild_referencing(&context, &key)?))
            };
            outcomes.push((key.name.clone(), key.columns.clone(), outcome));
        }
        for (name, covered, outcome) in outcomes {
            for &position in &positions {
                let old = &mut plan.replaced[position];
                if !covered.contains(&old.column) {
                    continue;
                }
                match outcome {
                    Outcome::Rebuilt(_) => old.rebuilt.push(name.clone()),
                    Outcome::DroppedAlong(_) => old.dropped_along.push(name.clone()),
                    Outcome::Left => {}
                }
            }
            if let Outcome::Rebuilt(steps) | Outcome::DroppedAlong(steps) = outcome {
                steps.add_to(plan);
            }
        }
    }
    Ok(())
}

/// Refuses the contract when the table no longer matches what `migrate start` rebuilt: an
/// index or constraint made on an old column since (the contract would drop it with the
/// column), a rebuilt one's twin gone (its steps would fail), or an old one dropped (its twin
/// would bring it back). Every such object is named in the one refusal: named one a run, an
/// operator fixing them ran `migrate complete` once for each.
pub async fn check_before_contract(
    client: &impl GenericClient,
    plan: &MigrationPlan,
) -> Result<(), MigrateError> {
    let roll_back = "roll the migration back (`viewgate migrate rollback`) and start it again: the rebuild follows the table as it is then";
    let mut problems = Vec::new();
    for replaced in &plan.replaced {
        let Replaced {
            schema,
            table,
            column,
            ..
        } = replaced;
        let drops = Drops::of(plan, schema, table);
        let covering = covering_now(client, schema, table, column).await?;
        for new in covering.iter().filter(|name| {
            !replaced.rebuilt.contains(name)
                && !replaced.dropped_along.contains(name)
                && !drops.indexes.contains(name)
                && !drops.constraints.contains(name)
        }) {
            problems.push(format!(
                "{new} covers column {column} of {schema}.{table}, which the contract drops, and was made after the migration started, so nothing rebuilt it on the new column: drop it if it is not needed, or {roll_back}"
            ));
        }
        for name in &replaced.rebuilt {
            if !covering.contains(name) {
                problems.push(format!(
                    "{name} on column {column} of {schema}.{table} was dropped while the migration was live, and its twin on the new column would bring it back: create it again, or {roll_back}"
                ));
                continue;
            }
            let twin = rebuilt_name(&plan.version, name);
            // A partitioned table's key or unique constraint has no twin on the table, only
            // on its partitions, whose steps in the contract fail if one is gone.
            if !exists_now(client, schema, table, &twin).await?
                && introspect::partitioning_of(client, schema, table)
                    .await?
                    .is_none()
            {
                problems.push(format!(
                    "{twin}, the rebuilt {name} on the new column of {schema}.{table}, is missing or invalid (dropped while the migration was live?): {roll_back}"
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(MigrateError::Refused {
        version: plan.version.clone(),
        operation: "complete".into(),
        problem: problems.join("; "),
    })
}

/// Each old column the plan replaces by one new column (not a split or merged one), with it.
pub fn replacements(plan: &MigrationPlan) -> impl Iterator<Item = (&Replaced, &Replacement)> {
    plan.replaced
        .iter()
        .filter_map(|old| Some((old, old.replacement.as_ref()?)))
}

/// The positions of `plan.replaced`, by base table.
fn replaced_by_table(plan: &MigrationPlan) -> BTreeMap<(String, String), Vec<usize>> {
    let mut tables: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (position, replaced) in plan.replaced.iter().enumerate() {
        tables
            .entry((replaced.schema.clone(), replaced.table.clone()))
            .or_default()
            .push(position);
    }
    tables
}

/// The name `schema.table` has when the contract's rebuild steps run: after every step of
/// the operations, so after each `rename_table` of the migration.
fn table_at_complete(plan: &MigrationPlan, schema: &str, table: &str) -> String {
    let mut name = table.to_owned();
    rename_table_name(&mut name, schema, &plan.renames);
    name
}

/// What the migration's operations drop of one table.
#[derive(Default)]
struct Drops {
    /// Whether `drop_table` drops the table itself.
    table: bool,
    columns: Vec<String>,
    indexes: Vec<String>,
    constraints: Vec<String>,
}

impl Drops {
    fn of(plan: &MigrationPlan, schema: &str, table: &str) -> Drops {
        let mut drops = Drops::default();
        for dropped in &plan.dropped {
            match dropped {
                Dropped::Table {
                    schema: s,
                    table: t,
                } if s == schema && t == table => drops.table = true,
                Dropped::Column {
                    schema: s,
                    table: t,
                    column,
                } if s == schema && t == table => drops.columns.push(column.clone()),
                Dropped::Index { schema: s, name } if s == schema => {
                    drops.indexes.push(name.clone())
                }
                Dropped::Constraint {
                    schema: s,
                    table: t,
                    name,
                } if s == schema && t == table => drops.constraints.push(name.clone()),
                _ => {}
            }
        }
        drops
    }
}

/// The names of the indexes and constraints (but NOT NULL ones) over `column` now.
async fn covering_now(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    column: &str,
) -> Result<Vec<String>, MigrateError> {
    let rows = client
        .query(
            &format!(
                "WITH col AS (
                SELECT a.attrelid, a.attnum FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
                   AND NOT a.attisdropped)
             SELECT ic.relname::text
               FROM col JOIN pg_catalog.pg_index i ON i.indrelid = col.attrelid
               JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              WHERE col.attnum = ANY(i.indkey::int2[])
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.classid = 'pg_catalog.pg_class'::regclass
                               AND d.objid = i.indexrelid
                               AND d.refclassid = 'pg_catalog.pg_class'::regclass
                               AND d.refobjid = col.attrelid AND d.refobjsubid = col.attnum)
             UNION
             SELECT k.conname::text
               FROM col JOIN pg_catalog.pg_depend d
                 ON d.refclassid = 'pg_catalog.pg_class'::regclass
                AND d.refobjid = col.attrelid AND d.refobjsubid = col.attnum
               JOIN pg_catalog.pg_constraint k
                 ON d.classid = 'pg_catalog.pg_constraint'::regclass AND k.oid = d.objid
              WHERE k.contype <> 'n' AND NOT {NOT_NULL_SHAPED}
              ORDER BY 1"
            ),
            &[&schema, &table, &column],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading what covers {schema}.{table}.{column} before the contract"),
                &error,
            )
        })?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Whether `schema.table` has a valid index or a constraint named `name`, or another table
/// a foreign key into it named so.
async fn exists_now(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
    name: &str,
) -> Result<bool, MigrateError> {
    let row = client
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM pg_catalog.pg_index i
                  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
                 WHERE n.nspname = $1 AND ic.relname = $3 AND i.indisvalid)
             OR EXISTS (
                SELECT 1 FROM pg_catalog.pg_constraint k
                  JOIN pg_catalog.pg_class c ON c.oid IN (k.conrelid, k.confrelid)
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3
                   AND (c.oid = k.conrelid OR k.contype = 'f'))",
            &[&schema, &table, &name],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading whether {name} exists before the contract"),
                &error,
            )
        })?;
    Ok(row.get(0))
}

/// One table's replaced columns, as the rebuilds of its indexes and constraints read them.
#[derive(Clone, Copy)]
struct TableContext<'a> {
    plan: &'a MigrationPlan,
    schema: &'a str,
    table: &'a str,
    /// The table's name when the contract's rebuild steps run (after its renames).
    complete_table: &'a str,
    replaced: &'a [Replaced],
    /// How the table is partitioned, if it is.
    partitioning: Option<&'a Partitioning>,
}

/// What becomes of one index or constraint over a replaced column.
enum Outcome {
    Rebuilt(Box<Rebuild>),
    /// It goes with what the migration drops: not rebuilt, though it may still have to go
    /// early (a foreign key into the replaced column holds its index), by these steps.
    DroppedAlong(Box<Rebuild>),
    /// Left to `preconditions.rs` (an exclusion constraint's index).
    Left,
}

/// The steps that rebuild one index or constraint on the replacement columns, by phase.
#[derive(Default)]
struct Rebuild {
    /// In the expand's transaction, after the new columns are added.
    expand: Vec<Step>,
    /// After the backfill.
    validate: Vec<Step>,
    /// Concurrent builds after the backfill (partition by partition on a partitioned table).
    concurrent: PartitionBuilds,
    /// Once the indexes are built (a foreign key into one), each in its own transaction.
    referencing: Vec<Step>,
    /// In the contract's transaction, before the operations' steps (so before any of them
    /// drops an old column or renames a table): tables by their names at the start.
    complete_first: Vec<Step>,
    /// In the contract's transaction, after all the operations' steps (the old columns are
    /// gone, each `rename_table` has run): tables by their names at the end
    /// ([`table_at_complete`]).
    complete: Vec<Step>,
    /// Before the rollback drops the indexes.
    rollback_referencing: Vec<Step>,
    /// In the rollback's transaction, before the new columns are dropped.
    rollback: Vec<Step>,
}

impl Rebuild {
    fn add_to(self, plan: &mut MigrationPlan) {
        plan.expand.extend(self.expand);
        plan.validate.extend(self.validate);
        plan.concurrent.extend(self.concurrent.concurrent);
        plan.rollback_concurrent.extend(self.concurrent.rollback);
        plan.built_indexes.extend(self.concurrent.built);
        plan.partition_wise.extend(self.concurrent.partition_wise);
        plan.partition_wise_constraints
            .extend(self.concurrent.partition_wise_constraint);
        plan.referencing.extend(self.referencing);
        for (position, step) in self.complete_first.into_iter().enumerate() {
            plan.complete.insert(position, step);
        }
        plan.complete.extend(self.complete);
        plan.rollback_referencing.extend(self.rollback_referencing);
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
    use crate::model::identifier::MAX_IDENTIFIER_BYTES;

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
