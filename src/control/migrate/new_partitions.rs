//! Partitions created while a migration runs get the indexes it builds partition by
//! partition. The plan builds one for each partition the table had at the start; a partition
//! created since (pg_partman makes next month's ahead of time, an operator attaches last
//! year's) has none, and the table's index stays invalid until it has: the run failed, rolled
//! back whole after the backfill. So before the run checks its indexes valid, each such
//! partition gets its own as the plan gives the others theirs (built concurrently, attached),
//! recorded in the plan first, so that a killed run clears and builds it again and a rollback
//! drops it.
//!
//! A unique constraint made of its partitions' has no index on the table for a new partition
//! to inherit, and the contract's constraint on the table built the missing partitions'
//! under a lock blocking their reads and writes: so `migrate complete` does the same before
//! its contract, for the partitions created while the migration was live, and the contract
//! makes each new partition's index its constraint.

use tokio_postgres::Client;

use super::derive::{
    PartitionBuilds, PartitionWiseConstraint, PartitionWiseIndex, Step, constrain_partitions,
    index_new_partitions,
};
use super::error::MigrateError;
use super::progress::Progress;
use super::state::{self, MigrationRecord};
use super::steps::{gone_partition, run_alone};
use crate::control::error::ControlError;
use crate::control::views::introspect::{self, Partition, PartitionKind, Partitioning};

/// Rounds of looking for partitions without the index: another can be created while a round
/// builds.
const ROUNDS: usize = 3;

/// Builds the indexes of `record`'s partition-wise builds on the partitions that have none,
/// recording their steps (and the contract's, for a constraint) in its plan first.
pub async fn index_partitions_created_since(
    client: &Client,
    record: &mut MigrationRecord,
    progress: &mut dyn Progress,
) -> Result<(), MigrateError> {
    for _ in 0..ROUNDS {
        let mut added = PartitionBuilds::default();
        // Each constraint's table step, with the new partitions' steps that go before it.
        let mut contract_added: Vec<(String, Vec<Step>)> = Vec::new();
        // Builds in the plan whose index is not there: one that failed at an earlier `migrate
        // complete` (a duplicate the partition took while it had none), run again.
        let mut unbuilt: Vec<Step> = Vec::new();
        for constraint in &record.plan.partition_wise_constraints {
            let Some(partitioning) =
                introspect::partitioning_of(client, &constraint.schema, &constraint.table).await?
            else {
                continue;
            };
            let (planned, unplanned): (Vec<&Partition>, Vec<&Partition>) =
                leaves_without_index(client, constraint, &partitioning)
                    .await?
                    .into_iter()
                    .partition(|leaf| {
                        let own = (leaf.schema.clone(), constraint.own_index(leaf));
                        record.plan.built_indexes.contains(&own)
                    });
            let (again, _) = constrain_partitions(constraint, &planned)
                .map_err(|problem| failed(record, &constraint.name, problem))?;
            unbuilt.extend(again.concurrent);
            let (builds, contract) = constrain_partitions(constraint, &unplanned)
                .map_err(|problem| failed(record, &constraint.name, problem))?;
            if contract.is_empty() {
                continue;
            }
            added.concurrent.extend(builds.concurrent);
            added.rollback.extend(builds.rollback);
            added.built.extend(builds.built);
            contract_added.push((constraint.table_step.clone(), contract));
        }
        for index in &record.plan.partition_wise {
            let Some(partitioning) =
                introspect::partitioning_of(client, &index.schema, &index.table).await?
            else {
                continue;
            };
            let indexed = indexed_tables(client, index).await?;
            if indexed.is_empty() {
                continue;
            }
            let builds = index_new_partitions(index, &partitioning, indexed)
                .map_err(|problem| failed(record, &index.index, problem))?;
            added.concurrent.extend(builds.concurrent);
            added.rollback.extend(builds.rollback);
            added.built.extend(builds.built);
        }
        if added.concurrent.is_empty() && unbuilt.is_empty() {
            return Ok(());
        }
        if let Some(taken) = taken_name(client, &added.built).await? {
            return Err(failed(
                record,
                &taken,
                format!(
                    "a partition created since the migration started needs index {taken}, and a relation of this database has that name; once the migration is rolled back, start it again and its plan will name the partition's index"
                ),
            ));
        }
        for (table_step, steps) in contract_added {
            let Some(position) = record
                .plan
                .complete
                .iter()
                .position(|step| step.description == table_step)
            else {
                return Err(failed(
                    record,
                    &table_step,
                    "the plan has no such contract step; roll the migration back and start it again".to_owned(),
                ));
            };
            record.plan.complete.splice(position..position, steps);
        }
        record
            .plan
            .concurrent
            .extend(added.concurrent.iter().cloned());
        record.plan.rollback_concurrent.extend(added.rollback);
        record.plan.built_indexes.extend(added.built);
        state::save_plan(client, record.id, &record.plan).await?;
        let settings = record.migration.settings;
        for step in added.concurrent.iter().chain(&unbuilt) {
            if let Some(skipped) = gone_partition(client, step)
                .await
                .map_err(|error| failed(record, &step.description, error.to_string()))?
            {
                progress.step(&skipped);
                continue;
            }
            progress.step(&step.description);
            let statements: Vec<&str> = step
                .clear
                .iter()
                .map(String::as_str)
                .chain([step.sql.as_str()])
                .collect();
            run_alone(client, settings, &step.description, &statements)
                .await
                .map_err(|error| failed(record, &step.description, error.to_string()))?;
        }
    }
    Ok(())
}

