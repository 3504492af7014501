//! `viewgate migrate status` and `migrate plan`: where each migration stands (phase, backfill
//! progress, live sessions per version), and every statement a migration would run, per phase.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tokio_postgres::Client;

use super::definitions;
use super::dependents;
use super::derive::{MigrationPlan, Step};
use super::error::MigrateError;
use super::file::MigrationFile;
use super::left_over::{self, LeftToRun};
use super::rebuild;
use super::start::plan_against;
use super::state::{self, Checkpoint, Pacing};
use super::sync;
use crate::catalog_read;
use crate::control::catalog;
use crate::control::error::ControlError;
use crate::control::overview;
use crate::model::listed_session::ListedSession;

#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub version: String,
    pub from: String,
    pub phase: &'static str,
    pub file: String,
    pub checksum: String,
    pub started_at: String,
    pub backfill: BTreeMap<String, Checkpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub migrations: Vec<MigrationStatus>,
    /// Live sessions per version, summed over every proxy whose heartbeat is fresh.
    pub sessions: BTreeMap<String, i64>,
    pub default_version: Option<String>,
    /// Who the sessions at a version other than the default are (a few per version and
    /// proxy, as the heartbeats list them): those a contract waits for once the cutover is
    /// made.
    pub sessions_off_default: Vec<SessionElsewhere>,
    /// The process ID of the session running a `migrate` command now (holding the migration
    /// lock); without one, a backfilling migration is stopped until `migrate start` resumes it.
    pub command_running_pid: Option<i32>,
    /// What a complete or rollback left to run after its commit (`left_over.rs`).
    pub left_to_run: Vec<LeftToRun>,
}

/// A listed session at a version other than the default, and the proxy serving it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionElsewhere {
    pub proxy_id: String,
    #[serde(flatten)]
    pub session: ListedSession,
}

pub async fn status(client: &Client) -> Result<StatusReport, MigrateError> {
    if !catalog_read::catalog_exists(client).await? {
        return Err(MigrateError::Control(ControlError::NoCatalog));
    }
    let migrations = state::load_history(client)
        .await?
        .into_iter()
        .map(|record| MigrationStatus {
            phase: record.phase.as_str(),
            version: record.version,
            from: record.from,
            file: record.file,
            checksum: record.checksum,
            started_at: record.started_at,
            backfill: record.backfill,
        })
        .collect();
    let proxies = overview::load_proxies(client).await?;
    let mut sessions = BTreeMap::new();
    for proxy in proxies.iter().filter(|proxy| !proxy.stale) {
        for (version, count) in &proxy.sessions {
            *sessions.entry(version.clone()).or_insert(0) += count;
        }
    }
    let default_version = catalog_read::default_version(client).await?;
    let sessions_off_default = overview::sessions_off_default(&proxies, default_version.as_deref())
        .into_iter()
        .map(|(proxy_id, session)| SessionElsewhere {
            proxy_id: proxy_id.to_owned(),
            session: session.clone(),
        })
        .collect();
    Ok(StatusReport {
        migrations,
        sessions,
        default_version,
        sessions_off_default,
        command_running_pid: state::migration_command_pid(client).await?,
        left_to_run: left_over::pending(client).await?,
    })
}

/// Below this share of its time in batches, a backfill is said to be yielding.
const YIELDING_BELOW_SHARE: f64 = 0.9;

/// `yielding: in batches 23% of the time` for a backfill that gives way to the application.
pub fn yielding(pacing: &Pacing) -> Option<String> {
    (pacing.working_share < YIELDING_BELOW_SHARE).then(|| {
        format!(
            "yielding: in batches {:.0}% of the time",
            pacing.working_share * 100.0
        )
    })
}

