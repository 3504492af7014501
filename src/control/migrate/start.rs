//! `viewgate migrate start FILE`: expand, backfill, validate, build indexes and the foreign
//! keys into them, then make the new version live.
//!
//! 1. **Expand**, one transaction under a short `lock_timeout` retried with backoff: the
//!    migration's row, the additive DDL, the sync triggers, the backfill's high-water marks.
//!    A failure rolls all of it back. It holds the tables' locks from its first DDL statement
//!    to its commit, so it does there only what must see the new columns.
//! 2. **Views**: the new version's views, state `pending` (no proxy routes to it yet), in a
//!    transaction of their own: creating views blocks no writer. Their catalog substitutes
//!    wait for step 5.
//! 3. **Backfill** existing rows in keyed batches, each committing its checkpoint.
//! 4. **Validate** the NOT VALID constraints, then build indexes `CONCURRENTLY`.
//! 5. **Live**: the version's catalog substitutes are made, it becomes `active` and the
//!    proxies are told (NOTIFY), in one transaction.
//!
//! A failure after the expand rolls the whole migration back (see `rollback.rs`) and says so.
//! Killed between phases or mid-backfill, the same command resumes where the catalog says the
//! migration stands; a file whose checksum changed since it started is refused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::autovacuum;
use super::backfill;
use super::backfill_triggers;
use super::column_types;
use super::concurrent_builds;
use super::constraint_renames;
use super::definitions;
use super::dependents;
use super::derive::{self, MigrationPlan, Step};
use super::detached;
use super::error::MigrateError;
use super::file::{Migration, MigrationFile};
use super::function_bodies;
use super::lock_holders;
use super::new_partitions::index_partitions_created_since;
use super::operation::relation_names;
use super::preconditions;
use super::privileges;
use super::progress::Progress;
use super::rebuild;
use super::rename_chain;
use super::replica_identity;
use super::retained_wal;
use super::rollback;
use super::sequence_fill;
use super::settings::PaceOverride;
use super::start_point::{self, checkpoint_key};
use super::state::{self, MigrationRecord, Phase};
use super::steps::{
    Substitutes, create_substitutes, create_views, prepare_catalog, record_event,
    refuse_foreign_substitute_schema, refuse_taken_view_names, run_pipelined, run_sql,
};
use super::sync;
use super::trigger_fields;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::retry::with_lock_retries;
use crate::control::templates::Templates;
use crate::control::views::apply;
use crate::control::views::definition::{self, VersionDefinition};
use crate::control::views::introspect;

/// [`StartOutcome::how`] of a migration completed before: there is nothing to start.
pub const ALREADY_COMPLETED: &str = "already completed";

#[derive(Debug, Clone, Serialize)]
pub struct StartOutcome {
    pub version: String,
    pub from: String,
    /// `started`, `resumed`, `already live` or [`ALREADY_COMPLETED`].
    pub how: &'static str,
    pub rows_backfilled: u64,
    pub seconds: f64,
}

/// Runs or resumes the migration in `file`, its backfill at the file's pace or `pace`'s.
/// `client` holds the migration lock for its session.
pub async fn start(
    client: &mut Client,
    (file, pace): (&MigrationFile, &PaceOverride),
    templates: &Templates,
    progress: &mut dyn Progress,
) -> Result<StartOutcome, MigrateError> {
    state::with_lock(client, async |client| {
        start_locked(client, (file, pace), templates, progress).await
    })
    .await
}

