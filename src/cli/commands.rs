//! Entry points of the `viewgate views …`, `init`, `cutover` and `route …` commands: load the
//! spec and the templates (or check the rule), connect, run, and hand back something printable.
//! `src/main.rs` only parses arguments and prints what these return.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::catalog_read;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::routing::RouteArgs;
use crate::control::routing::routes::{self, AddedRule, RemovedRule, WeightsChanged};
use crate::control::templates::Templates;
use crate::control::views::apply::{self, ApplyOutcome, LockSettings};
use crate::control::views::generate;
use crate::control::views::introspect::ServerSnapshot;
use crate::control::views::plan;
use crate::control::views::retire::{self, RetireOutcome};
use crate::control::views::spec::{DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ATTEMPTS, Spec};
use crate::control::views::status::{self, StatusReport};
use crate::control::views::validate;
use crate::model::{Assign, CatalogRules};

/// Command-line overrides of the spec's lock settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOverrides {
    pub lock_timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
}

impl LockOverrides {
    fn over(self, base: LockSettings) -> LockSettings {
        LockSettings {
            lock_timeout: self.lock_timeout.unwrap_or(base.lock_timeout),
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts).max(1),
        }
    }
}

/// The spec, and the templates: `--templates` wins over the spec's `options.templates`.
fn load(spec_path: &Path, templates_dir: Option<&Path>) -> Result<(Spec, Templates), ControlError> {
    let spec = Spec::load(spec_path)?;
    let templates = Templates::load(templates_dir.or(spec.options.templates.as_deref()))?;
    Ok((spec, templates))
}

/// `views generate`: the SQL apply would run. With a database, names are checked and read
/// expressions compiled in a read-only transaction that is rolled back; without, offline.
pub async fn generate(
    spec_path: &Path,
    templates_dir: Option<&Path>,
    database: Option<&str>,
) -> Result<String, ControlError> {
    let (spec, templates) = load(spec_path, templates_dir)?;
    let Some(database) = database else {
        let plan = plan::build(&spec, &ServerSnapshot::default())?;
        return Ok(generate::render(&plan, &templates)?.script());
    };
    let mut client = connect(database).await?;
    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|error| ControlError::database("starting a read-only transaction", &error))?;
    let plan = plan::against_database(&transaction, &spec).await?;
    let managed = if catalog_read::catalog_exists(&transaction).await? {
        catalog::load_objects(&transaction).await?
    } else {
        Vec::new()
    };
    validate::check_names_are_free(&transaction, &spec, &plan, &managed).await?;
    validate::check_read_expressions(&transaction, &spec, &plan).await?;
    let script = generate::render(&plan, &templates)?.script();
    transaction
        .rollback()
        .await
        .map_err(|error| ControlError::database("ending the read-only transaction", &error))?;
    Ok(script)
}

/// `views apply`.
pub async fn apply(
    spec_path: &Path,
    templates_dir: Option<&Path>,
    database: &str,
    overrides: LockOverrides,
) -> Result<ApplyOutcome, ControlError> {
    let (spec, templates) = load(spec_path, templates_dir)?;
    let mut client = connect(database).await?;
    let locks = overrides.over(LockSettings::from_spec(&spec));
    apply::apply(&mut client, &spec, &templates, locks).await
}

/// `views status`.
pub async fn status(
    spec_path: &Path,
    templates_dir: Option<&Path>,
    database: &str,
) -> Result<StatusReport, ControlError> {
    let (spec, templates) = load(spec_path, templates_dir)?;
    let client = connect(database).await?;
    status::status(&client, &spec, &templates).await
}

/// `views drop --version V`.
pub async fn drop_version(
    database: &str,
    version: &str,
    templates_dir: Option<&Path>,
    overrides: LockOverrides,
) -> Result<RetireOutcome, ControlError> {
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    let locks = overrides.over(default_locks());
    retire::retire(&mut client, version, &templates, locks).await
}

/// `cutover --to V [--guard-…]` / `cutover --rollback`: flips the default version.
pub async fn cutover(
    database: &str,
    to: Option<&str>,
    guard: Option<&crate::model::Guard>,
) -> Result<crate::control::cutover::default_version::CutoverOutcome, ControlError> {
    use crate::control::cutover::default_version as flip;
    let mut client = connect(database).await?;
    match (to, guard) {
        (Some(version), Some(guard)) => flip::guarded_cutover(&mut client, version, guard).await,
        (Some(version), None) => flip::cutover(&mut client, version).await,
        (None, _) => flip::rollback(&mut client).await,
    }
}

/// `status`: versions, default, rules, proxies and recent events, from the catalog.
pub async fn overview(database: &str) -> Result<crate::control::overview::Overview, ControlError> {
    let client = connect(database).await?;
    crate::control::overview::load(&client).await
}

/// `route list`.
pub async fn route_list(database: &str) -> Result<CatalogRules, ControlError> {
    let client = connect(database).await?;
    routes::list(&client).await
}

/// `route add`.
pub async fn route_add(database: &str, args: &RouteArgs) -> Result<AddedRule, ControlError> {
    let rule = args.to_rule()?;
    let mut client = connect(database).await?;
    routes::add(&mut client, &rule).await
}

/// `route remove ID`.
pub async fn route_remove(database: &str, id: i64) -> Result<RemovedRule, ControlError> {
    let mut client = connect(database).await?;
    routes::remove(&mut client, id).await
}

/// `route enable ID` / `route disable ID`.
pub async fn route_set_enabled(
    database: &str,
    id: i64,
    enabled: bool,
) -> Result<routes::RuleToggled, ControlError> {
    let mut client = connect(database).await?;
    routes::set_enabled(&mut client, id, enabled).await
}

/// `route set-weights ID v2=20,v1=80`.
pub async fn route_set_weights(
    database: &str,
    id: i64,
    weights: &str,
) -> Result<WeightsChanged, ControlError> {
    let split = Assign::parse_split(weights)?;
    let mut client = connect(database).await?;
    routes::set_weights(&mut client, id, split).await
}

/// `init`: creates the catalog (idempotent) and records that it did.
pub async fn init(database: &str, templates_dir: Option<&Path>) -> Result<(), ControlError> {
    let templates = Templates::load(templates_dir)?;
    let mut client = connect(database).await?;
    let started = Instant::now();
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the init transaction", &error))?;
    catalog::set_local_lock_timeout(&transaction, DEFAULT_LOCK_TIMEOUT).await?;
    catalog::wait_apply_lock(&transaction).await?;
    catalog::ensure_catalog(&transaction, &templates).await?;
    catalog::record_history(
        &transaction,
        &HistoryEntry::event("init", Vec::new(), started.elapsed()),
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the catalog", &error))
}

fn default_locks() -> LockSettings {
    LockSettings {
        lock_timeout: DEFAULT_LOCK_TIMEOUT,
        max_attempts: DEFAULT_MAX_ATTEMPTS,
    }
}