/// `, 14300 rows/s, about 23 s left; yielding: …` for a backfill `remaining` rows from done.
fn pace_text(pacing: &Pacing, remaining: u64) -> String {
    let mut text = format!(", {:.0} rows/s", pacing.rows_per_second);
    if pacing.rows_per_second > 0.0 {
        let left = remaining as f64 / pacing.rows_per_second;
        text.push_str(&format!(", about {left:.0} s left"));
    }
    if let Some(yielding) = yielding(pacing) {
        text.push_str(&format!("; {yielding}, {} rows each", pacing.batch_rows));
        if let Some(p99_ms) = pacing.protected_p99_ms {
            text.push_str(&format!(
                ", keeping the application's p99 through the proxies under {p99_ms:.1} ms"
            ));
        }
        text.push_str(" (the migration file's `yield_to_writers` and `batch_delay_ms` set this)");
    }
    if let Some(waiting) = &pacing.waiting_for_standby {
        text.push_str(&format!("; {waiting}"));
    }
    text
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.migrations.is_empty() {
            writeln!(f, "no migrations recorded")?;
        }
        for migration in &self.migrations {
            // A backfill's recorded pace is its last batch's; with no command running, nothing
            // goes on from there until `migrate start` is run again.
            let stopped = migration.phase == "backfilling" && self.command_running_pid.is_none();
            let how = match (migration.phase, self.command_running_pid) {
                ("backfilling", None) => format!(
                    ", stopped: no `viewgate migrate start` is running; run it again on {} to resume",
                    migration.file
                ),
                ("backfilling", Some(pid)) => format!(", run by the session of pid {pid}"),
                _ => String::new(),
            };
            writeln!(
                f,
                "{} -> {}: {}{how} (file {}, started {})",
                migration.from,
                migration.version,
                migration.phase,
                migration.file,
                migration.started_at
            )?;
            // A rolled-back migration's tables lost what its backfill filled.
            let rolled_back = migration.phase == state::Phase::RolledBack.as_str();
            let backfill = (!rolled_back).then_some(&migration.backfill);
            for (table, checkpoint) in backfill.into_iter().flatten() {
                let estimate = if checkpoint.done {
                    checkpoint.rows
                } else {
                    checkpoint.estimate.max(checkpoint.rows)
                };
                let percent = if estimate == 0 {
                    100.0
                } else {
                    checkpoint.rows as f64 * 100.0 / estimate as f64
                };
                let state = match (&checkpoint.pacing, checkpoint.done) {
                    (_, true) => ", done".to_owned(),
                    (_, false) if stopped => ", stopped".to_owned(),
                    (Some(pacing), false) => {
                        pace_text(pacing, estimate.saturating_sub(checkpoint.rows))
                    }
                    (None, false) => String::new(),
                };
                writeln!(
                    f,
                    "  backfill {table}: {} of ~{estimate} rows ({percent:.0}%){state}",
                    checkpoint.rows
                )?;
            }
        }
        for left in &self.left_to_run {
            writeln!(
                f,
                "left to run after the {} of the migration to {} (the next `viewgate migrate` start, complete or rollback runs it first):",
                left.after, left.version
            )?;
            for step in &left.steps {
                writeln!(f, "  {}: {}", step.description, left_over::shown_sql(step))?;
            }
        }
        let sessions: Vec<String> = self
            .sessions
            .iter()
            .map(|(version, count)| format!("{version}={count}"))
            .collect();
        writeln!(
            f,
            "live sessions: {}; default version: {}",
            if sessions.is_empty() {
                "none".to_owned()
            } else {
                sessions.join(", ")
            },
            self.default_version.as_deref().unwrap_or("(none)")
        )?;
        for elsewhere in &self.sessions_off_default {
            let version = elsewhere.session.version.as_deref().unwrap_or("-");
            writeln!(
                f,
                "  at {version} via proxy {}: {}",
                elsewhere.proxy_id, elsewhere.session
            )?;
        }
        Ok(())
    }
}

/// Every statement of every phase, as `migrate start`, `complete` and `rollback` would run them.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub version: String,
    pub from: String,
    pub plan: MigrationPlan,
    pub sync_sql: String,
    pub backfill_sql: Vec<String>,
    /// What Postgres drops by itself with the columns the contract drops, as it describes
    /// them: a composite index over a dropped column goes whole.
    pub taken_along: Vec<String>,
}

