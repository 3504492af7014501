//! What every migration phase does the same way: bring the catalog up to date, run one
//! statement, or several as one pipeline, with its description (a lock timeout stays
//! retryable, anything else names the step) or run statements outside a transaction under the
//! lock timeout, skip a step on a partition that is gone, and create a version's views and
//! catalog substitutes from its definition.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Transaction};

use super::derive::{OnPartition, Step};
use super::error::MigrateError;
use super::progress::Progress;
use super::settings::MigrationSettings;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::retry::with_lock_retries;
use crate::control::templates::Templates;
use crate::control::views::definition::{self, VersionDefinition};
use crate::control::views::introspect::ServerSnapshot;
use crate::control::views::{apply, generate, grants, plan, validate};
use crate::model::catalog_substitutes::substitute_schema;
use crate::net::postgres_error::{describe_postgres_error, describe_postgres_error_hinting};

/// Creates or upgrades the catalog (idempotent), under the apply lock.
pub async fn prepare_catalog(
    client: &mut Client,
    templates: &Templates,
) -> Result<(), MigrateError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting a transaction", &error))?;
    catalog::wait_apply_lock(&transaction).await?;
    catalog::ensure_catalog(&transaction, templates).await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("preparing the catalog", &error))?;
    Ok(())
}

/// Why `step` is no longer to run, if it is not: a step on a partition that is no longer one
/// of the parent it was planned under (detached, or dropped).
pub async fn gone_partition(
    client: &impl GenericClient,
    step: &Step,
) -> Result<Option<String>, ControlError> {
    let Some(OnPartition { partition, parent }) = &step.on_partition else {
        return Ok(None);
    };
    let still: bool = client
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_catalog.pg_inherits
                  WHERE inhrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                    AND inhparent = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $3::text, $4::text)))",
            &[&partition.0, &partition.1, &parent.0, &parent.1],
        )
        .await
        .map_err(|error| {
            ControlError::database(format!("looking up partition {}.{}", partition.0, partition.1), &error)
        })?
        .get(0);
    Ok((!still).then(|| {
        format!(
            "skipped ({}.{} is no longer a partition of {}.{}): {}",
            partition.0, partition.1, parent.0, parent.1, step.description
        )
    }))
}

/// Runs `sql`; a lock timeout stays a [`ControlError::LockNotAvailable`] so the caller retries.
pub async fn run_sql(
    client: &impl GenericClient,
    version: &str,
    what: &str,
    sql: &str,
) -> Result<(), MigrateError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|error| step_error(version, what, &error))
}

/// A failed statement of step `what`: a lock timeout stays retryable, anything else names the
/// step.
fn step_error(version: &str, what: &str, error: &tokio_postgres::Error) -> MigrateError {
    if crate::control::error::is_lock_timeout(error) {
        MigrateError::Control(ControlError::database(what.to_owned(), error))
    } else {
        MigrateError::Failed {
            version: version.to_owned(),
            step: what.to_owned(),
            message: step_failure(error),
            aftermath: "its transaction was rolled back: nothing was changed".to_owned(),
        }
    }
}

/// Runs `steps` in order as one pipeline: sent together, they hold a lock taken by the first
/// for one round trip to the server rather than one each. Postgres refuses every statement
/// after a failed one (the transaction is aborted), so the first failure is the one reported,
/// as [`run_sql`] reports it.
pub async fn run_pipelined(
    client: &impl GenericClient,
    version: &str,
    steps: &[Step],
) -> Result<(), MigrateError> {
    let results =
        futures_util::future::join_all(steps.iter().map(|step| client.batch_execute(&step.sql)))
            .await;
    for (step, result) in steps.iter().zip(results) {
        result.map_err(|error| step_error(version, &step.description, &error))?;
    }
    Ok(())
}

/// What a step's failure says: Postgres's message, but for a drop refused while other objects
/// depend on what it drops (2BP01), whose hint (`Use DROP ... CASCADE`) a migration cannot
/// take: it never drops the application's objects.
fn step_failure(error: &tokio_postgres::Error) -> String {
    if error.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) {
        describe_postgres_error_hinting(
            error,
            "viewgate never drops with CASCADE: drop or change what the detail names so that it no longer depends on it, then run the command again",
        )
    } else {
        describe_postgres_error(error)
    }
}

