//! `viewgate shadow start|stop`: a shadow run's options checked before anything connects, then
//! one transaction under the apply lock (catalog upgraded, both versions active, no other run)
//! that records it in the history and notifies the proxies, which start sampling at their next
//! reload.

use std::time::Instant;

use serde::Deserialize;
use tokio_postgres::Client;

use crate::catalog_read;
use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::control::templates::Templates;
use crate::control::views::spec::DEFAULT_LOCK_TIMEOUT;
use crate::model::ShapePattern;
use crate::model::shadow_run::{DEFAULT_SHADOW_BUDGET, MAX_SHADOW_BUDGET};

/// `shadow start`'s options as typed (CLI flags, or JSON to `POST /shadow/start`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowArgs {
    pub from: String,
    pub to: String,
    pub rate: f64,
    pub budget: Option<u64>,
    #[serde(default)]
    pub redact: bool,
    /// `--match`: only statements whose shape matches are shadowed (`model::ShapePattern`).
    #[serde(default, rename = "match")]
    pub matching: Option<String>,
}

impl ShadowArgs {
    /// The `--match` pattern, checked.
    pub fn pattern(&self) -> Result<Option<ShapePattern>, ControlError> {
        self.matching
            .as_deref()
            .map(ShapePattern::parse)
            .transpose()
            .map_err(|error| ControlError::Shadow(error.to_string()))
    }

    /// What is wrong with the options, before connecting anywhere.
    pub fn check(&self) -> Result<(), ControlError> {
        self.pattern()?;
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(ControlError::Shadow(format!(
                "the rate is a fraction above 0 and at most 1 (e.g. 0.05), not {}",
                self.rate
            )));
        }
        let budget = self.budget.unwrap_or(DEFAULT_SHADOW_BUDGET);
        if budget == 0 || budget > MAX_SHADOW_BUDGET {
            return Err(ControlError::Shadow(format!(
                "the budget is between 1 and {MAX_SHADOW_BUDGET} comparisons, not {budget}"
            )));
        }
        if self.from == self.to {
            return Err(ControlError::Shadow(format!(
                "--from and --to are both {}: a shadow run compares two versions",
                self.from
            )));
        }
        Ok(())
    }
}

/// A run started.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Started {
    pub id: i64,
    pub from: String,
    pub to: String,
    pub rate: f64,
    pub budget: u64,
    /// The `--match` pattern, as stored.
    #[serde(rename = "match")]
    pub matching: Option<String>,
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shadow run {}: {:.2}% of the read-only statements{} of sessions at {} are run again at {} and compared, up to {} comparisons; `viewgate shadow report` shows what differs",
            self.id,
            self.rate * 100.0,
            self.matching
                .as_deref()
                .map(|pattern| format!(" matching {pattern:?}"))
                .unwrap_or_default(),
            self.from,
            self.to,
            self.budget
        )
    }
}

fn database(context: &'static str) -> impl Fn(tokio_postgres::Error) -> ControlError {
    move |error| ControlError::database(context, &error)
}

/// Starts a shadow run.
pub async fn start(client: &mut Client, args: &ShadowArgs) -> Result<Started, ControlError> {
    args.check()?;
    let matching = args.pattern()?.map(|pattern| pattern.as_str().to_owned());
    let started = Instant::now();
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the shadow run's transaction"))?;
    if !catalog_read::catalog_exists(&transaction).await? {
        return Err(ControlError::NoCatalog);
    }
    catalog::set_local_lock_timeout(&transaction, DEFAULT_LOCK_TIMEOUT).await?;
    catalog::wait_apply_lock(&transaction).await?;
    catalog::ensure_catalog(&transaction, &Templates::built_in()).await?;
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
    for version in [&args.from, &args.to] {
        if !active.contains(version) {
            return Err(ControlError::NotActive {
                version: version.clone(),
                active: active.join(", "),
            });
        }
    }
    if let Some(row) = transaction
        .query_opt(
            "SELECT id FROM viewgate.shadow_runs WHERE state = 'running'",
            &[],
        )
        .await
        .map_err(database("looking for a running shadow run"))?
    {
        return Err(ControlError::ShadowRunning(row.get(0)));
    }
    let budget = args.budget.unwrap_or(DEFAULT_SHADOW_BUDGET);
    let budget_sql = i64::try_from(budget).unwrap_or(i64::MAX);
    let id: i64 = transaction
        .query_one(
            "INSERT INTO viewgate.shadow_runs (from_version, to_version, rate, budget, redact, match_shape, state)
             VALUES ($1, $2, $3, $4, $5, $6, 'running') RETURNING id",
            &[&args.from, &args.to, &args.rate, &budget_sql, &args.redact, &matching],
        )
        .await
        .map_err(database("starting the shadow run"))?
        .get(0);
    let versions = vec![args.from.clone(), args.to.clone()];
    catalog::record_history(
        &transaction,
        &HistoryEntry::event("shadow", versions.clone(), started.elapsed()),
    )
    .await?;
    catalog::notify_change(&transaction, "shadow", &versions).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the shadow run"))?;
    Ok(Started {
        id,
        from: args.from.clone(),
        to: args.to.clone(),
        rate: args.rate,
        budget,
        matching,
    })
}

/// Stops the running shadow run; its id, or an error when none runs.
pub async fn stop(client: &mut Client) -> Result<i64, ControlError> {
    let started = Instant::now();
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the shadow stop's transaction"))?;
    if !catalog_read::catalog_exists(&transaction).await? {
        return Err(ControlError::NoCatalog);
    }
    if catalog_read::shadow_run(&transaction).await?.is_none() {
        return Err(ControlError::NoShadowRun);
    }
    let row = transaction
        .query_opt(
            "UPDATE viewgate.shadow_runs
             SET state = 'stopped', finished_at = now(), reason = 'stopped by ' || current_user
             WHERE state = 'running' RETURNING id, from_version, to_version",
            &[],
        )
        .await
        .map_err(database("stopping the shadow run"))?
        .ok_or(ControlError::NoShadowRun)?;
    let versions: Vec<String> = vec![row.get(1), row.get(2)];
    catalog::record_history(
        &transaction,
        &HistoryEntry {
            error: Some("shadow run stopped".into()),
            ..HistoryEntry::event("shadow", versions.clone(), started.elapsed())
        },
    )
    .await?;
    catalog::notify_change(&transaction, "shadow", &versions).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the shadow stop"))?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let args = |rate: f64, budget: Option<u64>, to: &str| ShadowArgs {
            from: "v1".into(),
            to: to.into(),
            rate,
            budget,
            redact: false,
            matching: None,
        };
        let matching = |pattern: &str| ShadowArgs {
            matching: Some(pattern.into()),
            ..args(0.05, None, "v2")
        };
        assert!(matching("FROM model_metadata WHERE id = ?").check().is_ok());
        assert!(args(0.05, None, "v2").check().is_ok());
        for (bad, expected) in [
            (args(0.0, None, "v2"), "above 0"),
            (args(1.5, None, "v2"), "at most 1"),
            (args(f64::NAN, None, "v2"), "fraction"),
            (args(0.1, Some(0), "v2"), "budget"),
            (args(0.1, Some(MAX_SHADOW_BUDGET + 1), "v2"), "budget"),
            (args(0.1, None, "v1"), "two versions"),
            (matching(" * "), "matches every statement"),
            (matching("a\u{1}"), "control character"),
        ] {
            let error = bad.check().unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
