//! `viewgate migrate complete`: the contract. Retires the oldest live migration's previous
//! version — its views, the sync triggers that served its writers — then drops what only it
//! used and renames the physical schema into the new version's shape. Refused, naming each
//! proxy and its live sessions, while anything still uses the previous version.
//!
//! Physical renames are followed everywhere they are recorded: the definitions of the versions
//! that remain (their views are regenerated, so `views status` sees no drift) and the plans and
//! triggers of later migrations that are still live.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::{Client, Transaction};

use super::autovacuum;
use super::dependents;
use super::derive::{ColumnMap, MigrationPlan, Rename, Step, rename_physical, rename_table_name};
use super::detached::{self, Tidy};
use super::error::MigrateError;
use super::function_bodies;
use super::left_over;
use super::lock_holders;
use super::lock_order;
use super::new_partitions::index_partitions_created_since;
use super::progress::Progress;
use super::publications::{self, Asked};
use super::rebuild;
use super::remaining;
use super::rename_chain;
use super::replica_identity;
use super::state::{self, MigrationRecord, Phase};
use super::steps::{
    Substitutes, create_views, gone_partition, prepare_catalog, record_event, run_after_commit,
    run_sql,
};
use super::sync;
use super::target::{self, Chosen};
use super::trigger_fields;
use crate::control::catalog;
use crate::control::error::ControlError;
use crate::control::retry::with_lock_retries;
use crate::control::templates::Templates;
use crate::control::usage;
use crate::control::views::apply::{CatalogDrop, drop_catalog_sql, drop_sql};
use crate::control::views::definition::{self, VersionDefinition};
use crate::control::views::spec::ColumnSource;

#[derive(Debug, Clone, Serialize)]
pub struct CompleteOutcome {
    pub version: String,
    pub retired: String,
    pub seconds: f64,
    /// The migration named was completed before this command (`target.rs`).
    pub already_done: bool,
}

