//! The guard of a guarded default cutover (`viewgate cutover --to v2 --guard-error-rate 0.05
//! --guard-window 60s`), as the catalog holds it: its settings, checked before anything
//! connects; the `viewgate.cutover_guards` row the cutover writes in its own transaction; the
//! per-proxy counts in `viewgate.cutover_guard_counts` that let every proxy judge the error
//! rate of all of them together; and the two ways a guard ends by itself — *tripped* (the
//! default goes back to the version the cutover replaced, recorded as a `rollback` with the
//! reason) or *held* (the window passed under the threshold). Another cutover or rollback
//! supersedes a guard that is still watching.
//!
//! The proxies' side (counting, reporting, judging) is `telemetry::cutover_guard`. Every change
//! here is a compare-and-set under row locks, so N proxies judging at once change it once.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, GenericClient, Transaction};

use crate::control::catalog::{self, HistoryEntry};
use crate::control::error::ControlError;
use crate::model::Guard;
use crate::model::guard::MAX_GUARD_WINDOW;

/// The watch when `--guard-error-rate` is given without `--guard-window`.
pub const DEFAULT_CUTOVER_GUARD_WINDOW: Duration = Duration::from_secs(60);

/// A guarded cutover's settings as typed (CLI flags or the admin API's JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GuardArgs {
    pub error_rate: Option<f64>,
    pub window: Option<Duration>,
    pub min_queries: Option<u32>,
}

impl GuardArgs {
    pub fn is_set(&self) -> bool {
        self.error_rate.is_some() || self.window.is_some() || self.min_queries.is_some()
    }

    /// The guard, or what is wrong with the options; `None` when no guard was asked for.
    pub fn to_guard(&self) -> Result<Option<Guard>, ControlError> {
        if !self.is_set() {
            return Ok(None);
        }
        let Some(error_rate) = self.error_rate else {
            return Err(ControlError::CutoverGuard(
                "--guard-window and --guard-min-queries need --guard-error-rate".into(),
            ));
        };
        let window = self.window.unwrap_or(DEFAULT_CUTOVER_GUARD_WINDOW);
        if window < Duration::from_secs(1) || window > MAX_GUARD_WINDOW {
            return Err(ControlError::CutoverGuard(format!(
                "the guard window is between 1s and {}s, not {}",
                MAX_GUARD_WINDOW.as_secs(),
                humantime_serde::re::humantime::format_duration(window)
            )));
        }
        let guard = Guard {
            error_rate: Some(error_rate),
            window: Some(window),
            min_queries: self.min_queries,
        };
        guard.validate()?;
        Ok(Some(guard))
    }
}

/// A guard still watching, as a proxy reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchingGuard {
    pub id: i64,
    pub from: String,
    pub to: String,
    pub guard: Guard,
    /// Time since the cutover, by the catalog's clock.
    pub elapsed: Duration,
    /// Whether the window has passed.
    pub over: bool,
}

impl WatchingGuard {
    pub fn window(&self) -> Duration {
        self.guard.window.unwrap_or(DEFAULT_CUTOVER_GUARD_WINDOW)
    }
}

/// Requests and errors counted for a guard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    pub queries: u64,
    pub errors: u64,
}

impl GuardCounts {
    pub fn error_rate(&self) -> f64 {
        if self.queries == 0 {
            0.0
        } else {
            self.errors as f64 / self.queries as f64
        }
    }
}

fn database(context: &'static str) -> impl Fn(tokio_postgres::Error) -> ControlError {
    move |error| ControlError::database(context, &error)
}

/// Whether the catalog has the guard tables (a catalog from an older build gets them from the
/// guarded cutover, which upgrades it).
pub async fn tables_exist(client: &impl GenericClient) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT to_regclass('viewgate.cutover_guard_counts') IS NOT NULL",
            &[],
        )
        .await
        .map_err(database("looking for viewgate.cutover_guards"))?
        .get(0))
}

/// Ends a guard still watching because the default changed by hand (inside that change's
/// transaction, which holds the settings row).
pub async fn supersede(transaction: &Transaction<'_>, by: &str) -> Result<(), ControlError> {
    if !tables_exist(transaction).await? {
        return Ok(());
    }
    transaction
        .execute(
            "UPDATE viewgate.cutover_guards SET state = 'superseded', finished_at = now(),
                    reason = $1
             WHERE state = 'watching'",
            &[&by],
        )
        .await
        .map_err(database("ending the previous cutover guard"))?;
    Ok(())
}

/// Starts watching the cutover `from` → `to` (inside the cutover's transaction).
pub async fn start(
    transaction: &Transaction<'_>,
    from: &str,
    to: &str,
    guard: &Guard,
) -> Result<i64, ControlError> {
    let window_ms = guard.window_ms();
    let min_queries = guard
        .min_queries
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    Ok(transaction
        .query_one(
            "INSERT INTO viewgate.cutover_guards
               (from_version, to_version, error_rate, window_ms, min_queries, state, ends_at)
             VALUES ($1, $2, $3, $4, $5, 'watching',
                     now() + make_interval(secs => $4::integer / 1000.0))
             RETURNING id",
            &[&from, &to, &guard.error_rate, &window_ms, &min_queries],
        )
        .await
        .map_err(database("starting the cutover guard"))?
        .get(0))
}