async fn start_locked(
    client: &mut Client,
    (file, pace): (&MigrationFile, &PaceOverride),
    templates: &Templates,
    progress: &mut dyn Progress,
) -> Result<StartOutcome, MigrateError> {
    let started = Instant::now();
    let migration = &file.migration;
    prepare_catalog(client, templates).await?;
    super::left_over::finish_earlier(client, progress).await?;
    let existing = state::load_current(client)
        .await?
        .into_iter()
        .find(|record| record.version == migration.version);
    let (mut record, how) = match existing {
        Some(record) if record.checksum != file.checksum => {
            return Err(MigrateError::ChecksumChanged {
                version: record.version,
                recorded: apply::short(&record.checksum).to_owned(),
                current: apply::short(&file.checksum).to_owned(),
            });
        }
        Some(record) if record.phase != Phase::Backfilling => {
            let how = if record.phase == Phase::Completed {
                ALREADY_COMPLETED
            } else {
                "already live"
            };
            return Ok(StartOutcome {
                version: record.version,
                from: record.from,
                how,
                rows_backfilled: 0,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Some(record) => (record, "resumed"),
        None => {
            progress.step("expand");
            let settings = migration.settings;
            let tables = lock_holders::tables_of(client, &migration.from).await?;
            let mut attempts = 0;
            let attempted =
                with_lock_retries(settings.max_attempts, settings.lock_timeout, async || {
                    attempts += 1;
                    if attempts > 1 {
                        autovacuum::cancel_in_the_way(client, &tables).await;
                        lock_holders::warn_holders(client, &tables, attempts).await;
                    }
                    expand(client, file).await
                })
                .await;
            let record = match attempted.result {
                Ok(record) => record,
                Err(error) => {
                    let error = lock_holders::name_holders(client, &tables, error).await;
                    record_refusal(client, templates, file, &error, attempted.attempts).await;
                    return Err(error);
                }
            };
            (record, "started")
        }
    };

    if how == "resumed" {
        for backfill_plan in &record.plan.backfills {
            backfill_triggers::refuse_firing(client, &record.version, backfill_plan).await?;
        }
        let slots_ok = record.migration.settings.inactive_slots_ok;
        retained_wal::refuse_unread_slots(client, &record.plan, slots_ok).await?;
    }
    if let Some(set) = pace.described() {
        progress.step(&format!("backfill paced as the command line says: {set}"));
        record.migration.settings = pace.over(record.migration.settings);
    }
    match finish(client, &mut record, templates, progress).await {
        Ok(rows) => Ok(StartOutcome {
            version: record.version.clone(),
            from: record.from.clone(),
            how,
            rows_backfilled: rows,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(error) => {
            let (step, message) = match &error {
                MigrateError::Failed { step, message, .. } => (step.clone(), message.clone()),
                other => ("finishing the migration".to_owned(), other.to_string()),
            };
            let why = format!("migration failed while {step}: {message}");
            let aftermath = match rollback::undo(client, &record, templates, (&why, progress)).await
            {
                Ok(()) => match record.migration.not_undone_by_rollback() {
                    None => "the migration was rolled back: nothing of it remains".to_owned(),
                    Some(remains) => format!("the migration was rolled back, but {remains}"),
                },
                Err(undo) => format!(
                    "rolling it back failed too ({undo}); run `viewgate migrate rollback` once the cause is fixed"
                ),
            };
            Err(MigrateError::Failed {
                version: record.version.clone(),
                step,
                message,
                aftermath,
            })
        }
    }
}

/// Records in `apply_history` that the migration was refused or failed before anything of it
/// was kept (best effort, in its own transaction: the expand's was rolled back).
async fn record_refusal(
    client: &mut Client,
    templates: &Templates,
    file: &MigrationFile,
    error: &MigrateError,
    attempts: u32,
) {
    let settings = file.migration.settings;
    let entry = HistoryEntry {
        action: "migrate_start",
        success: false,
        spec_file: Some(file.path.display().to_string()),
        spec_checksum: Some(file.checksum.clone()),
        versions: vec![file.migration.from.clone(), file.migration.version.clone()],
        duration: Duration::ZERO,
        attempts,
        error: Some(error.to_string()),
    };
    let locks = apply::LockSettings {
        lock_timeout: settings.lock_timeout,
        max_attempts: settings.max_attempts,
    };
    apply::record_failure(client, templates, locks, &entry).await;
}

/// The previous version's definition and the plan derived from it, read inside `client`'s
/// transaction (so the expand sees the same schema the plan was made for).
pub async fn plan_against(
    client: &impl GenericClient,
    file: &MigrationFile,
) -> Result<(VersionDefinition, MigrationPlan), MigrateError> {
    let migration = &file.migration;
    let versions = catalog::load_versions(client).await?;
    match versions.get(&migration.version) {
        Some(recorded) if recorded.state != "retired" => {
            return Err(MigrateError::Refused {
                version: migration.version.clone(),
                operation: "the file's header".into(),
                problem: format!(
                    "version {} already exists (created by `views apply`?); name the new version differently",
                    migration.version
                ),
            });
        }
        _ => {}
    }
    match versions.get(&migration.from) {
        Some(recorded) if recorded.state == "active" => {}
        Some(recorded) => {
            return Err(MigrateError::Refused {
                version: migration.version.clone(),
                operation: "the file's header".into(),
                problem: format!(
                    "version {} is {}, not active: a migration starts from a live version",
                    migration.from, recorded.state
                ),
            });
        }
        None => {
            return Err(MigrateError::Refused {
                version: migration.version.clone(),
                operation: "the file's header".into(),
                problem: format!("version {} is not in the catalog", migration.from),
            });
        }
    }
    privileges::refuse_where_clients_may_plant_functions(client, &migration.version).await?;
    let current = state::load_current(client).await?;
    if let Some(busy) = current
        .iter()
        .find(|record| record.phase == Phase::Backfilling)
    {
        return Err(MigrateError::Refused {
            version: migration.version.clone(),
            operation: "the file's header".into(),
            problem: format!(
                "the migration to {} is still backfilling; let it finish (`viewgate migrate start` on its file resumes it) before starting another",
                busy.version
            ),
        });
    }
    if let Some(later) = current.iter().find(|record| record.from == migration.from) {
        return Err(MigrateError::Refused {
            version: migration.version.clone(),
            operation: "the file's header".into(),
            problem: format!(
                "version {} already has a migration derived from it ({}); versions form one chain",
                migration.from, later.version
            ),
        });
    }
    let made = definitions::make(client, migration).await?;
    let checked = checked_plan(client, migration, &current).await;
    if made {
        definitions::undo(client).await?;
    }
    checked
}

/// The plan derived from `migration`'s previous version, and every check made before any
/// change; `current` holds the live migrations.
async fn checked_plan(
    client: &impl GenericClient,
    migration: &Migration,
    current: &[MigrationRecord],
) -> Result<(VersionDefinition, MigrationPlan), MigrateError> {
    let from = definition::load(client, &migration.from)
        .await?
        .ok_or_else(|| MigrateError::NoDefinition {
            version: migration.from.clone(),
        })?;
    let tables = from
        .tables
        .iter()
        .map(|table| (table.schema.as_str(), table.name.as_str()));
    let mut snapshot = introspect::snapshot(client, tables).await?;
    snapshot.relations_named =
        introspect::relations_named(client, &relation_names(&migration.operations)).await?;
    let mut plan = derive::derive(migration, &from, &snapshot)?;
    sequence_fill::refuse_replacing_a_stand_in(&migration.version, &plan, current)?;
    rename_chain::refuse_naming_renamed(&migration.version, &plan, current)?;
    column_types::refuse_more_than_types(client, migration).await?;
    rebuild::rebuild_replaced(client, &mut plan).await?;
    detached::record_partitions(client, &mut plan).await?;
    preconditions::refuse_silent_damage(client, &plan, migration.settings).await?;
    dependents::refuse_dependents(client, &plan).await?;
    constraint_renames::refuse_renaming_what_the_contract_drops(client, &plan).await?;
    replica_identity::refuse_lost_replica_identity(client, &plan).await?;
    trigger_fields::refuse_stale_trigger_fields(client, &plan).await?;
    function_bodies::refuse_stale_function_bodies(client, &plan).await?;
    Ok((from, plan))
}

/// Every version the catalog knows but `new_version`: their writers count as older.
async fn old_side(
    client: &impl GenericClient,
    new_version: &str,
) -> Result<Vec<String>, MigrateError> {
    Ok(catalog::load_versions(client)
        .await?
        .into_keys()
        .filter(|version| version != new_version)
        .collect())
}

/// The expand: one transaction whose every statement that needs no lock on the tables (the
/// plan's reads, the checks, the migration's row, the row estimates, the version's name
/// reserved) runs before the first that takes one. From that `ALTER TABLE` to the commit every writer of the table waits, so
/// that window holds only what must see the new columns: the DDL (one pipeline), the checks of
/// what `up` and `down` read, the sync triggers and the high-water marks.
async fn expand(
    client: &mut Client,
    file: &MigrationFile,
) -> Result<MigrationRecord, MigrateError> {
    let migration = &file.migration;
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the expand transaction", &error))?;
    catalog::set_local_lock_timeout(&transaction, migration.settings.lock_timeout).await?;
    catalog::try_apply_lock(&transaction).await?;
    let (_, plan) = plan_against(&transaction, file).await?;
    refuse_foreign_substitute_schema(&transaction, &migration.version).await?;
    refuse_taken_view_names(&transaction, &plan.definition, &file.path).await?;
    let old_side = old_side(&transaction, &migration.version).await?;
    let mut checkpoints = BTreeMap::new();
    for backfill_plan in &plan.backfills {
        let estimate = start_point::estimate_rows(&transaction, backfill_plan).await?;
        checkpoints.insert(
            checkpoint_key(backfill_plan),
            start_point::fresh_checkpoint(None, estimate),
        );
    }
    let file_name = file.path.display().to_string();
    let id = state::insert(
        &transaction,
        &file_name,
        &file.checksum,
        migration,
        &plan,
        &checkpoints,
    )
    .await?;
    catalog::reserve_version(
        &transaction,
        &migration.version,
        plan.definition.layout.as_str(),
        &file_name,
    )
    .await?;
    run_pipelined(&transaction, &migration.version, &plan.expand).await?;
    preconditions::refuse_reads_beyond_the_versions(&transaction, &plan).await?;
    for table_sync in &plan.syncs {
        let sql = sync::create_sql(id, table_sync, &old_side);
        run_sql(
            &transaction,
            &migration.version,
            &format!(
                "creating the sync triggers on {}.{}",
                table_sync.schema, table_sync.table
            ),
            &sql,
        )
        .await?;
    }
    // Taken under the expand's locks, after the triggers exist: the backfill visits exactly
    // the rows that existed before them.
    for backfill_plan in &plan.backfills {
        let key = checkpoint_key(backfill_plan);
        let high_water = start_point::high_water(&transaction, backfill_plan).await?;
        let estimate = checkpoints
            .get(&key)
            .map_or(0, |checkpoint| checkpoint.estimate);
        let checkpoint = start_point::fresh_checkpoint(high_water, estimate);
        state::save_checkpoint(&transaction, id, &key, &checkpoint).await?;
        checkpoints.insert(key, checkpoint);
    }
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the expand", &error))?;
    Ok(MigrationRecord {
        id,
        version: migration.version.clone(),
        from: migration.from.clone(),
        file: file_name,
        checksum: file.checksum.clone(),
        migration: migration.clone(),
        plan,
        phase: Phase::Backfilling,
        backfill: checkpoints,
        started_at: String::new(),
    })
}

/// The new version's views, `pending` (the proxies learn of it at once: no session may name
/// its views while it backfills, `RoutingMap::pending_views`), in a transaction of their own
/// after the expand's. `CREATE VIEW` takes no lock the application's reads and writes wait
/// for, and rendering and creating the views is the longest part of the expand: in its
/// transaction it kept every writer of the table waiting (94 ms of a 110 ms window, on two
/// cores shared with eight writers). Made by `migrate start` after the expand and, when a run
/// was killed before they were, by the one that resumes it; a failure here rolls the
/// migration back, as any after the expand.
async fn create_pending_views(
    client: &mut Client,
    record: &MigrationRecord,
    templates: &Templates,
) -> Result<(), MigrateError> {
    let settings = record.migration.settings;
    let attempted = with_lock_retries(settings.max_attempts, settings.lock_timeout, async || {
        let transaction = client
            .transaction()
            .await
            .map_err(|error| ControlError::database("starting a transaction", &error))?;
        catalog::set_local_lock_timeout(&transaction, settings.lock_timeout).await?;
        catalog::wait_apply_lock(&transaction).await?;
        // The expand reserved the version without a definition; one recorded means an
        // earlier run made the views.
        if definition::load(&transaction, &record.version)
            .await?
            .is_some()
        {
            return Ok(());
        }
        create_views(
            &transaction,
            &record.plan.definition,
            std::path::Path::new(&record.file),
            templates,
            Substitutes::AtGoingLive,
            Some(&record.from),
        )
        .await?;
        transaction
            .execute(
                "UPDATE viewgate.versions SET state = 'pending' WHERE version = $1",
                &[&record.version],
            )
            .await
            .map_err(|error| ControlError::database("marking the new version pending", &error))?;
        record_event(
            &transaction,
            "migrate_start",
            (&record.file, &record.checksum),
            &[record.from.clone(), record.version.clone()],
            None,
            true,
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(|error| ControlError::database("creating the new version's views", &error))
            .map_err(MigrateError::from)
    })
    .await;
    attempted.result
}

/// How long a phase's statements may wait for their locks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LockWait {
    /// Under the migration's lock timeout: the application queues behind a statement that
    /// waits for a lock conflicting with its writes.
    Bounded,
    /// As long as they need: `VALIDATE CONSTRAINT` takes a lock no read or write conflicts
    /// with. Right after a backfill, which leaves every row it updated dead, autovacuum is on
    /// the table holding the same lock: a bounded wait timed out until the attempts ran out
    /// and the migration failed, where one of Postgres's `deadlock_timeout` cancels it.
    AsLongAsNeeded,
}

/// Runs each of `steps` in a transaction of its own, waiting for its locks as `wait` says,
/// retried with backoff when it times out.
async fn run_each_in_a_transaction(
    client: &mut Client,
    record: &MigrationRecord,
    (steps, wait): (&[Step], LockWait),
    progress: &mut dyn Progress,
) -> Result<(), MigrateError> {
    let settings = record.migration.settings;
    let lock_timeout = match wait {
        LockWait::Bounded => settings.lock_timeout,
        LockWait::AsLongAsNeeded => Duration::ZERO,
    };
    for step in steps {
        progress.step(&step.description);
        let attempted =
            with_lock_retries(settings.max_attempts, settings.lock_timeout, async || {
                let transaction = client
                    .transaction()
                    .await
                    .map_err(|error| ControlError::database("starting a transaction", &error))?;
                catalog::set_local_lock_timeout(&transaction, lock_timeout).await?;
                transaction
                    .batch_execute(&step.sql)
                    .await
                    .map_err(|error| ControlError::database(step.description.clone(), &error))?;
                transaction
                    .commit()
                    .await
                    .map_err(|error| ControlError::database(step.description.clone(), &error))
            })
            .await;
        attempted.result.map_err(|error| {
            MigrateError::step_failed(&record.version, &step.description, error)
        })?;
    }
    Ok(())
}

/// Backfill, validate, build indexes, go live. Returns the rows backfilled.
async fn finish(
    client: &mut Client,
    record: &mut MigrationRecord,
    templates: &Templates,
    progress: &mut dyn Progress,
) -> Result<u64, MigrateError> {
    progress.step(&format!("views of {}", record.version));
    create_pending_views(client, record, templates).await?;
    let settings = record.migration.settings;
    let mut rows = 0;
    for backfill_plan in &record.plan.backfills {
        let key = checkpoint_key(backfill_plan);
        progress.step(&format!("backfill {key}"));
        let skipped_triggers =
            backfill_triggers::refuse_firing(client, &record.version, backfill_plan).await?;
        let checkpoint = backfill::run(
            client,
            (record.id, backfill_plan),
            record.backfill.get(&key).cloned(),
            &settings,
            &skipped_triggers,
            progress,
        )
        .await?;
        rows += checkpoint.rows;
    }
    run_each_in_a_transaction(
        client,
        record,
        (&record.plan.validate, LockWait::AsLongAsNeeded),
        progress,
    )
    .await?;
    // A run killed after a foreign key into a rebuilt index was added: the key holds the
    // index, which the builds below drop and make again.
    run_each_in_a_transaction(
        client,
        record,
        (&record.plan.rollback_referencing, LockWait::Bounded),
        progress,
    )
    .await?;
    concurrent_builds::build(client, record, progress).await?;
    index_partitions_created_since(client, record, progress).await?;
    concurrent_builds::refuse_invalid(client, record).await?;
    run_each_in_a_transaction(
        client,
        record,
        (&record.plan.referencing, LockWait::Bounded),
        progress,
    )
    .await?;
    progress.step("live");
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting a transaction", &error))?;
    catalog::wait_apply_lock(&transaction).await?;
    create_substitutes(
        &transaction,
        &record.plan.definition,
        std::path::Path::new(&record.file),
        templates,
    )
    .await?;
    transaction
        .execute(
            "UPDATE viewgate.versions SET state = 'active', applied_at = now() WHERE version = $1",
            &[&record.version],
        )
        .await
        .map_err(|error| ControlError::database("making the new version active", &error))?;
    state::set_phase(&transaction, record.id, Phase::Live).await?;
    record_event(
        &transaction,
        "migrate_live",
        (&record.file, &record.checksum),
        std::slice::from_ref(&record.version),
        None,
        true,
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("making the new version live", &error))?;
    Ok(rows)
}