/// Completes the oldest live migration, which must be the one to `named` if it is given.
pub async fn complete(
    client: &mut Client,
    templates: &Templates,
    named: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<CompleteOutcome, MigrateError> {
    state::with_lock(client, async |client| {
        complete_locked(client, templates, named, progress).await
    })
    .await
}

async fn complete_locked(
    client: &mut Client,
    templates: &Templates,
    named: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<CompleteOutcome, MigrateError> {
    let started = Instant::now();
    prepare_catalog(client, templates).await?;
    left_over::finish_earlier(client, progress).await?;
    let current = state::load_current(client).await?;
    let phases: Vec<(&str, Phase)> = current
        .iter()
        .map(|record| (record.version.as_str(), record.phase))
        .collect();
    let position = match target::for_complete(&phases, named)? {
        Chosen::At(position) => position,
        Chosen::AlreadyDone => {
            let done = current
                .iter()
                .rev()
                .find(|record| Some(record.version.as_str()) == named);
            return Ok(CompleteOutcome {
                version: named.unwrap_or_default().to_owned(),
                retired: done.map(|record| record.from.clone()).unwrap_or_default(),
                seconds: started.elapsed().as_secs_f64(),
                already_done: true,
            });
        }
    };
    let mut live = current[position].clone();
    let record = &current[position];
    if record.phase != Phase::Live {
        return Err(MigrateError::State(format!(
            "the migration to {} is still backfilling; run `viewgate migrate start` on its file to finish it first",
            record.version
        )));
    }
    let reasons = usage::reasons_in_use(client, &record.from).await?;
    if !reasons.is_empty() {
        return Err(MigrateError::InUse {
            action: format!(
                "completing the migration to {} (which retires {})",
                record.version, record.from
            ),
            reasons: reasons.join("; "),
        });
    }
    let later: Vec<&MigrationRecord> = current[position + 1..].iter().collect();
    // Refused at their start since that check came in; a later migration an earlier build
    // started may still name what this complete renames (`rename_chain.rs`).
    let blocked = later.iter().find_map(|later| {
        rename_chain::renamed_and_named(&record.plan, &later.plan, later.phase)
            .map(|renamed| (later.version.clone(), renamed))
    });
    if let Some((blocking, renamed)) = blocked {
        return Err(MigrateError::State(format!(
            "completing the migration to {} renames {renamed}, which the migration to {blocking} (started after it) names in its recorded SQL: its backfill, complete or rollback would then fail. Roll the migration to {blocking} back (`viewgate migrate rollback`), complete this one, then start it again",
            record.version
        )));
    }
    // Before the contract, which would build them under its lock.
    index_partitions_created_since(client, &mut live, progress)
        .await
        .map_err(|error| match error {
            MigrateError::Failed {
                version,
                step,
                message,
                ..
            } => MigrateError::Failed {
                version,
                step,
                message,
                aftermath: "the migration is still live and nothing of its contract was done; once the cause is fixed, run `viewgate migrate complete` again".to_owned(),
            },
            other => other,
        })?;
    let record = &live;
    let settings = record.migration.settings;
    let tables = lock_order::physical_tables(&record.plan);
    progress.step(&format!(
        "contract: retire {} (drop what only it needed, put the tables in {}'s shape)",
        record.from, record.version
    ));
    let mut attempts = 0;
    let attempted = with_lock_retries(settings.max_attempts, settings.lock_timeout, async || {
        attempts += 1;
        if attempts > 1 {
            autovacuum::cancel_in_the_way(client, &tables).await;
            lock_holders::warn_holders(client, &tables, attempts).await;
        }
        complete_once(client, record, &later, templates).await
    })
    .await;
    let Contracted {
        after_commit,
        analyze,
    } = match attempted.result {
        Ok(contracted) => contracted,
        Err(error) => return Err(lock_holders::name_holders(client, &tables, error).await),
    };
    // After the contract's commit: a failure here cannot undo it, so it says what is left.
    left_over::run(
        client,
        (record.id, &record.version, settings),
        &after_commit,
        |step| {
            format!(
                "the migration is complete ({} retired), and this is left ({}): {}",
                record.from,
                step.description,
                left_over::KEPT
            )
        },
        progress,
    )
    .await?;
    // Statistics only: autovacuum gathers them too, so they are not kept as left to run.
    run_after_commit(
        client,
        (&record.version, settings),
        &analyze,
        |step| {
            format!(
                "the migration is complete ({} retired) and only this was not done: run `{}`",
                record.from, step.sql
            )
        },
        progress,
    )
    .await?;
    Ok(CompleteOutcome {
        version: record.version.clone(),
        retired: record.from.clone(),
        seconds: started.elapsed().as_secs_f64(),
        already_done: false,
    })
}

/// What the contract's transaction leaves to run once it has committed.
struct Contracted {
    /// Kept in the catalog until done (`left_over.rs`): the index drops that cannot run in a
    /// transaction, and the catalog substitutes its renames changed.
    after_commit: Vec<Step>,
    /// `ANALYZE` of the relations whose extended statistics were made again.
    analyze: Vec<Step>,
}

async fn complete_once(
    client: &mut Client,
    record: &MigrationRecord,
    later: &[&MigrationRecord],
    templates: &Templates,
) -> Result<Contracted, MigrateError> {
    let mut transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the complete transaction", &error))?;
    catalog::set_local_lock_timeout(&transaction, record.migration.settings.lock_timeout).await?;
    catalog::try_apply_lock(&transaction).await?;
    rebuild::check_before_contract(&transaction, &record.plan).await?;
    dependents::refuse_dependents(&transaction, &record.plan).await?;
    replica_identity::refuse_lost_replica_identity(&transaction, &record.plan).await?;
    trigger_fields::refuse_stale_trigger_fields(&transaction, &record.plan).await?;
    function_bodies::refuse_stale_function_bodies(&transaction, &record.plan).await?;
    publications::refuse_unready_subscribers(
        &transaction,
        &record.plan,
        record.migration.settings.subscribers_ready,
        Asked::TheContract,
    )
    .await?;
    let meanings = remaining::Meanings::before(&transaction, &record.plan).await?;
    let carried = rebuild::carried_settings(&transaction, &record.plan).await?;
    let statistics = rebuild::held_statistics(&transaction, &record.plan).await?;
    lock_order::lock_views_then_tables(
        &transaction,
        (&record.version, &record.from),
        &record.plan,
        lock_order::Phase::Contract,
    )
    .await?;
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
    let identities = rebuild::held_identities(&transaction, &record.plan).await?;
    for object in catalog::load_objects(&transaction)
        .await?
        .iter()
        .filter(|object| object.version == record.from)
    {
        let sql = drop_sql(templates, object)?;
        run_sql(
            &transaction,
            &record.version,
            "dropping the retired version's views",
            &sql,
        )
        .await?;
    }
    catalog::retire_version(&transaction, &record.from).await?;
    for step in &carried {
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    for step in &record.plan.complete {
        if let Some(skipped) = gone_partition(&transaction, step).await? {
            tracing::info!("{skipped}");
            continue;
        }
        // A rebuilt index's column named as the new column was, under the lock the steps
        // before took (`rebuild/index_names.rs`): only a name, never failing the contract.
        if let Some(kept) = rebuild::index_column_kept(&transaction, step).await? {
            tracing::warn!("{kept}");
            continue;
        }
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    for step in detached::tidy_steps(&transaction, &record.plan, Tidy::Contract).await? {
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    for step in rebuild::identity_steps(&transaction, &identities).await? {
        run_sql(&transaction, &record.version, &step.description, &step.sql).await?;
    }
    let analyze = rebuild::remake_statistics(&mut transaction, &statistics)
        .await?
        .into_iter()
        .map(|relation| {
            Step::new(
                format!("gather the extended statistics made again on {relation}"),
                format!("ANALYZE {relation}"),
            )
        })
        .collect();
    // The substitutes first: until they run, introspection shows the renamed columns bare.
    let mut after_commit = Vec::new();
    if !record.plan.renames.is_empty() {
        after_commit = follow_renames(&transaction, record, later, templates).await?;
    }
    // Nothing reads a retired version's substitutes, and dropping their dozens of views took
    // 11–14 ms of the tables' lock.
    after_commit.push(Step::new(
        format!(
            "drop the catalog substitutes of retired version {}",
            record.from
        ),
        drop_catalog_sql(templates, &record.from, CatalogDrop::AfterTheCommit)?,
    ));
    after_commit.extend(record.plan.complete_concurrent.iter().cloned());
    meanings.check(&transaction, &record.plan).await?;
    state::set_phase(&transaction, record.id, Phase::Completed).await?;
    left_over::record(&transaction, record.id, &after_commit).await?;
    record_event(
        &transaction,
        "migrate_complete",
        (&record.file, &record.checksum),
        &[record.from.clone(), record.version.clone()],
        None,
        true,
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the contract", &error))?;
    Ok(Contracted {
        after_commit,
        analyze,
    })
}

/// Rewrites every recorded definition and later plan to the renamed physical names, and
/// regenerates what was generated from them; the catalog substitutes are returned, as steps
/// to run after the contract commits (see [`Substitutes::AfterCommit`]).
async fn follow_renames(
    transaction: &Transaction<'_>,
    record: &MigrationRecord,
    later: &[&MigrationRecord],
    templates: &Templates,
) -> Result<Vec<Step>, MigrateError> {
    let mut substitutes = Vec::new();
    let renames = &record.plan.renames;
    let versions = catalog::load_versions(transaction).await?;
    for (name, recorded) in &versions {
        if recorded.state == "retired" {
            continue;
        }
        let Some(mut definition) = definition::load(transaction, name).await? else {
            continue;
        };
        if let Some(reader) = read_expression_naming(&definition, renames) {
            return Err(MigrateError::Refused {
                version: record.version.clone(),
                operation: "the contract's renames".into(),
                problem: format!(
                    "version {name} reads base column {}.{} in the expression of its column {} (table {}); its view would follow the rename but its write trigger and mapping functions, made from the expression's text, would name a column that no longer exists, or a later column of that name. Retire version {name} (viewgate views drop) before completing",
                    reader.table, reader.renamed, reader.column, reader.table
                ),
            });
        }
        if rename_definition(&mut definition, renames) {
            let source = std::path::PathBuf::from(&record.file);
            substitutes.extend(
                create_views(
                    transaction,
                    &definition,
                    &source,
                    templates,
                    Substitutes::AfterCommit,
                    None,
                )
                .await?,
            );
        }
    }
    for (at, later_record) in later.iter().enumerate() {
        let mut plan = later_record.plan.clone();
        rename_plan(&mut plan, renames);
        let sides = old_side_of(versions.keys(), later_record, &later[at + 1..]);
        for table_sync in &plan.syncs {
            let sql = format!(
                "{}{}",
                sync::drop_sql(later_record.id, &table_sync.schema, &table_sync.table),
                sync::create_sql(later_record.id, table_sync, &sides)
            );
            run_sql(
                transaction,
                &later_record.version,
                "recreating a later migration's sync triggers",
                &sql,
            )
            .await?;
        }
        state::save_plan(transaction, later_record.id, &plan).await?;
    }
    Ok(substitutes)
}

/// The versions whose writers count as older than `record`'s new version: what its start
/// counted (every version but its own, `start.rs`), less those made by the migrations after
/// it. The thirty-first red-team pass completed a migration with renames under two later ones
/// and, with every version on the old side, the newest version's inserts skipped the down
/// of the one before it and failed.
fn old_side_of<'v>(
    versions: impl Iterator<Item = &'v String>,
    record: &MigrationRecord,
    newer: &[&MigrationRecord],
) -> Vec<String> {
    versions
        .filter(|version| {
            **version != record.version && !newer.iter().any(|later| later.version == **version)
        })
        .cloned()
        .collect()
}

fn rename_column_map(map: &mut ColumnMap, schema: &str, table: &str, renames: &[Rename]) {
    for (_, physical) in map.iter_mut() {
        rename_physical(physical, schema, table, renames);
    }
}

/// Applies `renames` to a definition; whether anything changed.
pub fn rename_definition(definition: &mut VersionDefinition, renames: &[Rename]) -> bool {
    let before = definition.clone();
    for version_table in &mut definition.version.tables {
        let Some(managed) = before.managed(&version_table.base) else {
            continue;
        };
        for column in &mut version_table.columns {
            match &mut column.source {
                ColumnSource::Physical { base_column } => {
                    rename_physical(base_column, &managed.schema, &managed.name, renames);
                }
                ColumnSource::Expression { write, .. } => {
                    rename_keys(write, &managed.schema, &managed.name, renames);
                }
            }
        }
        rename_keys(
            &mut version_table.hidden_defaults,
            &managed.schema,
            &managed.name,
            renames,
        );
        let mut base = version_table.base.clone();
        rename_table_name(&mut base, &managed.schema, renames);
        version_table.base = base;
    }
    for managed in &mut definition.tables {
        let schema = managed.schema.clone();
        let table = managed.name.clone();
        for key in &mut managed.key {
            rename_physical(key, &schema, &table, renames);
        }
        rename_table_name(&mut managed.name, &schema, renames);
    }
    *definition != before
}

/// Renames the base columns a map is keyed by (a column's write-backs, a version's hidden
/// defaults).
fn rename_keys(
    map: &mut std::collections::BTreeMap<String, String>,
    schema: &str,
    table: &str,
    renames: &[Rename],
) {
    *map = std::mem::take(map)
        .into_iter()
        .map(|(mut column, value)| {
            rename_physical(&mut column, schema, table, renames);
            (column, value)
        })
        .collect();
}

/// An expression column whose read expression names a column the contract renames.
struct RenamedRead {
    table: String,
    column: String,
    renamed: String,
}

/// The first read expression of `definition` that names a column `renames` renames. Its view
/// follows the rename (Postgres stores a view's columns by number), but the expression's text,
/// which the write trigger and the mapping functions are made from, does not (the forty-ninth
/// red-team pass: regenerated, they named a column that was gone, and once a later migration
/// added one of that name they read and wrote it). Matched as a word, case-insensitively, so
/// a string or another relation's column that merely has the name refuses too.
fn read_expression_naming(
    definition: &VersionDefinition,
    renames: &[Rename],
) -> Option<RenamedRead> {
    for read in definition.expression_columns() {
        let managed = read.base;
        let words: Vec<&str> = read
            .expression
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .collect();
        for rename in renames {
            if let Rename::Column {
                schema,
                table,
                from,
                ..
            } = rename
                && *schema == managed.schema
                && *table == managed.name
                && words.iter().any(|word| word.eq_ignore_ascii_case(from))
            {
                return Some(RenamedRead {
                    table: managed.name.clone(),
                    column: read.column.to_owned(),
                    renamed: from.clone(),
                });
            }
        }
    }
    None
}

/// Applies `renames` to a later migration's plan (what its triggers and backfill read).
pub fn rename_plan(plan: &mut MigrationPlan, renames: &[Rename]) {
    rename_definition(&mut plan.definition, renames);
    for table_sync in &mut plan.syncs {
        let (schema, table) = (table_sync.schema.clone(), table_sync.table.clone());
        rename_column_map(&mut table_sync.up_columns, &schema, &table, renames);
        rename_column_map(&mut table_sync.down_columns, &schema, &table, renames);
        for assign in table_sync.up.iter_mut().chain(table_sync.down.iter_mut()) {
            rename_physical(&mut assign.target, &schema, &table, renames);
        }
        for filled in table_sync
            .filled
            .iter_mut()
            .chain(table_sync.defaulted.iter_mut())
        {
            rename_physical(filled, &schema, &table, renames);
        }
        rename_table_name(&mut table_sync.table, &schema, renames);
    }
    for backfill in &mut plan.backfills {
        let (schema, table) = (backfill.schema.clone(), backfill.table.clone());
        rename_column_map(&mut backfill.columns, &schema, &table, renames);
        for (key, _) in &mut backfill.key {
            rename_physical(key, &schema, &table, renames);
        }
        for assign in &mut backfill.assigns {
            rename_physical(&mut assign.target, &schema, &table, renames);
        }
        rename_table_name(&mut backfill.table, &schema, renames);
    }
}
