//! `viewgate migrate rollback`: undo the newest migration's expand — its indexes, sync triggers,
//! views and added columns and tables — refused while anything still uses its version.
//!
//! The same undo runs by itself when `migrate start` fails after its expand committed, so a
//! failed migration leaves nothing behind.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::derive::Step;
use super::detached::{self, Tidy};
use super::error::MigrateError;
use super::function_bodies;
use super::left_over;
use super::lock_order;
use super::progress::Progress;
use super::state::{self, MigrationRecord, Phase};
use super::steps::{prepare_catalog, record_event, run_sql};
use super::sync;
use super::target::{self, Chosen};
use super::trigger_fields;
use crate::control::catalog;
use crate::control::error::ControlError;
use crate::control::retry::with_lock_retries;
use crate::control::templates::Templates;
use crate::control::usage;
use crate::control::views::apply::{CatalogDrop, LockSettings, drop_catalog_sql, drop_sql};

#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    pub version: String,
    pub from: String,
    pub seconds: f64,
    /// What the rollback could not undo (`Migration::not_undone_by_rollback`).
    pub not_undone: Option<String>,
    /// The migration named was rolled back before this command (`target.rs`).
    pub already_done: bool,
}

/// Rolls back the newest migration that is not completed, which must be the one to `named` if
/// it is given.
pub async fn rollback(
    client: &mut Client,
    templates: &Templates,
    named: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<RollbackOutcome, MigrateError> {
    state::with_lock(client, async |client| {
        rollback_locked(client, templates, named, progress).await
    })
    .await
}

async fn rollback_locked(
    client: &mut Client,
    templates: &Templates,
    named: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<RollbackOutcome, MigrateError> {
    let started = Instant::now();
    prepare_catalog(client, templates).await?;
    left_over::finish_earlier(client, progress).await?;
    let current = state::load_current(client).await?;
    let phases: Vec<(&str, Phase)> = current
        .iter()
        .map(|record| (record.version.as_str(), record.phase))
        .collect();
    let rolled_back_from = match named {
        Some(version) => rolled_back_from(client, version).await?,
        None => None,
    };
    let record = match target::for_rollback(&phases, named, rolled_back_from.is_some())? {
        Chosen::At(position) => &current[position],
        Chosen::AlreadyDone => {
            return Ok(RollbackOutcome {
                version: named.unwrap_or_default().to_owned(),
                from: rolled_back_from.unwrap_or_default(),
                seconds: started.elapsed().as_secs_f64(),
                not_undone: None,
                already_done: true,
            });
        }
    };
    let reasons = usage::reasons_in_use(client, &record.version).await?;
    if !reasons.is_empty() {
        return Err(MigrateError::InUse {
            action: format!("rolling back the migration to {}", record.version),
            reasons: reasons.join("; "),
        });
    }
    trigger_fields::refuse_before_rollback(client, &record.plan).await?;
    function_bodies::refuse_before_rollback(client, &record.plan, &record.migration).await?;
    undo(client, record, templates, ("migrate rollback", progress)).await?;
    Ok(RollbackOutcome {
        version: record.version.clone(),
        from: record.from.clone(),
        seconds: started.elapsed().as_secs_f64(),
        not_undone: record.migration.not_undone_by_rollback(),
        already_done: false,
    })
}

/// The version the newest rolled-back migration to `version` started from, if one was.
async fn rolled_back_from(
    client: &impl GenericClient,
    version: &str,
) -> Result<Option<String>, MigrateError> {
    let row = client
        .query_opt(
            "SELECT from_version FROM viewgate.migrations
              WHERE version = $1 AND phase = 'rolled_back' ORDER BY id DESC LIMIT 1",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database("reading the rolled-back migrations", &error))?;
    Ok(row.map(|row| row.get(0)))
}

/// Removes everything `record`'s expand created and marks it rolled back: first, in one
/// transaction, what decides the migration's state (the foreign keys into its rebuilt indexes,
/// its triggers, views, columns and tables, whose indexes go with them); then, once that has
/// committed, the indexes it built on columns that stay. A failure in the transaction changes
/// nothing (its indexes dropped first had left a live version without its unique keys); one
/// after it leaves an index a later start of the migration clears.
pub async fn undo(
    client: &mut Client,
    record: &MigrationRecord,
    templates: &Templates,
    (why, progress): (&str, &mut dyn Progress),
) -> Result<(), MigrateError> {
    let settings = record.migration.settings;
    let locks = LockSettings {
        lock_timeout: settings.lock_timeout,
        max_attempts: settings.max_attempts,
    };
    progress.step(&format!(
        "roll back the expand of {} (its views, triggers, columns and tables)",
        record.version
    ));
    // The new version's catalog substitutes (a schema of about a hundred views) need not go
    // under the tables' lock: nothing reads them once the version is forgotten.
    let after_commit: Vec<Step> = std::iter::once(Step::new(
        format!(
            "drop the catalog substitutes of rolled-back version {}",
            record.version
        ),
        drop_catalog_sql(templates, &record.version, CatalogDrop::AfterTheCommit)?,
    ))
    .chain(record.plan.rollback_concurrent.iter().cloned())
    .collect();
    let attempted = with_lock_retries(locks.max_attempts, locks.lock_timeout, async || {
        undo_once(client, record, (templates, &after_commit), locks, why).await
    })
    .await;
    attempted.result?;
    // Under the lock timeout: a partitioned index has no concurrent drop, and a plain one
    // waiting for its lock would queue every writer of the table behind it.
    left_over::run(
        client,
        (record.id, &record.version, settings),
        &after_commit,
        |step| {
            format!(
                "the migration is rolled back, and this is left ({}): {}",
                step.description,
                left_over::KEPT
            )
        },
        progress,
    )
    .await
}

async fn undo_once(
    client: &mut Client,
    record: &MigrationRecord,
    (templates, after_commit): (&Templates, &[Step]),
    locks: LockSettings,
    why: &str,
) -> Result<(), MigrateError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the rollback transaction", &error))?;
    catalog::set_local_lock_timeout(&transaction, locks.lock_timeout).await?;
    catalog::wait_apply_lock(&transaction).await?;
    lock_order::lock_views_then_tables(
        &transaction,
        (&record.version, &record.version),
        &record.plan,
        lock_order::Phase::Rollback,
    )
    .await?;
    // Foreign keys into the rebuilt indexes first: they hold the columns.
    for step in &record.plan.rollback_referencing {
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    for table_sync in &record.plan.syncs {
        let sql = sync::drop_sql(record.id, &table_sync.schema, &table_sync.table);
        run_sql(
            &transaction,
            &record.version,
            "dropping the sync triggers",
            &sql,
        )
        .await?;
    }
    for object in catalog::load_objects(&transaction)
        .await?
        .iter()
        .filter(|object| object.version == record.version)
    {
        let sql = drop_sql(templates, object)?;
        run_sql(
            &transaction,
            &record.version,
            "dropping the new version's views",
            &sql,
        )
        .await?;
    }
    transaction
        .execute(
            "DELETE FROM viewgate.versions WHERE version = $1",
            &[&record.version],
        )
        .await
        .map_err(|error| ControlError::database("forgetting the new version", &error))?;
    for step in &record.plan.rollback {
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    for step in detached::tidy_steps(&transaction, &record.plan, Tidy::Rollback).await? {
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    state::set_phase(&transaction, record.id, Phase::RolledBack).await?;
    left_over::record(&transaction, record.id, after_commit).await?;
    record_event(
        &transaction,
        "migrate_rollback",
        (&record.file, &record.checksum),
        std::slice::from_ref(&record.version),
        Some(why),
        true,
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the rollback", &error))?;
    Ok(())
}
