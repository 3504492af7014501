//! Blue-green cutover of the default version: one catalog update, recorded and announced.
//!
//! Proxies reload on the notification; sessions that run at the default move to the new one
//! at their next transaction boundary, sessions that declared a version keep it, and statements
//! prepared earlier keep the version they were prepared under. Rollback is the same operation
//! back to the version the last cutover replaced.

use std::time::Instant;

use tokio_postgres::Client;

use super::guard;
use crate::catalog_read;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::templates::Templates;
use crate::control::views::spec::DEFAULT_LOCK_TIMEOUT;
use crate::model::Guard;

/// What a cutover changed.
#[derive(Debug, Clone, PartialEq)]
pub struct CutoverOutcome {
    pub from: Option<String>,
    pub to: String,
    /// The guard now watching the cutover (`cutover_guards.id` and its settings).
    pub guard: Option<(i64, Guard)>,
}

impl std::fmt::Display for CutoverOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = self.from.as_deref().unwrap_or("(none)");
        if self.from.as_deref() == Some(self.to.as_str()) {
            write!(f, "default version is already {}; nothing changed", self.to)
        } else {
            write!(
                f,
                "default version: {from} -> {}; proxies move default sessions at their next transaction boundary",
                self.to
            )?;
            if let Some((id, guard)) = &self.guard {
                write!(
                    f,
                    "\nguard {id}: rolls back to {from} by itself if {} fails more than {} of the requests of default sessions across every proxy in the next {} (at least {} requests)",
                    self.to,
                    guard.error_rate.unwrap_or_default(),
                    humantime_serde::re::humantime::format_duration(
                        guard.window.unwrap_or(guard::DEFAULT_CUTOVER_GUARD_WINDOW)
                    ),
                    guard
                        .min_queries
                        .unwrap_or(crate::model::guard::DEFAULT_MIN_QUERIES)
                )?;
            }
            Ok(())
        }
    }
}

/// Makes `to` the default version.
pub async fn cutover(client: &mut Client, to: &str) -> Result<CutoverOutcome, ControlError> {
    switch(client, Target::Version(to), None).await
}

/// Makes `to` the default version and starts `guard` watching it: past its error rate the
/// proxies roll the cutover back by themselves (`telemetry::cutover_guard`).
pub async fn guarded_cutover(
    client: &mut Client,
    to: &str,
    guard: &Guard,
) -> Result<CutoverOutcome, ControlError> {
    switch(client, Target::Version(to), Some(guard)).await
}

/// Makes the version the last cutover (or rollback) replaced the default again.
pub async fn rollback(client: &mut Client) -> Result<CutoverOutcome, ControlError> {
    switch(client, Target::Previous, None).await
}

enum Target<'a> {
    Version(&'a str),
    Previous,
}

async fn switch(
    client: &mut Client,
    target: Target<'_>,
    guard: Option<&Guard>,
) -> Result<CutoverOutcome, ControlError> {
    let started = Instant::now();
    let database = |context: &'static str| {
        move |error: tokio_postgres::Error| ControlError::database(context, &error)
    };
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the cutover transaction"))?;
    if !catalog_read::catalog_exists(&transaction).await? {
        return Err(ControlError::NoCatalog);
    }
    if guard.is_some() && !guard::tables_exist(&transaction).await? {
        // A catalog from an older build gets the guard's tables, under the apply lock.
        catalog::set_local_lock_timeout(&transaction, DEFAULT_LOCK_TIMEOUT).await?;
        catalog::wait_apply_lock(&transaction).await?;
        catalog::ensure_catalog(&transaction, &Templates::built_in()).await?;
    }
    // The settings row is locked so two cutovers at once take turns.
    let from: Option<String> = transaction
        .query_one(
            "SELECT default_version FROM viewgate.settings FOR UPDATE",
            &[],
        )
        .await
        .map_err(database("reading the default version"))?
        .get(0);
    let (action, to) = match target {
        Target::Version(version) => ("cutover", version.to_owned()),
        Target::Previous => ("rollback", previous_default(&transaction).await?),
    };
    let active: Vec<String> = transaction
        .query(
            "SELECT version FROM viewgate.versions WHERE state = 'active' ORDER BY version",
            &[],
        )
        .await
        .map_err(database("reading the active versions"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if !active.contains(&to) {
        return Err(ControlError::NotActive {
            version: to,
            active: active.join(", "),
        });
    }
    let mut outcome = CutoverOutcome {
        from,
        to,
        guard: None,
    };
    if outcome.from.as_deref() == Some(outcome.to.as_str()) {
        if guard.is_some() {
            return Err(ControlError::CutoverGuard(format!(
                "the default version is already {}; a guard watches a cutover, so there is nothing to watch",
                outcome.to
            )));
        }
        return Ok(outcome);
    }
    guard::supersede(&transaction, action).await?;
    if let Some(guard) = guard {
        let Some(from) = outcome.from.clone() else {
            return Err(ControlError::CutoverGuard(
                "there is no default version yet to return to; make the first cutover unguarded"
                    .into(),
            ));
        };
        let id = guard::start(&transaction, &from, &outcome.to, guard).await?;
        outcome.guard = Some((id, *guard));
    }
    transaction
        .execute(
            "UPDATE viewgate.settings SET default_version = $1, updated_at = now()",
            &[&outcome.to],
        )
        .await
        .map_err(database("setting the default version"))?;
    let entry = HistoryEntry::event(
        action,
        // [from, to]: what a later rollback returns to.
        vec![outcome.from.clone().unwrap_or_default(), outcome.to.clone()],
        started.elapsed(),
    );
    catalog::record_history(&transaction, &entry).await?;
    catalog::notify_change(&transaction, action, std::slice::from_ref(&outcome.to)).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the cutover"))?;
    Ok(outcome)
}

/// The version the most recent cutover or rollback replaced.
async fn previous_default(
    transaction: &tokio_postgres::Transaction<'_>,
) -> Result<String, ControlError> {
    let row = transaction
        .query_opt(
            "SELECT versions[1] FROM viewgate.apply_history
             WHERE action IN ('cutover', 'rollback') AND success
             ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("reading the last cutover", &error))?;
    row.and_then(|row| row.get::<_, Option<String>>(0))
        .filter(|version| !version.is_empty())
        .ok_or(ControlError::NothingToRollBack)
}
