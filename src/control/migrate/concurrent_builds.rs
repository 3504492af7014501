//! The start's index builds, run `CONCURRENTLY` outside any transaction after the backfill:
//! each kept when an earlier run of the same start built it whole, else cleared of a killed
//! attempt's leftover and built; then every index the migration built checked valid.
//!
//! A start killed after its builds (in a foreign key's validation, or going live) used to drop
//! and build every index again when run again: on a large table, the minutes each build took,
//! for nothing. An index of a build's name that is valid can only be that build's: the name
//! was refused at the first start if another index had it (`preconditions.rs`), and the file
//! cannot have changed since (its checksum).

use tokio_postgres::Client;

use super::derive::Step;
use super::error::MigrateError;
use super::progress::Progress;
use super::state::MigrationRecord;
use super::steps::{gone_partition, run_alone};
use crate::control::error::ControlError;

/// Runs the plan's concurrent builds in order: each one skipped whose partition is gone or
/// whose index an earlier run built whole, the others cleared of a leftover, then built.
pub async fn build(
    client: &Client,
    record: &MigrationRecord,
    progress: &mut dyn Progress,
) -> Result<(), MigrateError> {
    let failed =
        |step: &Step, error| MigrateError::step_failed(&record.version, &step.description, error);
    // Plans recorded before builds carried what clears their leftovers pair each build with
    // its undo by position.
    let recorded_without_clears = record
        .plan
        .concurrent
        .iter()
        .all(|step| step.clear.is_none());
    for (position, step) in record.plan.concurrent.iter().enumerate() {
        if let Some(skipped) = gone_partition(client, step)
            .await
            .map_err(|error| failed(step, error))?
        {
            progress.step(&skipped);
            continue;
        }
        if let Some(index) = &step.builds
            && built_whole(client, index)
                .await
                .map_err(|error| failed(step, error))?
        {
            progress.step(&format!(
                "{} (kept: an earlier run built it)",
                step.description
            ));
            continue;
        }
        progress.step(&step.description);
        // A build killed or timed out half-way leaves an invalid index: clear it, build again.
        let clear = if recorded_without_clears {
            record
                .plan
                .rollback_concurrent
                .get(position)
                .map(|undo| undo.sql.as_str())
        } else {
            step.clear.as_deref()
        };
        let statements: Vec<&str> = clear.into_iter().chain([step.sql.as_str()]).collect();
        run_alone(
            client,
            record.migration.settings,
            &step.description,
            &statements,
        )
        .await
        .map_err(|error| failed(step, error))?;
    }
    Ok(())
}

/// Whether index `(schema, name)` exists, valid and ready: a build that ran to its end (one
/// killed half-way leaves it invalid; a partitioned table's is valid once every partition has
/// its own attached, each valid in turn).
async fn built_whole(
    client: &Client,
    (schema, name): &(String, String),
) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_catalog.pg_index
                  WHERE indexrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                    AND indisvalid AND indisready AND indislive)",
            &[schema, name],
        )
        .await
        .map_err(|error| ControlError::database(format!("looking up index {schema}.{name}"), &error))?
        .get(0))
}

/// Fails the run if an index it built is not valid. A partitioned table's index becomes valid
/// when each of its partitions has one attached; the partitions created since the start get
/// theirs (`new_partitions.rs`), but one created during that last round leaves it invalid,
/// and the migration would go live with an index that is never used.
pub async fn refuse_invalid(client: &Client, record: &MigrationRecord) -> Result<(), MigrateError> {
    let (schemas, names): (Vec<&str>, Vec<&str>) = record
        .plan
        .built_indexes
        .iter()
        .map(|(schema, name)| (schema.as_str(), name.as_str()))
        .unzip();
    let invalid = client
        .query_opt(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                    (SELECT pg_catalog.string_agg(p.oid::regclass::text, ', ' ORDER BY p.oid::regclass::text)
                       FROM pg_catalog.pg_inherits part
                       JOIN pg_catalog.pg_class p ON p.oid = part.inhrelid
                      WHERE part.inhparent = i.indrelid
                        AND NOT EXISTS (
                            SELECT 1 FROM pg_catalog.pg_inherits attached
                              JOIN pg_catalog.pg_index own ON own.indexrelid = attached.inhrelid
                             WHERE attached.inhparent = c.oid AND own.indrelid = p.oid))
               FROM unnest($1::text[], $2::text[]) AS built(schema, name)
               JOIN pg_catalog.pg_namespace n ON n.nspname = built.schema
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = built.name
               JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
              WHERE NOT i.indisvalid
              ORDER BY 1 LIMIT 1",
            &[&schemas, &names],
        )
        .await
        .map_err(|error| ControlError::database("checking the indexes built", &error))?;
    let Some(row) = invalid else {
        return Ok(());
    };
    let index: String = row.get(0);
    let missing: Option<String> = row.get(1);
    Err(MigrateError::Failed {
        version: record.version.clone(),
        step: format!("checking index {index}"),
        message: match missing {
            Some(partitions) => format!(
                "index {index} is not valid: partition(s) {partitions} of its table have no index attached to it (created while the run built the others' indexes, after its last look); once it is rolled back, start it again and its plan will build theirs"
            ),
            None => format!("index {index} is not valid after its build"),
        },
        aftermath: String::new(),
    })
}