/// How the statements that wait without blocking the application begin: `CREATE INDEX
/// CONCURRENTLY` and `DROP INDEX CONCURRENTLY` take a lock no read or write conflicts with,
/// then wait for every transaction older than their snapshot. A lock timeout cut those waits:
/// behind a report holding its snapshot for a few seconds every attempt timed out, then so did
/// the rollback's drop, and the migration failed after its whole backfill, half rolled back.
const WAITING_WITHOUT_BLOCKING: [&str; 3] = [
    "CREATE INDEX CONCURRENTLY ",
    "CREATE UNIQUE INDEX CONCURRENTLY ",
    "DROP INDEX CONCURRENTLY ",
];

/// Runs `statements` one by one outside any transaction (a `CONCURRENTLY` statement cannot
/// run in one), each that could keep the application waiting under the migration's lock
/// timeout, all of them again with backoff when one times out.
pub async fn run_alone(
    client: &Client,
    settings: MigrationSettings,
    what: &str,
    statements: &[&str],
) -> Result<(), ControlError> {
    let bounded = format!("{}ms", settings.lock_timeout.as_millis());
    let attempted = with_lock_retries(settings.max_attempts, settings.lock_timeout, async || {
        for sql in statements {
            let waits_harmlessly = WAITING_WITHOUT_BLOCKING
                .iter()
                .any(|start| sql.starts_with(start));
            client
                .execute(
                    "SELECT pg_catalog.set_config('lock_timeout', $1, false)",
                    &[&if waits_harmlessly {
                        "0"
                    } else {
                        bounded.as_str()
                    }],
                )
                .await
                .map_err(|error| ControlError::database("setting lock_timeout", &error))?;
            client
                .batch_execute(sql)
                .await
                .map_err(|error| ControlError::database(what.to_owned(), &error))?;
        }
        Ok(())
    })
    .await;
    let _ = client.batch_execute("RESET lock_timeout").await;
    attempted.result
}

/// Runs `steps` one by one with [`run_alone`] once a phase's transaction has committed: a
/// failure cannot undo that phase, so it says, in `left(step)`, what is left and how to do it.
pub async fn run_after_commit<'a>(
    client: &Client,
    (version, settings): (&str, MigrationSettings),
    steps: impl IntoIterator<Item = &'a Step>,
    left: impl Fn(&Step) -> String,
    progress: &mut dyn Progress,
) -> Result<(), MigrateError> {
    for step in steps {
        progress.step(&step.description);
        run_alone(client, settings, &step.description, &[&step.sql])
            .await
            .map_err(|error| MigrateError::Failed {
                version: version.to_owned(),
                step: step.description.clone(),
                message: error.to_string(),
                aftermath: left(step),
            })?;
    }
    Ok(())
}

/// When [`create_views`] makes the version's catalog substitutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Substitutes {
    /// With the views, in the same transaction.
    WithViews,
    /// Later, by [`create_substitutes`] when the version goes live. The expand holds its
    /// table's ACCESS EXCLUSIVE lock until it commits, and the substitutes are the slowest
    /// part of it (50 of 83 ms in a loaded run, every writer of the table queued meanwhile);
    /// no session can use a pending version, so none misses them.
    AtGoingLive,
    /// Returned as a step to run once the transaction has committed: the contract, whose
    /// renames the substitutes name, holds its tables' locks until it commits, and they took
    /// 80 of its 116 ms on an idle server. Meanwhile introspection of the version shows the
    /// renamed columns without what the base columns give them (nullability, defaults, keys).
    AfterCommit,
}