/// The guard still watching, if any (none when the catalog has no guard tables).
pub async fn watching(client: &impl GenericClient) -> Result<Option<WatchingGuard>, ControlError> {
    if !tables_exist(client).await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT id, from_version, to_version, error_rate, window_ms, min_queries,
                    greatest(extract(epoch FROM now() - started_at), 0)::float8,
                    now() >= ends_at
             FROM viewgate.cutover_guards WHERE state = 'watching'
             ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(database("reading the cutover guard"))?;
    Ok(row.map(|row| WatchingGuard {
        id: row.get(0),
        from: row.get(1),
        to: row.get(2),
        guard: Guard {
            error_rate: Some(row.get(3)),
            window: Some(Duration::from_millis(
                u64::try_from(row.get::<_, i32>(4)).unwrap_or(0),
            )),
            min_queries: row
                .get::<_, Option<i32>>(5)
                .map(|n| u32::try_from(n).unwrap_or(0)),
        },
        elapsed: Duration::from_secs_f64(row.get::<_, f64>(6)),
        over: row.get(7),
    }))
}

/// Records this proxy's counts for the guard and returns the sum over every proxy.
pub async fn report(
    client: &Client,
    guard: i64,
    proxy_id: &str,
    counts: GuardCounts,
) -> Result<GuardCounts, ControlError> {
    let queries = i64::try_from(counts.queries).unwrap_or(i64::MAX);
    let errors = i64::try_from(counts.errors).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO viewgate.cutover_guard_counts (guard_id, proxy_id, queries, errors)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (guard_id, proxy_id) DO UPDATE
               SET queries = excluded.queries, errors = excluded.errors, reported_at = now()",
            &[&guard, &proxy_id, &queries, &errors],
        )
        .await
        .map_err(database(
            "reporting this proxy's counts to the cutover guard",
        ))?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(queries), 0)::bigint, coalesce(sum(errors), 0)::bigint
             FROM viewgate.cutover_guard_counts WHERE guard_id = $1",
            &[&guard],
        )
        .await
        .map_err(database("summing the cutover guard's counts"))?;
    Ok(GuardCounts {
        queries: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
        errors: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
    })
}

/// The running shadow run's comparisons with `to` (matched, differing, failing there) and how
/// many of them differed or failed, over every proxy; `None` without such a run. The guard
/// judges this like the error rate: a cutover to a version whose answers differ is rolled back.
pub async fn shadow_counts(
    client: &impl GenericClient,
    to: &str,
) -> Result<Option<GuardCounts>, ControlError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('viewgate.shadow_counts') IS NOT NULL",
            &[],
        )
        .await
        .map_err(database("looking for viewgate.shadow_counts"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT coalesce(sum((c.counts ->> 'matched')::bigint + (c.counts ->> 'diff')::bigint
                                 + (c.counts ->> 'error')::bigint), 0)::bigint,
                    coalesce(sum((c.counts ->> 'diff')::bigint + (c.counts ->> 'error')::bigint), 0)::bigint
             FROM viewgate.shadow_runs r
             LEFT JOIN viewgate.shadow_counts c ON c.run_id = r.id
             WHERE r.state = 'running' AND r.to_version = $1
             GROUP BY r.id",
            &[&to],
        )
        .await
        .map_err(database("reading the shadow run's counts"))?;
    Ok(row.map(|row| GuardCounts {
        queries: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
        errors: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
    }))
}

/// Why a guard rolled a cutover back because the shadow run's answers differ.
pub fn shadow_trip_reason(guard: &WatchingGuard, counts: GuardCounts, threshold: f64) -> String {
    format!(
        "cutover guard: the shadow run found {} of {} statements answered differently (or failing) at version {} ({:.1}%), above the {:.1}% threshold; the default version is {} again",
        counts.errors,
        counts.queries,
        guard.to,
        counts.error_rate() * 100.0,
        threshold * 100.0,
        guard.from
    )
}

/// Why a guard rolled a cutover back, as the history and the log say it.
pub fn trip_reason(guard: &WatchingGuard, counts: GuardCounts, threshold: f64) -> String {
    format!(
        "cutover guard: version {} failed {} of {} requests ({:.1}%) across every proxy in the {}s after the cutover, above the {:.1}% threshold; the default version is {} again",
        guard.to,
        counts.errors,
        counts.queries,
        counts.error_rate() * 100.0,
        guard.window().as_secs(),
        threshold * 100.0,
        guard.from
    )
}

