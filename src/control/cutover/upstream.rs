//! `viewgate pause`, `resume`, `reload` and `cutover --upstream URL` across one or more
//! proxies, through their admin APIs (`proxy::switch` and `proxy::reload` are the proxy side).
//!
//! An upstream cutover is two-phase across proxies as it is across sessions inside one:
//! prepare on every proxy (each pauses at transaction boundaries and connects every session to
//! the new upstream); commit on all only if all prepared, otherwise abort on those that did,
//! so no proxy is left on the other side. With `--wait-replication SLOT`, between the two
//! phases (clients paused, so the old upstream takes no more writes through the proxies) the
//! command waits until the logical replication slot feeding the new upstream has confirmed
//! the old upstream's current WAL position: the new upstream then has every committed row.
//! With a catalog database, the switch is recorded there (`viewgate.settings.upstream` and an
//! `apply_history` row with action `upstream`), so a restarted proxy starts on the new
//! upstream.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::control::catalog::{self, HistoryEntry};
use crate::control::connect::connect;
use crate::control::error::ControlError;
use crate::control::overview::{self, ProxyHeartbeat};
use crate::control::templates::Templates;
use crate::net::admin_client::{AdminClient, AdminClientError};
use crate::net::conninfo::without_password;

/// How often the replication slot is checked while waiting for it.
const REPLICATION_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamCutoverError {
    #[error("no admin API given: pass --admin http://host:port (repeatable) or set VIEWGATE_ADMIN")]
    NoProxies,
    #[error(transparent)]
    Admin(#[from] AdminClientError),
    #[error("{}", .0.join("; "))]
    Several(Vec<String>),
    #[error("--wait-replication needs --database (the old upstream, where the slot is)")]
    ReplicationNeedsDatabase,
    #[error("replication slot {slot:?} {problem}")]
    Replication { slot: String, problem: String },
    #[error(
        "the catalog shows {live} live proxies but --admin names {named}: every proxy must switch together, or some would go on writing to the old upstream. Live proxies (admin address): {proxies}. Name them all (see `viewgate status`)"
    )]
    ProxiesMissing {
        live: usize,
        named: usize,
        proxies: String,
    },
    #[error(transparent)]
    Catalog(#[from] ControlError),
}

/// What the cutover command does besides the switch itself.
pub struct CutoverOptions {
    pub url: String,
    pub timeout: Duration,
    /// The catalog database (and, for `wait_replication`, the old upstream).
    pub database: Option<String>,
    pub wait_replication: Option<String>,
}

/// Lines to print: one per proxy, and what was recorded.
pub struct Outcome {
    pub lines: Vec<String>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.lines.join("\n"))
    }
}