/// Generates, creates and records the views of `definition`'s version (and the definition).
/// A view made anew keeps its grants; with `grants_from`, each new view also takes the grants
/// of that version's view of the same base table (the version a migration starts from).
/// Returns, with [`Substitutes::AfterCommit`], the step that makes the catalog substitutes.
pub async fn create_views(
    transaction: &Transaction<'_>,
    definition: &VersionDefinition,
    source: &std::path::Path,
    templates: &Templates,
    substitutes: Substitutes,
    grants_from: Option<&str>,
) -> Result<Vec<Step>, MigrateError> {
    let mut after_commit = Vec::new();
    let spec = definition.to_spec(source);
    let view_plan = plan::against_database(transaction, &spec).await?;
    let mut generated = generate::render(&view_plan, templates)?;
    let recorded_objects = catalog::load_objects(transaction).await?;
    validate::check_names_are_free(transaction, &spec, &view_plan, &recorded_objects).await?;
    for version in &mut generated.versions {
        match substitutes {
            Substitutes::WithViews => {}
            Substitutes::AtGoingLive => {
                // Refused now rather than after the backfill.
                refuse_foreign_substitute_schema(transaction, &version.name).await?;
                version.catalog.clear();
            }
            Substitutes::AfterCommit if !version.catalog.is_empty() => {
                after_commit.push(Step::new(
                    format!("remake the catalog substitutes of version {}", version.name),
                    std::mem::take(&mut version.catalog),
                ));
            }
            Substitutes::AfterCommit => {}
        }
        let recorded: Vec<_> = recorded_objects
            .iter()
            .filter(|object| object.version == version.name)
            .collect();
        apply::apply_version(transaction, &spec, templates, version, &recorded).await?;
        if let Some(from) = grants_from {
            for view in &version.views {
                let plan = &view.plan;
                let earlier = recorded_objects.iter().find(|object| {
                    object.version == from
                        && object.base_schema == plan.base_schema
                        && object.base_table == plan.base_table
                });
                if let Some(earlier) = earlier {
                    let taken =
                        grants::read(transaction, &earlier.view_schema, &earlier.view_name).await?;
                    grants::give(transaction, &plan.view_schema, &plan.view_name, &taken).await?;
                }
            }
        }
    }
    definition::record(transaction, definition).await?;
    Ok(after_commit)
}

/// Refuses, before the expand changes anything, a name the new version's views or their
/// trigger functions would take that an object of the application's holds (a table
/// `models_v2`): the views are made after the expand commits, where the same check would roll
/// the migration back. The names are planned offline, since they need no columns; a
/// definition that cannot be planned so is left to that later check.
pub async fn refuse_taken_view_names(
    client: &impl GenericClient,
    definition: &VersionDefinition,
    source: &std::path::Path,
) -> Result<(), MigrateError> {
    let spec = definition.to_spec(source);
    let Ok(offline) = plan::build(&spec, &ServerSnapshot::default()) else {
        return Ok(());
    };
    let recorded_objects = catalog::load_objects(client).await?;
    match validate::check_names_are_free(client, &spec, &offline, &recorded_objects).await {
        Err(ControlError::Mismatch {
            context, problem, ..
        }) => Err(MigrateError::Refused {
            version: definition.version.name.clone(),
            operation: context,
            problem,
        }),
        checked => Ok(checked?),
    }
}

/// Refuses a schema of the name `version`'s catalog substitutes will take that viewgate did
/// not make: the expand checks before it changes anything, not after the backfill.
pub async fn refuse_foreign_substitute_schema(
    client: &impl GenericClient,
    version: &str,
) -> Result<(), MigrateError> {
    if apply::substitute_schema_is_foreign(client, version).await? {
        return Err(MigrateError::Refused {
            version: version.to_owned(),
            operation: "the new version's catalog substitutes".into(),
            problem: format!(
                "schema {} exists and is not viewgate's: rename it, viewgate keeps the catalog substitutes of version {version} there",
                substitute_schema(version),
            ),
        });
    }
    Ok(())
}

/// Creates the catalog substitutes of `definition`'s version, whose views exist.
pub async fn create_substitutes(
    transaction: &Transaction<'_>,
    definition: &VersionDefinition,
    source: &std::path::Path,
    templates: &Templates,
) -> Result<(), MigrateError> {
    let spec = definition.to_spec(source);
    let view_plan = plan::against_database(transaction, &spec).await?;
    let generated = generate::render(&view_plan, templates)?;
    for version in &generated.versions {
        apply::create_substitutes(transaction, version).await?;
    }
    Ok(())
}

/// Records a migration event in `apply_history` inside `transaction`, and with `announce`
/// tells every proxy (NOTIFY, delivered on commit) that versions changed.
pub async fn record_event(
    transaction: &Transaction<'_>,
    action: &'static str,
    record: (&str, &str),
    versions: &[String],
    note: Option<&str>,
    announce: bool,
) -> Result<(), MigrateError> {
    let (file, checksum) = record;
    catalog::record_history(
        transaction,
        &HistoryEntry {
            action,
            success: true,
            spec_file: Some(file.to_owned()),
            spec_checksum: Some(checksum.to_owned()),
            versions: versions.to_vec(),
            duration: std::time::Duration::ZERO,
            attempts: 1,
            error: note.map(str::to_owned),
        },
    )
    .await?;
    if announce {
        catalog::notify_change(transaction, "migrate", versions).await?;
    }
    Ok(())
}
