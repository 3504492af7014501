//! Errors of migrations, worded so the user knows which file, operation, table or column to fix,
//! what Postgres said, and what state the database was left in (always: unchanged, or a phase
//! that `migrate start`, `complete` or `rollback` can continue from).

use std::path::PathBuf;

use crate::control::error::ControlError;
use crate::control::retry::LockRetryError;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read migration {}: {source}", file.display())]
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
    /// The migration does not fit the live schema or the version it starts from.
    #[error("migration to {version}: {operation}: {problem} (nothing was changed)")]
    Refused {
        version: String,
        operation: String,
        problem: String,
    },
    /// Running the migration would change data no client wrote, leave rows unfilled or lose
    /// what the table's rules rest on (`preconditions.rs`).
    #[error(
        "migration to {version}: table {table}: {objects}: {problem}; {remedy} (nothing was changed)"
    )]
    Unsafe {
        version: String,
        table: String,
        objects: String,
        problem: String,
        remedy: String,
    },
    #[error(
        "version {version} has no recorded definition in the catalog; run `viewgate views apply --spec …` for it once with this build, then start the migration again"
    )]
    NoDefinition { version: String },
    #[error(
        "migration to {version} was already started from a different file (checksum {recorded}, this file {current}); a migration that has run cannot change: roll it back first (`viewgate migrate rollback`) or write a new migration"
    )]
    ChecksumChanged {
        version: String,
        recorded: String,
        current: String,
    },
    #[error("{0}")]
    State(String),
    #[error("another viewgate migration command is running on this database, in the {holder}")]
    Busy {
        /// The session holding the migration lock, as `pg_stat_activity` shows it, and how to
        /// end it if its process is gone.
        holder: String,
    },
    /// Contract or rollback would take tables away from live clients.
    #[error("{action} refused: {reasons}")]
    InUse { action: String, reasons: String },
    #[error("migration to {version} failed while {step}: {message}; {aftermath}")]
    Failed {
        version: String,
        step: String,
        message: String,
        aftermath: String,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Convert(#[from] super::convert::error::ConvertError),
}

impl MigrateError {
    /// `step` of the migration to `version` failed with `error`; what the failure left is for
    /// the caller to say.
    pub fn step_failed(version: &str, step: &str, error: ControlError) -> Self {
        MigrateError::Failed {
            version: version.to_owned(),
            step: step.to_owned(),
            message: error.to_string(),
            aftermath: String::new(),
        }
    }
}

impl LockRetryError for MigrateError {
    fn lock_timeout(&self) -> Option<String> {
        match self {
            MigrateError::Control(control) => control.lock_timeout(),
            _ => None,
        }
    }

    fn gave_up(attempts: u32, lock_timeout: std::time::Duration, last: String) -> Self {
        MigrateError::Control(ControlError::gave_up(attempts, lock_timeout, last))
    }
}

impl From<crate::catalog_read::CatalogReadError> for MigrateError {
    fn from(error: crate::catalog_read::CatalogReadError) -> Self {
        MigrateError::Control(error.into())
    }
}