pub async fn plan(client: &mut Client, file: &MigrationFile) -> Result<PlanReport, MigrateError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting a read-only transaction", &error))?;
    // Read-only, unless the file's own definitions must be made for its checks (in a
    // transaction never committed: `definitions.rs`).
    if !definitions::any(&file.migration) {
        transaction
            .batch_execute("SET TRANSACTION READ ONLY")
            .await
            .map_err(|error| ControlError::database("starting a read-only transaction", &error))?;
    }
    if !catalog_read::catalog_exists(&transaction).await? {
        return Err(MigrateError::Control(ControlError::NoCatalog));
    }
    let (_, plan) = plan_against(&transaction, file).await?;
    let versions: Vec<String> = catalog::load_versions(&transaction)
        .await?
        .into_keys()
        .collect();
    let next_id: i64 = match transaction
        .query_one(
            "SELECT coalesce(max(id), 0) + 1 FROM viewgate.migrations",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => 1,
    };
    let sync_sql = plan
        .syncs
        .iter()
        .map(|table_sync| sync::create_sql(next_id, table_sync, &versions))
        .collect();
    let backfill_sql = plan
        .backfills
        .iter()
        .map(|backfill| super::backfill::batch_sql(backfill).plan_text())
        .collect();
    let taken_along = dependents::taken_along(&transaction, &plan).await?;
    Ok(PlanReport {
        taken_along,
        version: file.migration.version.clone(),
        from: file.migration.from.clone(),
        plan,
        sync_sql,
        backfill_sql,
    })
}

