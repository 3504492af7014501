//! Errors of the control plane, worded so the user knows which file, version, table or column
//! to fix and what Postgres said.

use std::path::PathBuf;

use crate::net::postgres_error::describe_postgres_error;

use crate::catalog_read::CatalogReadError;
use crate::model::{CidrError, GlobError, RuleError};

/// A spec file that cannot be read, parsed or is inconsistent in itself.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("{}: {context}: {problem}", file.display())]
    Invalid {
        file: PathBuf,
        context: String,
        problem: String,
    },
}

/// Anything that stops a control command.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The command's output could not be written (a closed pipe is not this: see
    /// `cli::shadow`).
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
    /// The spec names something the database does not have, or would clash with it.
    #[error("{}: {context}: {problem}", file.display())]
    Mismatch {
        file: PathBuf,
        context: String,
        problem: String,
    },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    /// Postgres rejected generated SQL; nothing of the apply was kept.
    #[error(
        "{}: version {version}, table {table}: Postgres rejected the generated SQL: {message} (nothing was applied)",
        file.display()
    )]
    Rejected {
        file: PathBuf,
        version: String,
        table: String,
        message: String,
    },
    #[error(
        "another viewgate apply or drop is running on this database; try again when it has finished"
    )]
    ApplyInProgress,
    #[error(
        "gave up after {attempts} attempts: a lock the migration needed stayed held longer than lock_timeout ({lock_timeout_ms} ms) each time ({message}); nothing was applied. Find the blocking session in pg_locks/pg_stat_activity, or raise lock_timeout_ms"
    )]
    LockTimeout {
        attempts: u32,
        lock_timeout_ms: u128,
        message: String,
    },
    /// Postgres's 55P03: a lock was not granted within lock_timeout. Retried by apply.
    #[error("{context}: {message}")]
    LockNotAvailable { context: String, message: String },
    #[error("version {0} is not in the catalog (nothing to retire)")]
    UnknownVersion(String),
    #[error(
        "version {version} is named by routing rule(s) {rules}; remove them (`viewgate route remove ID`) or take it out of their split (`viewgate route set-weights ID ...`) before retiring it"
    )]
    VersionInRules { version: String, rules: String },
    #[error("version {0} is the default version; set another default version before retiring it")]
    VersionIsDefault(String),
    #[error("version {version} is still in use: {reasons}; retire it once nothing uses it")]
    VersionInUse { version: String, reasons: String },
    #[error(
        "version {0} belongs to a migration that is still backfilling (`viewgate migrate status`): its views are the migration's, and it goes live when the backfill ends; let it finish (`viewgate migrate start` on its file resumes it) or roll it back, and leave it out of the spec"
    )]
    VersionPending(String),
    #[error("this database has no viewgate catalog; run `viewgate views apply` first")]
    NoCatalog,
    #[error("version {version} is not an active version (active: {active})")]
    NotActive { version: String, active: String },
    #[error("no earlier cutover to roll back")]
    NothingToRollBack,
    #[error("cutover guard: {0}")]
    CutoverGuard(String),
    #[error("shadow run: {0}")]
    Shadow(String),
    #[error("shadow run {0} is already running; stop it first (`viewgate shadow stop`)")]
    ShadowRunning(i64),
    #[error("no shadow run is running (start one with `viewgate shadow start`)")]
    NoShadowRun,
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("there is no routing rule with id {0} (see `viewgate route list`)")]
    RuleNotFound(i64),
}

impl ControlError {
    /// Wraps a Postgres error with what we were doing; a lock timeout stays recognisable so
    /// apply can retry it.
    pub fn database(context: impl Into<String>, error: &tokio_postgres::Error) -> Self {
        let context = context.into();
        let message = describe_postgres_error(error);
        if is_lock_timeout(error) {
            ControlError::LockNotAvailable { context, message }
        } else {
            ControlError::Database { context, message }
        }
    }
}

/// Whether the error is Postgres's `lock_not_available` (55P03), which a retry may cure.
pub fn is_lock_timeout(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
}

impl From<CatalogReadError> for ControlError {
    fn from(error: CatalogReadError) -> Self {
        ControlError::database(error.context, &error.source)
    }
}

impl From<GlobError> for ControlError {
    fn from(error: GlobError) -> Self {
        ControlError::Rule(error.into())
    }
}

impl From<CidrError> for ControlError {
    fn from(error: CidrError) -> Self {
        ControlError::Rule(error.into())
    }
}