/// Rolls the guarded cutover back: the default returns to the version it replaced, the guard is
/// marked tripped, a `rollback` (with `reason`) is recorded and the proxies are told. `None`
/// when the guard is no longer watching or the default changed meanwhile (nothing is changed).
pub async fn trip(
    client: &mut Client,
    guard: &WatchingGuard,
    counts: GuardCounts,
    reason: String,
) -> Result<Option<String>, ControlError> {
    let started = Instant::now();
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the cutover guard's rollback"))?;
    // The settings row first, as a cutover locks it, so the two never wait on each other.
    let default: Option<String> = transaction
        .query_one(
            "SELECT default_version FROM viewgate.settings FOR UPDATE",
            &[],
        )
        .await
        .map_err(database("reading the default version"))?
        .get(0);
    let still = transaction
        .query_opt(
            "SELECT 1 FROM viewgate.cutover_guards WHERE id = $1 AND state = 'watching' FOR UPDATE",
            &[&guard.id],
        )
        .await
        .map_err(database("reading the cutover guard"))?
        .is_some();
    if !still || default.as_deref() != Some(guard.to.as_str()) {
        return Ok(None);
    }
    let active = transaction
        .query_opt(
            "SELECT 1 FROM viewgate.versions WHERE version = $1 AND state = 'active'",
            &[&guard.from],
        )
        .await
        .map_err(database("checking the version to return to"))?
        .is_some();
    let mut reason = reason;
    let versions = vec![guard.to.clone(), guard.from.clone()];
    if active {
        transaction
            .execute(
                "UPDATE viewgate.settings SET default_version = $1, updated_at = now()",
                &[&guard.from],
            )
            .await
            .map_err(database("returning to the previous default version"))?;
    } else {
        reason = format!(
            "{reason} — except that {} is no longer active, so the default stays {}",
            guard.from, guard.to
        );
    }
    finish(&transaction, guard.id, "tripped", counts, &reason).await?;
    let entry = HistoryEntry {
        error: Some(reason.clone()),
        success: active,
        ..HistoryEntry::event("rollback", versions, started.elapsed())
    };
    catalog::record_history(&transaction, &entry).await?;
    catalog::notify_change(&transaction, "rollback", std::slice::from_ref(&guard.from)).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the cutover guard's rollback"))?;
    Ok(Some(reason))
}

/// Ends a guard whose window passed under the threshold; false when it already ended.
pub async fn hold(
    client: &mut Client,
    guard: &WatchingGuard,
    counts: GuardCounts,
) -> Result<bool, ControlError> {
    let started = Instant::now();
    let transaction = client
        .transaction()
        .await
        .map_err(database("starting the cutover guard's end"))?;
    let still = transaction
        .query_opt(
            "SELECT 1 FROM viewgate.cutover_guards
             WHERE id = $1 AND state = 'watching' AND now() >= ends_at FOR UPDATE",
            &[&guard.id],
        )
        .await
        .map_err(database("reading the cutover guard"))?
        .is_some();
    if !still {
        return Ok(false);
    }
    let reason = format!(
        "cutover guard: version {} held, {} of {} requests failed ({:.1}%) in the {}s after the cutover",
        guard.to,
        counts.errors,
        counts.queries,
        counts.error_rate() * 100.0,
        guard.window().as_secs()
    );
    finish(&transaction, guard.id, "held", counts, &reason).await?;
    catalog::record_history(
        &transaction,
        &HistoryEntry::event("guard", vec![guard.to.clone()], started.elapsed()),
    )
    .await?;
    catalog::notify_change(&transaction, "guard", std::slice::from_ref(&guard.to)).await?;
    transaction
        .commit()
        .await
        .map_err(database("committing the cutover guard's end"))?;
    Ok(true)
}

async fn finish(
    transaction: &Transaction<'_>,
    id: i64,
    state: &str,
    counts: GuardCounts,
    reason: &str,
) -> Result<(), ControlError> {
    let queries = i64::try_from(counts.queries).unwrap_or(i64::MAX);
    let errors = i64::try_from(counts.errors).unwrap_or(i64::MAX);
    transaction
        .execute(
            "UPDATE viewgate.cutover_guards
             SET state = $2, finished_at = now(), queries = $3, errors = $4, reason = $5
             WHERE id = $1",
            &[&id, &state, &queries, &errors, &reason],
        )
        .await
        .map_err(database("ending the cutover guard"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_options_are_checked() {
        assert_eq!(GuardArgs::default().to_guard().unwrap(), None);
        let guard = GuardArgs {
            error_rate: Some(0.05),
            ..GuardArgs::default()
        }
        .to_guard()
        .unwrap()
        .unwrap();
        assert_eq!(guard.window, Some(DEFAULT_CUTOVER_GUARD_WINDOW));
        let error = |args: GuardArgs| args.to_guard().unwrap_err().to_string();
        assert!(
            error(GuardArgs {
                window: Some(Duration::from_secs(30)),
                ..GuardArgs::default()
            })
            .contains("need --guard-error-rate")
        );
        assert!(
            error(GuardArgs {
                error_rate: Some(1.5),
                ..GuardArgs::default()
            })
            .contains("at most 1")
        );
        assert!(
            error(GuardArgs {
                error_rate: Some(0.1),
                window: Some(Duration::from_secs(301)),
                ..GuardArgs::default()
            })
            .contains("between 1s and 300s")
        );
    }
}
