//! What a phase leaves to run once its transaction has committed — the index drops a
//! `DROP INDEX CONCURRENTLY` cannot make inside one — kept in the catalog
//! (`viewgate.migrations.left_to_run`) from that transaction on, and struck off one by one as
//! they run.
//!
//! Without it a `migrate complete` or `rollback` killed between its commit and those drops
//! (the process stopped, its session ended, a drop failed) left indexes the migration had
//! said it would drop, and nothing knew: a later migration could meet them by name, and every
//! write kept maintaining them. Now `migrate status` lists what is left, and the next migration
//! command (start, complete or rollback, of any migration) runs it before anything else. Every
//! such statement is `… IF EXISTS`: one an operator ran by hand meanwhile runs again harmlessly.

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::derive::Step;
use super::error::MigrateError;
use super::file::Migration;
use super::progress::Progress;
use super::settings::MigrationSettings;
use super::state::{self, Phase};
use super::steps::run_after_commit;
use crate::control::error::ControlError;

/// What one migration's phase left to run.
#[derive(Debug, Clone, Serialize)]
pub struct LeftToRun {
    pub version: String,
    /// The command whose transaction committed: `complete` or `rollback`.
    pub after: &'static str,
    pub steps: Vec<Step>,
}

/// Whether the catalog has `left_to_run` yet: `migrate status` reads a catalog no migration
/// command of this build has upgraded.
const RECORDED_SQL: &str = "SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_attribute
     WHERE attrelid = pg_catalog.to_regclass('viewgate.migrations')
       AND attname = 'left_to_run' AND NOT attisdropped)";

/// The migrations with steps left to run, oldest first.
const PENDING_SQL: &str = "SELECT id, version, phase, left_to_run::text, migration::text
  FROM viewgate.migrations
 WHERE left_to_run <> '[]'::jsonb
 ORDER BY id";

/// Records, in the transaction that commits the phase, what is to run after it.
pub async fn record(
    transaction: &impl GenericClient,
    id: i64,
    steps: &[Step],
) -> Result<(), MigrateError> {
    transaction
        .execute(
            "UPDATE viewgate.migrations SET left_to_run = $2::text::jsonb WHERE id = $1",
            &[&id, &state::encode(&steps)],
        )
        .await
        .map_err(|error| ControlError::database("recording what runs after the commit", &error))?;
    Ok(())
}

/// Runs what migration `id` has left, first to last, striking each off once it has run. A
/// failure stops there: the rest stays recorded, and `aftermath(step)` says what that means.
pub async fn run(
    client: &Client,
    (id, version, settings): (i64, &str, MigrationSettings),
    steps: &[Step],
    aftermath: impl Fn(&Step) -> String,
    progress: &mut dyn Progress,
) -> Result<(), MigrateError> {
    for step in steps {
        run_after_commit(client, (version, settings), [step], &aftermath, progress).await?;
        client
            .execute(
                "UPDATE viewgate.migrations SET left_to_run = left_to_run - 0 WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|error| ControlError::database("striking off a step that ran", &error))?;
    }
    Ok(())
}

/// Longest SQL a message shows whole; a longer step's (the catalog substitutes', hundreds of
/// lines) is left to `viewgate migrate status --json`.
const MAX_SHOWN_SQL: usize = 200;

/// A left step's SQL as a message shows it: whole when short and on one line.
pub fn shown_sql(step: &Step) -> String {
    if step.sql.len() <= MAX_SHOWN_SQL && !step.sql.contains('\n') {
        format!("`{}`", step.sql)
    } else {
        "its SQL (`viewgate migrate status --json` shows it)".to_owned()
    }
}

/// How an `aftermath` ends: where what is left is kept, and what runs it.
pub const KEPT: &str = "it is kept in the catalog (`viewgate migrate status` lists it), and the next `viewgate migrate` start, complete or rollback runs it first";

/// Every migration's steps left to run, oldest first.
pub async fn pending(client: &impl GenericClient) -> Result<Vec<LeftToRun>, MigrateError> {
    Ok(load(client)
        .await?
        .into_iter()
        .map(|(_, left, _)| left)
        .collect())
}

/// Runs what earlier phases left, before a migration command does anything else. Refused
/// while it cannot: a new phase must not start beside an index an earlier one meant to drop
/// (a later migration may build one of the same name).
pub async fn finish_earlier(
    client: &Client,
    progress: &mut dyn Progress,
) -> Result<(), MigrateError> {
    for (id, left, settings) in load(client).await? {
        let phase = left.after;
        tracing::info!(
            "running what the {phase} of the migration to {} left: {} statement(s)",
            left.version,
            left.steps.len()
        );
        let aftermath = |step: &Step| {
            format!(
                "this was left by the {phase} of the migration to {}, and nothing of this command was done: run it again once the cause is fixed, or run {} yourself",
                left.version,
                shown_sql(step)
            )
        };
        run(
            client,
            (id, &left.version, settings),
            &left.steps,
            aftermath,
            progress,
        )
        .await?;
    }
    Ok(())
}

async fn load(
    client: &impl GenericClient,
) -> Result<Vec<(i64, LeftToRun, MigrationSettings)>, MigrateError> {
    let recorded: bool = client
        .query_one(RECORDED_SQL, &[])
        .await
        .map_err(|error| ControlError::database("looking for what earlier phases left", &error))?
        .get(0);
    if !recorded {
        return Ok(Vec::new());
    }
    let rows = client
        .query(PENDING_SQL, &[])
        .await
        .map_err(|error| ControlError::database("reading what earlier phases left", &error))?;
    rows.iter()
        .map(|row| {
            let after = if row.get::<_, &str>(2) == Phase::Completed.as_str() {
                "complete"
            } else {
                "rollback"
            };
            let migration: Migration = state::decode("migration", row.get(4))?;
            Ok((
                row.get(0),
                LeftToRun {
                    version: row.get(1),
                    after,
                    steps: state::decode("steps left to run", row.get(3))?,
                },
                migration.settings,
            ))
        })
        .collect()
}
