//! `viewgate migrate plan|start|status|complete|rollback`: load the file, connect, run, and hand
//! back something printable. The work itself is in `control::migrate`.

use std::path::Path;

use crate::control::connect::connect;
use crate::control::migrate::complete::{self, CompleteOutcome};
use crate::control::migrate::rollback::{self, RollbackOutcome};
use crate::control::migrate::start::{self, StartOutcome};
use crate::control::migrate::status::{self, PlanReport, StatusReport};
use crate::control::migrate::{MigrateError, MigrationFile, Progress};
use crate::control::templates::Templates;

pub async fn plan(file: &Path, database: &str) -> Result<PlanReport, MigrateError> {
    let file = MigrationFile::load(file)?;
    let mut client = connect(database).await?;
    status::plan(&mut client, &file).await
}

pub async fn start(
    file: &Path,
    database: &str,
    templates_dir: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<StartOutcome, MigrateError> {
    let file = MigrationFile::load(file)?;
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    start::start(&mut client, &file, &templates, progress).await
}

pub async fn status(database: &str) -> Result<StatusReport, MigrateError> {
    let client = connect(database).await?;
    status::status(&client).await
}

pub async fn complete(
    database: &str,
    templates_dir: Option<&Path>,
) -> Result<CompleteOutcome, MigrateError> {
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    complete::complete(&mut client, &templates).await
}

pub async fn rollback(
    database: &str,
    templates_dir: Option<&Path>,
) -> Result<RollbackOutcome, MigrateError> {
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    rollback::rollback(&mut client, &templates).await
}
