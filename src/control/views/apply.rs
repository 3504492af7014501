//! `viewgate views apply`: bring the database to the spec in one transaction, idempotently.
//!
//! Each attempt is one transaction: `SET LOCAL lock_timeout`, the apply advisory lock (a second
//! concurrent apply fails fast), the catalog, then only the versions whose generated SQL or live
//! objects differ from what the catalog recorded. A lock timeout (55P03) rolls the attempt back
//! and retries with backoff; any other error rolls back and is recorded in the history in a
//! separate transaction, so a failed apply leaves nothing half-done but is still on record.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::definition::{self, VersionDefinition};
use super::generate::{self, GeneratedVersion};
use super::grants;
use super::in_place;
use super::mapping;
use super::mapping_functions;
use super::plan;
use super::spec::Spec;
use super::validate;
use crate::catalog_read;
use crate::control::catalog::{self, CatalogObject, CatalogVersion, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::retry::with_lock_retries;
use crate::control::templates::{self, Templates};
use crate::model::catalog_substitutes::{self, substitute_schema};
use crate::model::write_function;

/// How apply deals with locks.
#[derive(Debug, Clone, Copy)]
pub struct LockSettings {
    /// Longest wait for one lock in one attempt.
    pub lock_timeout: Duration,
    /// Attempts in all before giving up on lock timeouts.
    pub max_attempts: u32,
}

impl LockSettings {
    pub fn from_spec(spec: &Spec) -> Self {
        LockSettings {
            lock_timeout: spec.options.lock_timeout,
            max_attempts: spec.options.max_attempts,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyOutcome {
    pub spec_checksum: String,
    /// Versions whose objects were (re)created.
    pub applied: Vec<String>,
    /// Versions already matching the spec and left alone.
    pub unchanged: Vec<String>,
    /// Views of applied versions that the spec no longer lists and were dropped.
    pub dropped: Vec<String>,
    pub attempts: u32,
}

impl ApplyOutcome {
    /// Whether nothing needed doing.
    pub fn is_noop(&self) -> bool {
        self.applied.is_empty()
    }
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_noop() {
            write!(
                formatter,
                "nothing to do: versions {} already match the spec",
                self.unchanged.join(", ")
            )?;
        } else {
            write!(formatter, "applied versions {}", self.applied.join(", "))?;
            if !self.unchanged.is_empty() {
                write!(formatter, "; unchanged: {}", self.unchanged.join(", "))?;
            }
            if !self.dropped.is_empty() {
                write!(
                    formatter,
                    "; dropped views no longer in the spec: {}",
                    self.dropped.join(", ")
                )?;
            }
        }
        write!(
            formatter,
            " (spec checksum {}, {} attempt{})",
            short(&self.spec_checksum),
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

/// Applies `spec` to the database behind `client`.
pub async fn apply(
    client: &mut Client,
    spec: &Spec,
    templates: &Templates,
    locks: LockSettings,
) -> Result<ApplyOutcome, ControlError> {
    let started = Instant::now();
    let mut attempt = 0;
    let attempted = with_lock_retries(locks.max_attempts, locks.lock_timeout, async || {
        attempt += 1;
        apply_once(client, spec, templates, locks, attempt, started).await
    })
    .await;
    match attempted.result {
        Ok(mut outcome) => {
            outcome.attempts = attempted.attempts;
            Ok(outcome)
        }
        Err(error) => {
            let entry = HistoryEntry {
                action: "apply",
                success: false,
                spec_file: Some(spec.source.display().to_string()),
                spec_checksum: None,
                versions: spec
                    .versions
                    .iter()
                    .map(|version| version.name.clone())
                    .collect(),
                duration: started.elapsed(),
                attempts: attempted.attempts,
                error: Some(error.to_string()),
            };
            record_failure(client, templates, locks, &entry).await;
            Err(error)
        }
    }
}

/// Records a failed command in the history in its own transaction. Best effort: the original
/// error matters more than a failure to record it, which is only logged. Only creating the
/// catalog needs the apply lock; with a catalog in place the row is written even while another
/// apply holds the lock (that is how "apply already running" failures get recorded).
pub async fn record_failure(
    client: &mut Client,
    templates: &Templates,
    locks: LockSettings,
    entry: &HistoryEntry,
) {
    let result: Result<(), ControlError> = async {
        let transaction = client
            .transaction()
            .await
            .map_err(|error| ControlError::database("recording the failure", &error))?;
        catalog::set_local_lock_timeout(&transaction, locks.lock_timeout).await?;
        if !catalog_read::catalog_exists(&transaction).await? {
            catalog::wait_apply_lock(&transaction).await?;
            catalog::ensure_catalog(&transaction, templates).await?;
        }
        catalog::record_history(&transaction, entry).await?;
        transaction
            .commit()
            .await
            .map_err(|error| ControlError::database("recording the failure", &error))
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not record the failed {} in viewgate.apply_history", entry.action);
    }
}

async fn apply_once(
    client: &mut Client,
    spec: &Spec,
    templates: &Templates,
    locks: LockSettings,
    attempt: u32,
    started: Instant,
) -> Result<ApplyOutcome, ControlError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the apply transaction", &error))?;
    catalog::set_local_lock_timeout(&transaction, locks.lock_timeout).await?;
    catalog::try_apply_lock(&transaction).await?;
    catalog::ensure_catalog(&transaction, templates).await?;

    let plan = plan::against_database(&transaction, spec).await?;
    let generated = generate::render(&plan, templates)?;
    let recorded_versions = catalog::load_versions(&transaction).await?;
    let recorded_objects = catalog::load_objects(&transaction).await?;
    validate::check_names_are_free(&transaction, spec, &plan, &recorded_objects).await?;
    validate::refuse_unspelled_reads(&transaction, spec, &plan).await?;
    validate::refuse_repointed_columns(&transaction, spec, &recorded_versions).await?;
    // Applying a backfilling version would make it active before its rows are filled (the
    // thirty-seventh red-team pass routed clients to NULLs so, and the resumed backfill then
    // overwrote what they wrote).
    if let Some(pending) = generated.versions.iter().find(|version| {
        recorded_versions
            .get(&version.name)
            .is_some_and(|recorded| recorded.state == "pending")
    }) {
        return Err(ControlError::VersionPending(pending.name.clone()));
    }

    let mut outcome = ApplyOutcome {
        spec_checksum: generated.checksum.clone(),
        applied: Vec::new(),
        unchanged: Vec::new(),
        dropped: Vec::new(),
        attempts: attempt,
    };
    for version in &generated.versions {
        let recorded: Vec<&CatalogObject> = recorded_objects
            .iter()
            .filter(|object| object.version == version.name)
            .collect();
        if is_current(
            &transaction,
            version,
            recorded_versions.get(&version.name),
            &recorded,
        )
        .await?
        {
            outcome.unchanged.push(version.name.clone());
            continue;
        }
        let dropped = apply_version(&transaction, spec, templates, version, &recorded).await?;
        outcome.dropped.extend(dropped);
        outcome.applied.push(version.name.clone());
    }

    let entry = HistoryEntry {
        action: if outcome.is_noop() { "noop" } else { "apply" },
        success: true,
        spec_file: Some(spec.source.display().to_string()),
        spec_checksum: Some(generated.checksum.clone()),
        versions: if outcome.is_noop() {
            outcome.unchanged.clone()
        } else {
            outcome.applied.clone()
        },
        duration: started.elapsed(),
        attempts: attempt,
        error: None,
    };
    catalog::record_history(&transaction, &entry).await?;
    if !outcome.is_noop() {
        catalog::notify_change(&transaction, "apply", &outcome.applied).await?;
    }
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the apply", &error))?;
    Ok(outcome)
}

/// Whether the catalog says `version` was applied with this exact SQL and its views are still
/// as apply left them.
async fn is_current(
    client: &impl GenericClient,
    version: &GeneratedVersion,
    recorded: Option<&CatalogVersion>,
    recorded_objects: &[&CatalogObject],
) -> Result<bool, ControlError> {
    let Some(recorded) = recorded else {
        return Ok(false);
    };
    if recorded.state != "active" || recorded.checksum != version.checksum {
        return Ok(false);
    }
    let planned: BTreeSet<(&str, &str)> = version
        .views
        .iter()
        .map(|view| (view.plan.view_schema.as_str(), view.plan.view_name.as_str()))
        .collect();
    let on_record: BTreeSet<(&str, &str)> = recorded_objects
        .iter()
        .map(|object| (object.view_schema.as_str(), object.view_name.as_str()))
        .collect();
    if planned != on_record {
        return Ok(false);
    }
    // Views recorded before the catalog kept their column mapping get it now.
    if recorded_objects
        .iter()
        .any(|object| object.mapping.is_none())
    {
        return Ok(false);
    }
    for object in recorded_objects {
        let live =
            catalog::live_fingerprint(client, &object.view_schema, &object.view_name).await?;
        if live.as_deref() != Some(object.fingerprint.as_str()) {
            return Ok(false);
        }
    }
    // Catalog substitutes dropped by hand are made again (unless the templates make none).
    Ok(version.catalog.trim().is_empty() || substitutes_present(client, &version.name).await?)
}

/// Whether the schema of `version`'s catalog substitutes holds every substitute relation.
async fn substitutes_present(
    client: &impl GenericClient,
    version: &str,
) -> Result<bool, ControlError> {
    let names: Vec<&str> = catalog_substitutes::substitutes()
        .map(|(_, name)| name)
        .collect();
    let row = client
        .query_one(
            "SELECT pg_catalog.count(*) = pg_catalog.cardinality($2::text[])
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = ANY ($2::text[])",
            &[&substitute_schema(version), &names],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("looking for the catalog substitutes of version {version}"),
                &error,
            )
        })?;
    Ok(row.get(0))
}

/// (Re)creates one version's objects and records them, with the version's definition; returns
/// the views it dropped because the spec no longer lists them. A view that exists is replaced
/// in place where its columns allow ([`in_place`]); one made anew keeps the grants it had
/// ([`grants`]).
pub async fn apply_version(
    client: &impl GenericClient,
    spec: &Spec,
    templates: &Templates,
    version: &GeneratedVersion,
    recorded_objects: &[&CatalogObject],
) -> Result<Vec<String>, ControlError> {
    client
        .batch_execute(&version.preamble)
        .await
        .map_err(|error| {
            ControlError::database(format!("preparing version {}", version.name), &error)
        })?;

    let planned: BTreeSet<(&str, &str)> = version
        .views
        .iter()
        .map(|view| (view.plan.view_schema.as_str(), view.plan.view_name.as_str()))
        .collect();
    let mut dropped = Vec::new();
    for stale in recorded_objects.iter().filter(|object| {
        !planned.contains(&(object.view_schema.as_str(), object.view_name.as_str()))
    }) {
        let sql = drop_sql(templates, stale)?;
        client.batch_execute(&sql).await.map_err(|error| {
            ControlError::database(
                format!(
                    "dropping {}.{} (no longer in version {})",
                    stale.view_schema, stale.view_name, version.name
                ),
                &error,
            )
        })?;
        dropped.push(format!("{}.{}", stale.view_schema, stale.view_name));
    }

    let mut objects = Vec::with_capacity(version.views.len());
    for view in &version.views {
        let (view_schema, view_name) = (&view.plan.view_schema, &view.plan.view_name);
        let replaced = in_place::replace(client, view).await.map_err(|error| {
            validate::rejected(spec, &view.plan, "replacing the view in place", &error)
        })?;
        // A view made anew gives back the grants it had (read before it is dropped).
        let kept = if replaced {
            None
        } else {
            let kept = grants::read(client, view_schema, view_name).await?;
            client.batch_execute(&view.sql).await.map_err(|error| {
                validate::rejected(spec, &view.plan, "creating the view", &error)
            })?;
            Some(kept)
        };
        validate::check_write_expressions(client, spec, &view.plan).await?;
        let fingerprint = catalog::live_fingerprint(client, view_schema, view_name)
            .await?
            .ok_or_else(|| ControlError::Template {
                name: templates::VIEW.into(),
                message: format!(
                    "rendered SQL did not create view {}",
                    view.plan.qualified_view()
                ),
            })?;
        if let Some(kept) = &kept {
            grants::give(client, view_schema, view_name, kept).await?;
        }
        let mapping = mapping::read(client, &view.plan).await?;
        objects.push(CatalogObject {
            version: version.name.clone(),
            table_name: view.plan.table_name.clone(),
            base_schema: view.plan.base_schema.clone(),
            base_table: view.plan.base_table.clone(),
            view_schema: view.plan.view_schema.clone(),
            view_name: view.plan.view_name.clone(),
            trigger_backed: view.plan.trigger.is_some(),
            fingerprint,
            mapping: Some(mapping),
        });
    }
    create_substitutes(client, version).await?;
    catalog::upsert_version(
        client,
        &version.name,
        spec.options.layout.as_str(),
        &version.checksum,
        &spec.source.display().to_string(),
    )
    .await?;
    catalog::replace_objects(client, &version.name, &objects).await?;
    if let Some(spec_version) = spec.version(&version.name) {
        definition::record(client, &VersionDefinition::from_spec(spec, spec_version)).await?;
    }
    Ok(dropped)
}

/// Creates `version`'s catalog substitutes (none when its `catalog` SQL is empty).
pub async fn create_substitutes(
    client: &impl GenericClient,
    version: &GeneratedVersion,
) -> Result<(), ControlError> {
    if version.catalog.is_empty() {
        return Ok(());
    }
    client
        .batch_execute(&version.catalog)
        .await
        .map_err(|error| {
            ControlError::database(
                format!(
                    "creating the catalog substitutes of version {}",
                    version.name
                ),
                &error,
            )
        })
}

/// Whether a schema named as `version`'s catalog substitutes exists that viewgate did not
/// make (the substitutes' SQL refuses to drop it): one without viewgate's comment, or owned by
/// a role the current one is not a member of. A comment is any owner's to write; another
/// role's schema is not ours to drop (the fortieth red-team pass forged the comment, and the
/// migration's rollback then failed with "must be owner").
pub async fn substitute_schema_is_foreign(
    client: &impl GenericClient,
    version: &str,
) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
                   AND (pg_catalog.obj_description(n.oid, 'pg_namespace') LIKE 'Managed by viewgate:%'
                        AND pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')) IS NOT TRUE)",
            &[&substitute_schema(version)],
        )
        .await
        .map_err(|error| {
            ControlError::database(
                format!("looking for the catalog substitutes' schema of version {version}"),
                &error,
            )
        })?
        .get(0))
}

/// The SQL that drops one recorded view, its trigger function and its mapping functions; its
/// version's catalog substitutes stay ([`drop_catalog_sql`] drops them when the version goes).
pub fn drop_sql(templates: &Templates, object: &CatalogObject) -> Result<String, ControlError> {
    let mut sql = templates.render(
        templates::DROP_MAPPING_FUNCTIONS,
        minijinja::context! {
            view_schema => &object.view_schema,
            view_name => &object.view_name,
            mapping_marker => mapping_functions::marker(&object.view_schema, &object.view_name),
        },
    )?;
    sql.push_str(&templates.render(
        templates::DROP_VIEW,
        minijinja::context! {
            object => object,
            write_function_suffix => write_function::SUFFIX,
            // Read by copies of this template made before drop_version_catalog.sql.j2 took
            // the substitutes' drop out of it (templates render strictly).
            catalog_schema => substitute_schema(&object.version),
        },
    )?);
    Ok(sql)
}

/// When [`drop_catalog_sql`]'s SQL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogDrop {
    /// In the transaction that retires the version.
    InTheTransaction,
    /// After the commit of the transaction that retired or forgot the version, perhaps much
    /// later (a killed run leaves it to the next migration command): by then `views apply`
    /// may have made the version anew, whose substitutes stay.
    AfterTheCommit,
}

/// The SQL that drops the catalog substitutes of `version`, which goes.
pub fn drop_catalog_sql(
    templates: &Templates,
    version: &str,
    when: CatalogDrop,
) -> Result<String, ControlError> {
    templates.render(
        templates::DROP_VERSION_CATALOG,
        minijinja::context! {
            version => version,
            catalog_schema => substitute_schema(version),
            only_if_gone => when == CatalogDrop::AfterTheCommit,
        },
    )
}

/// Hex digits of a checksum shown to people: enough to compare by eye.
const SHORT_CHECKSUM_LEN: usize = 12;

/// The first characters of a checksum, enough for people to compare.
pub fn short(checksum: &str) -> &str {
    checksum.get(..SHORT_CHECKSUM_LEN).unwrap_or(checksum)
}
