//! Blue-green cutover of the default version: one catalog update, recorded and announced.
//!
//! Proxies reload on the notification; sessions that run at the default move to the new one
//! at their next transaction boundary, sessions that declared a version keep it, and statements
//! prepared earlier keep the version they were prepared under. Rollback is the same operation
//! back to the version the last cutover replaced.

use std::time::Instant;

use tokio_postgres::Client;

use crate::catalog_read;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;

/// What a cutover changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutoverOutcome {
    pub from: Option<String>,
    pub to: String,
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
            )
        }
    }
}

/// Makes `to` the default version.
pub async fn cutover(client: &mut Client, to: &str) -> Result<CutoverOutcome, ControlError> {
    switch(client, Target::Version(to)).await
}

/// Makes the version the last cutover (or rollback) replaced the default again.
pub async fn rollback(client: &mut Client) -> Result<CutoverOutcome, ControlError> {
    switch(client, Target::Previous).await
}

enum Target<'a> {
    Version(&'a str),
    Previous,
}

async fn switch(client: &mut Client, target: Target<'_>) -> Result<CutoverOutcome, ControlError> {
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
    let outcome = CutoverOutcome { from, to };
    if outcome.from.as_deref() == Some(outcome.to.as_str()) {
        return Ok(outcome);
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