fn write_steps(f: &mut fmt::Formatter<'_>, title: &str, steps: &[Step]) -> fmt::Result {
    if steps.is_empty() {
        return Ok(());
    }
    writeln!(f, "\n-- {title}")?;
    for step in steps {
        writeln!(f, "-- {}", step.description)?;
        if let Some(clear) = &step.clear {
            writeln!(
                f,
                "-- (each attempt first clears what a killed or timed-out one left: {clear})"
            )?;
        }
        writeln!(f, "{};", step.sql)?;
    }
    Ok(())
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = &self.plan;
        writeln!(
            f,
            "-- migration {} -> {} (nothing has run)",
            self.from, self.version
        )?;
        write_steps(f, "phase 1, expand (one transaction)", &plan.expand)?;
        if !self.sync_sql.is_empty() {
            writeln!(
                f,
                "\n-- phase 1, sync triggers (same transaction)\n{}",
                self.sync_sql
            )?;
        }
        writeln!(
            f,
            "-- phase 1, views of {} (a transaction of its own, after the expand's; `viewgate views generate` renders them the same way)",
            self.version
        )?;
        for sql in &self.backfill_sql {
            writeln!(
                f,
                "\n-- phase 2, backfill: one batch, one transaction\n{sql}"
            )?;
        }
        write_steps(
            f,
            "phase 3, validate (one transaction each)",
            &plan.validate,
        )?;
        write_steps(
            f,
            "phase 3, indexes (outside transactions)",
            &plan.concurrent,
        )?;
        write_steps(
            f,
            "phase 3, foreign keys into the rebuilt indexes (one transaction each)",
            &plan.referencing,
        )?;
        write_steps(
            f,
            "migrate complete (one transaction, after the old version's views and triggers are dropped)",
            &plan.complete,
        )?;
        if !self.taken_along.is_empty() {
            writeln!(
                f,
                "-- and Postgres drops with the dropped columns, by itself: {}",
                self.taken_along.join("; ")
            )?;
        }
        for (old, replacement) in rebuild::replacements(plan) {
            writeln!(
                f,
                "-- and, before the old column goes: whatever comment, column privileges, statistics target and options {}.{}.{} has then are given to {}, and the extended statistics over it are made again (ANALYZE after the commit)",
                old.schema, old.table, old.column, replacement.column
            )?;
            if replacement.identity {
                writeln!(
                    f,
                    "-- and, after the contract's steps: {} is generated as identity again, by a sequence of the old one's name and options set where it stood",
                    replacement.column
                )?;
            }
        }
        write_steps(f, "migrate complete, afterwards", &plan.complete_concurrent)?;
        write_steps(
            f,
            "migrate rollback (one transaction, first)",
            &plan.rollback_referencing,
        )?;
        write_steps(
            f,
            "migrate rollback (the same transaction, after the new version's views and triggers are dropped)",
            &plan.rollback,
        )?;
        write_steps(
            f,
            "migrate rollback, once that has committed",
            &plan.rollback_concurrent,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_is_said_to_run_only_while_a_command_holds_the_migration_lock() {
        let checkpoint = Checkpoint {
            cursor: None,
            high_water: None,
            done: false,
            rows: 300,
            estimate: 1000,
            pacing: Some(Pacing {
                rows_per_second: 150.0,
                working_share: 1.0,
                batch_rows: 100,
                protected_p99_ms: None,
                waiting_for_standby: None,
            }),
        };
        let mut report = StatusReport {
            migrations: vec![MigrationStatus {
                version: "v2".into(),
                from: "v1".into(),
                phase: "backfilling",
                file: "0002.toml".into(),
                checksum: String::new(),
                started_at: "2026-12-05 14:00".into(),
                backfill: BTreeMap::from([("public.t".to_owned(), checkpoint)]),
            }],
            sessions: BTreeMap::new(),
            default_version: Some("v1".into()),
            sessions_off_default: Vec::new(),
            command_running_pid: Some(4242),
            left_to_run: Vec::new(),
        };
        let running = report.to_string();
        assert!(
            running.starts_with(
                "v1 -> v2: backfilling, run by the session of pid 4242 (file 0002.toml"
            ) && running.contains("300 of ~1000 rows (30%), 150 rows/s, about 5 s left\n"),
            "{running}"
        );
        report.command_running_pid = None;
        let stopped = report.to_string();
        assert!(
            stopped.contains("backfilling, stopped: no `viewgate migrate start` is running; run it again on 0002.toml to resume")
                && stopped.contains("300 of ~1000 rows (30%), stopped\n"),
            "{stopped}"
        );
    }

    #[test]
    fn a_yielding_backfill_says_how_fast_how_long_and_why() {
        let yielding = Pacing {
            rows_per_second: 14_300.4,
            working_share: 0.12,
            batch_rows: 500,
            protected_p99_ms: Some(0.5),
            waiting_for_standby: None,
        };
        assert_eq!(
            pace_text(&yielding, 143_004),
            ", 14300 rows/s, about 10 s left; yielding: in batches 12% of the time, 500 rows \
             each, keeping the application's p99 through the proxies under 0.5 ms (the \
             migration file's `yield_to_writers` and `batch_delay_ms` set this)"
        );
        let flat_out = Pacing {
            rows_per_second: 120_000.0,
            working_share: 0.97,
            batch_rows: 1000,
            protected_p99_ms: None,
            waiting_for_standby: None,
        };
        assert_eq!(
            pace_text(&flat_out, 240_000),
            ", 120000 rows/s, about 2 s left"
        );
        let waiting = Pacing {
            waiting_for_standby: Some(
                "waiting for standby walreceiver (local socket), 6.0 s behind".into(),
            ),
            ..flat_out.clone()
        };
        assert_eq!(
            pace_text(&waiting, 240_000),
            ", 120000 rows/s, about 2 s left; waiting for standby walreceiver (local socket), 6.0 s behind"
        );
        let stalled = Pacing {
            working_share: 0.0,
            ..flat_out
        };
        assert_eq!(
            pace_text(
                &Pacing {
                    rows_per_second: 0.0,
                    ..stalled
                },
                10
            ),
            ", 0 rows/s; yielding: in batches 0% of the time, 1000 rows each (the migration \
             file's `yield_to_writers` and `batch_delay_ms` set this)"
        );
    }
}
