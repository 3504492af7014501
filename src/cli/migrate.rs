//! `viewgate migrate plan|start|status|complete|rollback`: the subcommand's arguments, and for
//! each: load the file, connect, run, print. The work itself is in `control::migrate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;

use crate::control::connect::connect;
use crate::control::migrate::complete::{self, CompleteOutcome};
use crate::control::migrate::convert;
use crate::control::migrate::directory;
use crate::control::migrate::rollback::{self, RollbackOutcome};
use crate::control::migrate::settings::{MAX_BATCH_SIZE, PaceOverride};
use crate::control::migrate::start::{self, StartOutcome};
use crate::control::migrate::status::{self, PlanReport, StatusReport};
use crate::control::migrate::{MigrateError, MigrationFile, Progress};
use crate::control::templates::Templates;

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Write a migration file from the SQL an ORM wrote for a schema change (Django's
    /// sqlmigrate, Alembic's --sql, Prisma's migration.sql, Flyway's SQL files, hand-written
    /// DDL): the file on stdout, to review; on stderr what it could not carry over or still
    /// needs. Connects to nothing.
    Convert {
        /// The SQL file; `-` or nothing reads stdin.
        sql: Option<PathBuf>,
        /// The version the migration creates.
        #[arg(long)]
        version: String,
        /// The version it starts from.
        #[arg(long)]
        from: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Print every SQL statement of every phase; nothing runs.
    Plan {
        file: PathBuf,
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        /// Print JSON instead of SQL.
        #[arg(long)]
        json: bool,
    },
    /// Expand, backfill and validate; the new version then becomes available. Resumes a
    /// migration that was interrupted. Given a directory, starts each of its migration files
    /// (`<number>_<name>.toml`) in the order of their numbers, passing over those already
    /// live or completed.
    Start {
        file: PathBuf,
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        /// A directory of templates overriding the built-in ones.
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Complete each migration once it is live (a live one found too), as `migrate
        /// complete` would: for a database nothing at the older version uses (development, CI,
        /// a first deployment). Refused as that is, the migration staying live.
        #[arg(long)]
        complete: bool,
        /// Rows per backfill batch for this run, over the file's `batch_size` (the file and its
        /// checksum stay as they are): stop a backfill that is too hard on the application and
        /// start it again slower; it resumes from its last batch.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH_SIZE)))]
        batch_size: Option<u32>,
        /// Pause between backfill batches for this run, over the file's `batch_delay_ms`.
        #[arg(long)]
        batch_delay_ms: Option<u64>,
        /// Whether the backfill yields to the application's load for this run, over the file's
        /// `yield_to_writers`.
        #[arg(long)]
        yield_to_writers: Option<bool>,
    },
    /// Phase and backfill progress of each migration, live sessions per version.
    Status {
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        #[arg(long)]
        json: bool,
    },
    /// Contract: retire the oldest live migration's previous version. Refused while anything
    /// uses that version.
    Complete {
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        #[arg(long)]
        templates: Option<PathBuf>,
        /// The version whose migration to complete (must be the oldest live one); once it is
        /// completed, running the command again says so and does nothing more.
        #[arg(long)]
        version: Option<String>,
    },
    /// Undo the newest migration's expand. Refused while anything uses its version.
    Rollback {
        #[arg(long, env = "VIEWGATE_DATABASE")]
        database: String,
        #[arg(long)]
        templates: Option<PathBuf>,
        /// The version whose migration to roll back (must be the newest one not completed);
        /// once it is rolled back, running the command again says so and does nothing more.
        #[arg(long)]
        version: Option<String>,
    },
}

pub async fn plan(file: &Path, database: &str) -> Result<PlanReport, MigrateError> {
    let file = MigrationFile::load(file)?;
    let mut client = connect(database).await?;
    status::plan(&mut client, &file).await
}

/// How one migration went in [`start`].
pub enum Went<'a> {
    Started(&'a StartOutcome),
    Completed(&'a CompleteOutcome),
}

/// Starts the migration in `path`, or each of a directory's in turn (their backfills at
/// `pace`), and with `and_complete` completes each once it is live, telling `report` how each
/// went; stops at the first that fails.
pub async fn start(
    path: &Path,
    database: &str,
    (templates_dir, and_complete, pace): (Option<&Path>, bool, &PaceOverride),
    progress: &mut dyn Progress,
    mut report: impl FnMut(Went<'_>),
) -> Result<(), MigrateError> {
    let files = if path.is_dir() {
        directory::migration_files(path)?
    } else {
        vec![MigrationFile::load(path)?]
    };
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    for file in &files {
        let started = start::start(&mut client, (file, pace), &templates, progress).await?;
        report(Went::Started(&started));
        if and_complete && started.how != start::ALREADY_COMPLETED {
            let completed =
                complete::complete(&mut client, &templates, Some(&started.version), progress)
                    .await?;
            report(Went::Completed(&completed));
        }
    }
    Ok(())
}

pub async fn status(database: &str) -> Result<StatusReport, MigrateError> {
    let client = connect(database).await?;
    status::status(&client).await
}

pub async fn complete(
    database: &str,
    (templates_dir, version): (Option<&Path>, Option<&str>),
    progress: &mut dyn Progress,
) -> Result<CompleteOutcome, MigrateError> {
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    complete::complete(&mut client, &templates, version, progress).await
}

pub async fn rollback(
    database: &str,
    (templates_dir, version): (Option<&Path>, Option<&str>),
    progress: &mut dyn Progress,
) -> Result<RollbackOutcome, MigrateError> {
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    rollback::rollback(&mut client, &templates, version, progress).await
}

/// Runs one `migrate` subcommand and prints its outcome (JSON with `--json`).
pub async fn run(command: MigrateCommand) -> Result<(), MigrateError> {
    match command {
        MigrateCommand::Convert {
            sql,
            version,
            from,
            description,
        } => {
            let text = read_sql(sql.as_deref())?;
            let converted = convert::convert(&text, &version, &from, description.as_deref())?;
            print!("{}", converted.text);
            for note in &converted.notes {
                eprintln!("viewgate: {note}");
            }
        }
        MigrateCommand::Plan {
            file,
            database,
            json,
        } => {
            let report = plan(&file, &database).await?;
            if json {
                println!("{}", to_json(&report));
            } else {
                print!("{report}");
            }
        }
        MigrateCommand::Start {
            file,
            database,
            templates,
            complete,
            batch_size,
            batch_delay_ms,
            yield_to_writers,
        } => {
            let mut progress = super::progress::for_stderr();
            let pace = PaceOverride {
                batch_size,
                batch_delay: batch_delay_ms.map(Duration::from_millis),
                yield_to_writers,
            };
            start(
                &file,
                &database,
                (templates.as_deref(), complete, &pace),
                progress.as_mut(),
                |went| match went {
                    Went::Started(outcome) if outcome.how == start::ALREADY_COMPLETED => println!(
                        "migration {} -> {} already completed: {} is retired",
                        outcome.from, outcome.version, outcome.from
                    ),
                    Went::Started(outcome) => println!(
                        "migration {} -> {} {}: {} rows backfilled in {:.1} s; {} is live{}",
                        outcome.from,
                        outcome.version,
                        outcome.how,
                        outcome.rows_backfilled,
                        outcome.seconds,
                        outcome.version,
                        if complete {
                            ""
                        } else {
                            " (route clients to it, then `viewgate migrate complete`)"
                        }
                    ),
                    Went::Completed(outcome) => print_completed(outcome),
                },
            )
            .await?;
            super::proxies_loaded::report(&database).await;
        }
        MigrateCommand::Status { database, json } => {
            let report = status(&database).await?;
            if json {
                println!("{}", to_json(&report));
            } else {
                print!("{report}");
            }
        }
        MigrateCommand::Complete {
            database,
            templates,
            version,
        } => {
            let mut progress = super::progress::for_stderr();
            let outcome = complete(
                &database,
                (templates.as_deref(), version.as_deref()),
                progress.as_mut(),
            )
            .await?;
            print_completed(&outcome);
            super::proxies_loaded::report(&database).await;
        }
        MigrateCommand::Rollback {
            database,
            templates,
            version,
        } => {
            let mut progress = super::progress::for_stderr();
            let outcome = rollback(
                &database,
                (templates.as_deref(), version.as_deref()),
                progress.as_mut(),
            )
            .await?;
            if outcome.already_done {
                println!(
                    "migration {} -> {} was already rolled back",
                    outcome.from, outcome.version
                );
                return Ok(());
            }
            match &outcome.not_undone {
                None => println!(
                    "migration {} -> {} rolled back in {:.1} s: {} and everything its expand added are gone",
                    outcome.from, outcome.version, outcome.seconds, outcome.version
                ),
                Some(remains) => println!(
                    "migration {} -> {} rolled back in {:.1} s: {} is gone, but {remains}",
                    outcome.from, outcome.version, outcome.seconds, outcome.version
                ),
            }
            super::proxies_loaded::report(&database).await;
        }
    }
    Ok(())
}

fn print_completed(outcome: &CompleteOutcome) {
    if outcome.already_done {
        println!(
            "migration to {} was already completed: {} is retired",
            outcome.version, outcome.retired
        );
    } else {
        println!(
            "migration to {} completed in {:.1} s: {} is retired and the schema contracted",
            outcome.version, outcome.seconds, outcome.retired
        );
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|error| format!("{{\"error\": \"cannot encode the report: {error}\"}}"))
}

/// The SQL to convert: a file, or stdin for `-` or none.
fn read_sql(path: Option<&std::path::Path>) -> Result<String, MigrateError> {
    let from_stdin = path.is_none_or(|path| path.as_os_str() == "-");
    let read = if from_stdin {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path.unwrap_or(std::path::Path::new("-")))
    };
    read.map_err(|source| MigrateError::Read {
        file: path.map_or_else(|| "stdin".into(), ToOwned::to_owned),
        source,
    })
}
