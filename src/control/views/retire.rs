//! `viewgate views drop --version V`: retire a version by dropping its views and trigger
//! functions and marking it retired in the catalog, in one transaction under the apply lock.
//!
//! The catalog, not the spec, says what to drop, so a version can be retired after it left the
//! spec. The default version cannot be retired, nor one a routing rule names: clients would
//! lose their tables.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use super::apply::{CatalogDrop, LockSettings, drop_catalog_sql, drop_sql, record_failure};
use crate::catalog_read;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::quote::quote_ident;
use crate::control::retry::with_lock_retries;
use crate::control::templates::Templates;
use crate::control::usage;

#[derive(Debug, Clone, Serialize)]
pub struct RetireOutcome {
    pub version: String,
    pub dropped: Vec<String>,
    /// False when the version was already retired.
    pub changed: bool,
}

impl std::fmt::Display for RetireOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.changed {
            return write!(formatter, "version {} was already retired", self.version);
        }
        write!(
            formatter,
            "retired version {}; dropped {}",
            self.version,
            if self.dropped.is_empty() {
                "nothing".to_owned()
            } else {
                self.dropped.join(", ")
            }
        )
    }
}

pub async fn retire(
    client: &mut Client,
    version: &str,
    templates: &Templates,
    locks: LockSettings,
) -> Result<RetireOutcome, ControlError> {
    let started = Instant::now();
    let attempted = with_lock_retries(locks.max_attempts, locks.lock_timeout, async || {
        retire_once(client, version, templates, locks, started).await
    })
    .await;
    if let Err(error) = &attempted.result
        && !matches!(error, ControlError::UnknownVersion(_))
    {
        let entry = HistoryEntry {
            action: "drop",
            success: false,
            spec_file: None,
            spec_checksum: None,
            versions: vec![version.to_owned()],
            duration: started.elapsed(),
            attempts: attempted.attempts,
            error: Some(error.to_string()),
        };
        record_failure(client, templates, locks, &entry).await;
    }
    attempted.result
}

async fn retire_once(
    client: &mut Client,
    version: &str,
    templates: &Templates,
    locks: LockSettings,
    started: Instant,
) -> Result<RetireOutcome, ControlError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|error| ControlError::database("starting the drop transaction", &error))?;
    catalog::set_local_lock_timeout(&transaction, locks.lock_timeout).await?;
    catalog::try_apply_lock(&transaction).await?;
    if !catalog_read::catalog_exists(&transaction).await? {
        return Err(ControlError::UnknownVersion(version.to_owned()));
    }
    let recorded = catalog::load_versions(&transaction)
        .await?
        .remove(version)
        .ok_or_else(|| ControlError::UnknownVersion(version.to_owned()))?;
    if recorded.state == "retired" {
        return Ok(RetireOutcome {
            version: version.to_owned(),
            dropped: Vec::new(),
            changed: false,
        });
    }
    if catalog_read::default_version(&transaction)
        .await?
        .as_deref()
        == Some(version)
    {
        return Err(ControlError::VersionIsDefault(version.to_owned()));
    }
    // A rule naming a retired version is skipped whole by the proxies, its other versions too.
    let naming: Vec<String> = catalog_read::load_rules(&transaction)
        .await?
        .rules
        .iter()
        .filter(|rule| rule.versions().contains(&version))
        .map(|rule| rule.id.to_string())
        .collect();
    if !naming.is_empty() {
        return Err(ControlError::VersionInRules {
            version: version.to_owned(),
            rules: naming.join(", "),
        });
    }
    // Sessions at the version, and a live migration from or to it: the proxies would have
    // nothing to rewrite those sessions' statements to (the thirty-first red-team pass
    // dropped a version under a live session).
    let mut reasons = usage::reasons_in_use(&transaction, version).await?;
    reasons.extend(live_migrations_of(&transaction, version).await?);
    if !reasons.is_empty() {
        return Err(ControlError::VersionInUse {
            version: version.to_owned(),
            reasons: reasons.join("; "),
        });
    }
    let objects: Vec<_> = catalog::load_objects(&transaction)
        .await?
        .into_iter()
        .filter(|object| object.version == version)
        .collect();
    let mut dropped = Vec::with_capacity(objects.len());
    for object in &objects {
        let sql = drop_sql(templates, object)?;
        transaction.batch_execute(&sql).await.map_err(|error| {
            ControlError::database(
                format!("dropping {}.{}", object.view_schema, object.view_name),
                &error,
            )
        })?;
        dropped.push(format!("{}.{}", object.view_schema, object.view_name));
    }
    let sql = drop_catalog_sql(templates, version, CatalogDrop::InTheTransaction)?;
    transaction.batch_execute(&sql).await.map_err(|error| {
        ControlError::database(
            format!("dropping the catalog substitutes of version {version}"),
            &error,
        )
    })?;
    if recorded.layout == "schema" {
        drop_schema_if_empty(&transaction, version).await?;
    }
    catalog::retire_version(&transaction, version).await?;
    catalog::record_history(
        &transaction,
        &HistoryEntry {
            action: "drop",
            success: true,
            spec_file: None,
            spec_checksum: None,
            versions: vec![version.to_owned()],
            duration: started.elapsed(),
            attempts: 1,
            error: None,
        },
    )
    .await?;
    catalog::notify_change(&transaction, "drop", &[version.to_owned()]).await?;
    transaction
        .commit()
        .await
        .map_err(|error| ControlError::database("committing the drop", &error))?;
    Ok(RetireOutcome {
        version: version.to_owned(),
        dropped,
        changed: true,
    })
}

/// The live migrations (not completed, not rolled back) that start from `version` or make it,
/// one reason each: `migrate complete` or `rollback` retires it, `views drop` may not.
async fn live_migrations_of(
    transaction: &tokio_postgres::Transaction<'_>,
    version: &str,
) -> Result<Vec<String>, ControlError> {
    let exists = transaction
        .query_one("SELECT to_regclass('viewgate.migrations') IS NOT NULL", &[])
        .await
        .map_err(|error| ControlError::database("looking for the migrations table", &error))?;
    if !exists.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    let rows = transaction
        .query(
            "SELECT from_version, version FROM viewgate.migrations
             WHERE phase NOT IN ('completed', 'rolled_back') AND $1 IN (from_version, version)
             ORDER BY id",
            &[&version],
        )
        .await
        .map_err(|error| ControlError::database("reading the live migrations", &error))?;
    Ok(rows
        .iter()
        .map(|row| {
            format!(
                "the migration from {} to {} is live (`viewgate migrate complete` or `rollback` retires {version})",
                row.get::<_, String>(0),
                row.get::<_, String>(1)
            )
        })
        .collect())
}

/// Drops the version's own schema (schema layout) unless someone put other objects in it.
async fn drop_schema_if_empty(
    client: &tokio_postgres::Transaction<'_>,
    schema: &str,
) -> Result<(), ControlError> {
    let context = || format!("dropping schema {schema}");
    let row = client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)
                AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1)
                AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(|error| ControlError::database(context(), &error))?;
    if row.get::<_, bool>(0) {
        client
            .batch_execute(&format!("DROP SCHEMA {}", quote_ident(schema)))
            .await
            .map_err(|error| ControlError::database(context(), &error))?;
    }
    Ok(())
}