/// Refuses a cutover that would leave live proxies (by their catalog heartbeat) behind.
async fn all_live_proxies_named(database: &str, named: usize) -> Result<(), UpstreamCutoverError> {
    let client = connect(database).await?;
    let live: Vec<ProxyHeartbeat> = overview::load_proxies(&client)
        .await?
        .into_iter()
        .filter(|proxy| !proxy.stale)
        .collect();
    if live.len() <= named {
        return Ok(());
    }
    let proxies = live
        .iter()
        .map(|p| {
            format!(
                "{} ({})",
                p.proxy_id,
                p.admin_listen.as_deref().unwrap_or("none")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(UpstreamCutoverError::ProxiesMissing {
        live: live.len(),
        named,
        proxies,
    })
}

/// The admin clients for `addresses`.
pub fn clients(
    addresses: &[String],
    token: Option<String>,
) -> Result<Vec<AdminClient>, UpstreamCutoverError> {
    if addresses.is_empty() {
        return Err(UpstreamCutoverError::NoProxies);
    }
    addresses
        .iter()
        .map(|address| Ok(AdminClient::new(address, token.clone())?))
        .collect()
}

/// Pauses every proxy; if one cannot pause, resumes those that did.
pub async fn pause(
    proxies: &[AdminClient],
    timeout: Duration,
) -> Result<Outcome, UpstreamCutoverError> {
    let body = json!({ "timeout_ms": timeout.as_millis() as u64 });
    let results = join_all(proxies.iter().map(|p| p.post("/pause", &body, timeout))).await;
    let failures = failures(&results);
    if !failures.is_empty() {
        for (proxy, result) in proxies.iter().zip(&results) {
            if result.is_ok() {
                let _ = proxy.post("/resume", &json!({}), timeout).await;
            }
        }
        return Err(UpstreamCutoverError::Several(failures));
    }
    let lines = answered(proxies, &results, |report| {
        format!(
            "paused ({} sessions; in-flight transactions finished in {:.1} ms)",
            report["sessions"],
            report["waited_ms"].as_f64().unwrap_or_default()
        )
    });
    Ok(Outcome { lines })
}

pub async fn resume(proxies: &[AdminClient]) -> Result<Outcome, UpstreamCutoverError> {
    let results = post_to_all(proxies, "/resume").await;
    let failures = failures(&results);
    let lines = answered(proxies, &results, |report| {
        format!("resumed; {}", waits(&report["waits"]))
    });
    if !failures.is_empty() {
        return Err(UpstreamCutoverError::Several(failures));
    }
    Ok(Outcome { lines })
}

/// Asks every proxy to read its configuration and TLS files again (`POST /reload`, as SIGHUP
/// does); says what each read and applied, and fails naming the proxies that kept a file in
/// use.
pub async fn reload(proxies: &[AdminClient]) -> Result<Outcome, UpstreamCutoverError> {
    let results = post_to_all(proxies, "/reload").await;
    let failures = failures(&results);
    if !failures.is_empty() {
        return Err(UpstreamCutoverError::Several(failures));
    }
    let file = |report: &serde_json::Value, what: &str| match report["outcome"].as_str() {
        Some("reloaded") => format!(
            "{what} reloaded from {}",
            report["file"].as_str().unwrap_or("?")
        ),
        _ => format!("{what} not configured"),
    };
    let lines = answered(proxies, &results, |report| {
        format!(
            "{}; {}; {}",
            settings(&report["settings"]),
            file(&report["client_tls"], "client TLS certificate"),
            file(&report["upstream_tls"], "upstream CA certificates")
        )
    });
    Ok(Outcome { lines })
}

/// One proxy's reloaded settings in a line: the file, what applied, what takes a restart.
fn settings(report: &serde_json::Value) -> String {
    if report["outcome"].as_str() != Some("read") {
        return "no configuration file".into();
    }
    let names = |key: &str| {
        let names: Vec<&str> = report[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    format!(
        "settings read from {}: applied {}, taking a restart {}",
        report["file"].as_str().unwrap_or("?"),
        names("applied"),
        names("need_restart")
    )
}

/// The whole upstream cutover: prepare all, wait for replication, commit all, record.
pub async fn cutover(
    proxies: &[AdminClient],
    options: &CutoverOptions,
) -> Result<Outcome, UpstreamCutoverError> {
    let started = Instant::now();
    if options.wait_replication.is_some() && options.database.is_none() {
        return Err(UpstreamCutoverError::ReplicationNeedsDatabase);
    }
    if let Some(database) = &options.database {
        all_live_proxies_named(database, proxies.len()).await?;
    }
    let body = json!({ "url": options.url, "timeout_ms": options.timeout.as_millis() as u64 });
    let prepared = join_all(
        proxies
            .iter()
            .map(|p| p.post("/upstream/prepare", &body, options.timeout)),
    )
    .await;
    let failed = failures(&prepared);
    if !failed.is_empty() {
        abort_prepared(proxies, &prepared, options.timeout).await;
        return Err(UpstreamCutoverError::Several(failed));
    }
    let replication_started = Instant::now();
    if let (Some(slot), Some(database)) = (&options.wait_replication, &options.database)
        && let Err(error) = wait_for_slot(database, slot, options.timeout).await
    {
        abort_prepared(proxies, &prepared, options.timeout).await;
        return Err(error);
    }
    let replication_ms = replication_started.elapsed().as_secs_f64() * 1000.0;
    let empty = json!({});
    let committed = join_all(
        proxies
            .iter()
            .map(|p| p.post("/upstream/commit", &empty, options.timeout)),
    )
    .await;
    let mut lines: Vec<String> = proxies
        .iter()
        .zip(&committed)
        .zip(&prepared)
        .filter_map(|((proxy, result), prepare)| {
            let report = result.as_ref().ok()?;
            let prepare = prepare.as_ref().ok()?;
            Some(format!(
                "{}: {} sessions now on {}; {} (transactions finished in {:.1} ms, sessions reconnected in {:.1} ms)",
                proxy.address(),
                report["sessions"],
                report["upstream"].as_str().unwrap_or_default(),
                waits(&report["waits"]),
                prepare["waited_ms"].as_f64().unwrap_or_default(),
                prepare["prepare_ms"].as_f64().unwrap_or_default(),
            ))
        })
        .collect();
    if options.wait_replication.is_some() {
        lines.push(format!(
            "replication slot caught up in {replication_ms:.1} ms"
        ));
    }
    let failed = failures(&committed);
    if !failed.is_empty() {
        // A commit cannot be undone on the proxies that made it; say exactly where we are.
        return Err(UpstreamCutoverError::Several(
            failed
                .into_iter()
                .map(|f| format!("commit failed, this proxy may still be prepared or paused: {f}"))
                .chain(lines.iter().map(|l| format!("committed: {l}")))
                .collect(),
        ));
    }
    if let Some(database) = &options.database {
        record(database, &options.url, started.elapsed()).await?;
        lines.push(format!(
            "recorded in the catalog: upstream = {}",
            without_password(&options.url)
        ));
    }
    Ok(Outcome { lines })
}

async fn abort_prepared(
    proxies: &[AdminClient],
    prepared: &[Result<serde_json::Value, AdminClientError>],
    timeout: Duration,
) {
    let empty = json!({});
    let aborts = proxies
        .iter()
        .zip(prepared)
        .filter(|(_, result)| result.is_ok())
        .map(|(proxy, _)| proxy.post("/upstream/abort", &empty, timeout));
    for result in join_all(aborts).await {
        if let Err(error) = result {
            tracing::warn!(%error, "abort failed; the proxy aborts by itself when the prepared switch expires");
        }
    }
}

/// Waits until `slot` has confirmed everything the old upstream has written so far.
async fn wait_for_slot(
    database: &str,
    slot: &str,
    timeout: Duration,
) -> Result<(), UpstreamCutoverError> {
    let client = connect(database).await?;
    let replication = |problem: String| UpstreamCutoverError::Replication {
        slot: slot.to_owned(),
        problem,
    };
    let target: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| replication(e.to_string()))?
        .get(0);
    let deadline = Instant::now() + timeout;
    loop {
        let row = client
            .query_opt(
                "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
                 WHERE slot_name = $2",
                &[&target, &slot],
            )
            .await
            .map_err(|e| replication(e.to_string()))?
            .ok_or_else(|| replication("does not exist on the old upstream".into()))?;
        if row.get::<_, Option<bool>>(0) == Some(true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(replication(format!(
                "had not confirmed WAL position {target} after {} ms; the cutover was aborted",
                timeout.as_millis()
            )));
        }
        tokio::time::sleep(REPLICATION_POLL).await;
    }
}

/// Records the new upstream in the catalog so restarted proxies use it.
async fn record(database: &str, url: &str, duration: Duration) -> Result<(), ControlError> {
    let mut client = connect(database).await?;
    let transaction = client
        .transaction()
        .await
        .map_err(|e| ControlError::database("starting the catalog transaction", &e))?;
    // Adds the `upstream` column to catalogs created by older versions.
    catalog::ensure_catalog(&transaction, &Templates::load(None)?).await?;
    let url = without_password(url);
    let previous: Option<String> = transaction
        .query_one("SELECT upstream FROM viewgate.settings FOR UPDATE", &[])
        .await
        .map_err(|e| ControlError::database("reading the recorded upstream", &e))?
        .get(0);
    transaction
        .execute(
            "UPDATE viewgate.settings SET upstream = $1, updated_at = now()",
            &[&url],
        )
        .await
        .map_err(|e| ControlError::database("recording the upstream", &e))?;
    let entry = HistoryEntry::event(
        "upstream",
        vec![previous.unwrap_or_default(), url],
        duration,
    );
    catalog::record_history(&transaction, &entry).await?;
    transaction
        .commit()
        .await
        .map_err(|e| ControlError::database("committing the recorded upstream", &e))
}

/// How long a resume or reload may take on a proxy before it counts as failed.
const QUICK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// POSTs `path` with an empty body to every proxy at once: their answers, in order.
async fn post_to_all(
    proxies: &[AdminClient],
    path: &str,
) -> Vec<Result<serde_json::Value, AdminClientError>> {
    let empty = json!({});
    let requests = proxies
        .iter()
        .map(|proxy| proxy.post(path, &empty, QUICK_REQUEST_TIMEOUT));
    join_all(requests).await
}

/// One line per proxy that answered: its address and `describe` of its answer.
fn answered(
    proxies: &[AdminClient],
    results: &[Result<serde_json::Value, AdminClientError>],
    describe: impl Fn(&serde_json::Value) -> String,
) -> Vec<String> {
    proxies
        .iter()
        .zip(results)
        .filter_map(|(proxy, result)| {
            let report = result.as_ref().ok()?;
            Some(format!("{}: {}", proxy.address(), describe(report)))
        })
        .collect()
}

fn failures(results: &[Result<serde_json::Value, AdminClientError>]) -> Vec<String> {
    results
        .iter()
        .filter_map(|result| result.as_ref().err().map(ToString::to_string))
        .collect()
}

/// "clients waited p50 … p99 … max … (N held), paused … ms"
fn waits(summary: &serde_json::Value) -> String {
    let ms = |key: &str| summary[key].as_f64().unwrap_or_default();
    format!(
        "clients waited p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} held); paused {:.1} ms",
        ms("p50_ms"),
        ms("p99_ms"),
        ms("max_ms"),
        summary["held"].as_u64().unwrap_or_default(),
        ms("paused_ms")
    )
}