/// Each table of `index`'s tree that has an index of it, (schema, name), with that index;
/// empty if the index is gone.
async fn indexed_tables(
    client: &Client,
    index: &PartitionWiseIndex,
) -> Result<Vec<((String, String), (String, String))>, ControlError> {
    let rows = client
        .query(
            "SELECT tn.nspname::text, t.relname::text, n.nspname::text, c.relname::text
               FROM pg_catalog.pg_partition_tree(
                        pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))) AS tree
               JOIN pg_catalog.pg_class c ON c.oid = tree.relid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
               JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
               JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace",
            &[&index.schema, &index.index],
        )
        .await
        .map_err(|error| {
            ControlError::database(format!("reading the partitions of index {}", index.index), &error)
        })?;
    Ok(rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), (row.get(2), row.get(3))))
        .collect())
}

/// The leaves of `constraint`'s table (partitioned as `partitioning`) without a valid index
/// of it.
async fn leaves_without_index<'p>(
    client: &Client,
    constraint: &PartitionWiseConstraint,
    partitioning: &'p Partitioning,
) -> Result<Vec<&'p Partition>, ControlError> {
    let leaves: Vec<&Partition> = partitioning
        .partitions
        .iter()
        .filter(|partition| partition.kind != PartitionKind::Partitioned)
        .collect();
    let schemas: Vec<&str> = leaves.iter().map(|leaf| leaf.schema.as_str()).collect();
    let tables: Vec<&str> = leaves.iter().map(|leaf| leaf.name.as_str()).collect();
    let indexes: Vec<String> = leaves
        .iter()
        .map(|leaf| constraint.own_index(leaf))
        .collect();
    let rows = client
        .query(
            "SELECT leaf.position
               FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                    AS leaf(schema, tbl, index, position)
              WHERE NOT EXISTS (
                    SELECT 1 FROM pg_catalog.pg_index i
                     WHERE i.indexrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', leaf.schema, leaf.index))
                       AND i.indrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', leaf.schema, leaf.tbl))
                       AND i.indisvalid)",
            &[&schemas, &tables, &indexes],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("reading the partitions' indexes of {}", constraint.name),
                &error,
            )
        })?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let position: i64 = row.get(0);
            leaves.get(usize::try_from(position - 1).ok()?).copied()
        })
        .collect())
}

/// The first of `names` (schema, name) a relation already has, as `schema.name`.
async fn taken_name(
    client: &Client,
    names: &[(String, String)],
) -> Result<Option<String>, ControlError> {
    let (schemas, names): (Vec<&str>, Vec<&str>) = names
        .iter()
        .map(|(schema, name)| (schema.as_str(), name.as_str()))
        .unzip();
    let row = client
        .query_opt(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
               FROM unnest($1::text[], $2::text[]) AS wanted(schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = wanted.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.name
              LIMIT 1",
            &[&schemas, &names],
        )
        .await
        .map_err(|error| {
            ControlError::database("checking the new partitions' index names", &error)
        })?;
    Ok(row.map(|row| row.get(0)))
}

fn failed(record: &MigrationRecord, what: &str, message: String) -> MigrateError {
    MigrateError::Failed {
        version: record.version.clone(),
        step: format!("indexing the partitions created since the start ({what})"),
        message,
        aftermath: String::new(),
    }
}
