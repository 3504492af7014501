//! `viewgate status`: the whole deployment as the catalog knows it — versions, the default,
//! routing rules, every proxy's heartbeat with its live sessions per version (and why they
//! run at it), and the latest control-plane events. Read-only; printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::catalog::{self, CatalogVersion};
use super::error::ControlError;
use crate::catalog_read;
use crate::model::Rule;
use crate::model::heartbeat::{HEARTBEAT_INTERVAL, STALE_AFTER_BEATS};
use crate::model::listed_session::{self, ListedByVersion, ListedSession};

/// How many recent history rows status shows.
const RECENT_EVENTS: i64 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub versions: Vec<CatalogVersion>,
    pub default_version: Option<String>,
    /// Routing rules in evaluation order (disabled ones included, marked).
    pub rules: Vec<Rule>,
    pub proxies: Vec<ProxyHeartbeat>,
    /// Live sessions per version, summed over the proxies that are not stale.
    pub sessions: BTreeMap<String, i64>,
    /// The same sessions by why they run at their version ("declared", "rule 3", "default").
    pub session_reasons: BTreeMap<String, BTreeMap<String, i64>>,
    pub recent_events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyHeartbeat {
    pub proxy_id: String,
    pub listen: String,
    pub admin_listen: Option<String>,
    pub pid: i32,
    pub build: String,
    pub started_at: String,
    /// Seconds since the proxy last reported.
    pub seconds_since_seen: f64,
    /// No report for several heartbeat intervals: stopped or cut off from the catalog.
    pub stale: bool,
    pub default_version: Option<String>,
    pub sessions_active: i64,
    pub sessions: BTreeMap<String, i64>,
    pub session_reasons: BTreeMap<String, BTreeMap<String, i64>>,
    /// The catalog change its routing state has loaded (`viewgate.catalog_change`); `None`
    /// from a build or a catalog that does not report it.
    pub loaded_change: Option<i64>,
    /// Who a few of the sessions at each version are, the longest connected first (empty
    /// from a build or a catalog that does not report them).
    pub listed_sessions: ListedByVersion,
}

impl ProxyHeartbeat {
    /// `sessions` (of this proxy's `count` at `version`) for a message: who they are, as far as
    /// the heartbeat lists them.
    pub fn describe_sessions(&self, version: &str, count: i64) -> Option<String> {
        let listed = self.listed_sessions.get(version)?;
        (!listed.is_empty()).then(|| listed_session::describe(listed, count))
    }
}

/// The listed sessions of live proxies at a version other than `default`, with their proxy's
/// id: those a contract would wait for once the default has moved on.
pub fn sessions_off_default<'p>(
    proxies: &'p [ProxyHeartbeat],
    default: Option<&str>,
) -> Vec<(&'p str, &'p ListedSession)> {
    proxies
        .iter()
        .filter(|proxy| !proxy.stale)
        .flat_map(|proxy| {
            proxy
                .listed_sessions
                .iter()
                .filter(|(version, _)| Some(version.as_str()) != default)
                .flat_map(move |(_, listed)| {
                    listed.iter().map(move |s| (proxy.proxy_id.as_str(), s))
                })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub action: String,
    pub success: bool,
    pub versions: Vec<String>,
    pub by: String,
    pub error: Option<String>,
}

/// Reads the overview; a database without a catalog is an error that says how to create one.
pub async fn load(client: &impl GenericClient) -> Result<Overview, ControlError> {
    if !catalog_read::catalog_exists(client).await? {
        return Err(ControlError::NoCatalog);
    }
    let versions = catalog::load_versions(client)
        .await?
        .into_values()
        .collect();
    let default_version = catalog_read::default_version(client).await?;
    let proxies = load_proxies(client).await?;
    let mut sessions = BTreeMap::new();
    let mut session_reasons: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for proxy in proxies.iter().filter(|p| !p.stale) {
        for (version, count) in &proxy.sessions {
            *sessions.entry(version.clone()).or_default() += count;
        }
        for (version, reasons) in &proxy.session_reasons {
            let total = session_reasons.entry(version.clone()).or_default();
            for (reason, count) in reasons {
                *total.entry(reason.clone()).or_default() += count;
            }
        }
    }
    Ok(Overview {
        versions,
        default_version,
        rules: catalog_read::load_rules(client).await?.rules,
        proxies,
        sessions,
        session_reasons,
        recent_events: load_events(client).await?,
    })
}

/// Every proxy's latest heartbeat; empty when the catalog predates heartbeats.
pub async fn load_proxies(
    client: &impl GenericClient,
) -> Result<Vec<ProxyHeartbeat>, ControlError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('viewgate.proxies') IS NOT NULL", &[])
        .await
        .map_err(|error| ControlError::database("looking for viewgate.proxies", &error))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let stale_after = (HEARTBEAT_INTERVAL * STALE_AFTER_BEATS).as_secs_f64();
    let rows = client
        .query(
            "SELECT proxy_id, listen, admin_listen, pid, build,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    extract(epoch FROM now() - last_seen)::float8,
                    default_version, sessions_active, sessions::text, session_reasons::text,
                    -- Through jsonb: a catalog from before the column has no such column.
                    (to_jsonb(p) ->> 'loaded_change')::bigint,
                    coalesce(to_jsonb(p) -> 'listed_sessions', '{}')::text
             FROM viewgate.proxies p ORDER BY proxy_id",
            &[],
        )
        .await
        .map_err(|error| ControlError::database("reading viewgate.proxies", &error))?;
    Ok(rows
        .iter()
        .map(|row| {
            let seconds_since_seen: f64 = row.get(6);
            let sessions: String = row.get(9);
            let reasons: String = row.get(10);
            let listed: String = row.get(12);
            ProxyHeartbeat {
                proxy_id: row.get(0),
                listen: row.get(1),
                admin_listen: row.get(2),
                pid: row.get(3),
                build: row.get(4),
                started_at: row.get(5),
                seconds_since_seen,
                stale: seconds_since_seen > stale_after,
                default_version: row.get(7),
                sessions_active: row.get(8),
                sessions: serde_json::from_str(&sessions).unwrap_or_default(),
                session_reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                loaded_change: row.get(11),
                listed_sessions: serde_json::from_str(&listed).unwrap_or_default(),
            }
        })
        .collect())
}

async fn load_events(client: &impl GenericClient) -> Result<Vec<Event>, ControlError> {
    let rows = client
        .query(
            "SELECT to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    action, success, versions, applied_by, error
             FROM viewgate.apply_history ORDER BY id DESC LIMIT $1",
            &[&RECENT_EVENTS],
        )
        .await
        .map_err(|error| ControlError::database("reading viewgate.apply_history", &error))?;
    Ok(rows
        .iter()
        .map(|row| Event {
            at: row.get(0),
            action: row.get(1),
            success: row.get(2),
            versions: row.get(3),
            by: row.get(4),
            error: row.get(5),
        })
        .collect())
}

impl fmt::Display for Overview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = self.default_version.as_deref().unwrap_or("(none)");
        writeln!(f, "default version: {default}")?;
        writeln!(f, "versions:")?;
        for version in &self.versions {
            let live = self.sessions.get(&version.version).copied().unwrap_or(0);
            let reasons = self
                .session_reasons
                .get(&version.version)
                .map(|reasons| {
                    let parts: Vec<String> = reasons
                        .iter()
                        .map(|(why, n)| format!("{why}: {n}"))
                        .collect();
                    format!(" ({})", parts.join(", "))
                })
                .unwrap_or_default();
            writeln!(
                f,
                "  {:<12} {:<8} {live} live session(s){reasons}",
                version.version, version.state
            )?;
        }
        writeln!(f, "rules:")?;
        if self.rules.is_empty() {
            writeln!(
                f,
                "  (none: every session gets its declared version or the default)"
            )?;
        }
        for rule in &self.rules {
            let enforce = if rule.enforce { " enforce" } else { "" };
            let disabled = if rule.enabled { "" } else { " (disabled)" };
            writeln!(
                f,
                "  rule {:<4} #{:<3} {} -> {}{enforce}  guard {}{disabled}",
                rule.id,
                rule.position,
                rule.match_text(),
                rule.assign,
                rule.guard
            )?;
        }
        let live = self.proxies.iter().filter(|p| !p.stale).count();
        writeln!(
            f,
            "proxies: {live} live, {} stale",
            self.proxies.len() - live
        )?;
        for proxy in &self.proxies {
            let state = if proxy.stale { "STALE" } else { "live" };
            let sessions = proxy
                .sessions
                .iter()
                .map(|(version, count)| format!("{version}={count}"))
                .collect::<Vec<_>>()
                .join(" ");
            writeln!(
                f,
                "  {:<24} {state:<5} seen {:.1}s ago  listen {}  admin {}  default {}  sessions {} [{sessions}]",
                proxy.proxy_id,
                proxy.seconds_since_seen,
                proxy.listen,
                proxy.admin_listen.as_deref().unwrap_or("-"),
                proxy.default_version.as_deref().unwrap_or("-"),
                proxy.sessions_active,
            )?;
        }
        let off_default = sessions_off_default(&self.proxies, self.default_version.as_deref());
        if !off_default.is_empty() {
            writeln!(
                f,
                "sessions at a version other than the default (a few per version and proxy):"
            )?;
            for (proxy, session) in off_default {
                let version = session.version.as_deref().unwrap_or("-");
                writeln!(f, "  {version} via {proxy}: {session}")?;
            }
        }
        writeln!(f, "recent events:")?;
        for event in &self.recent_events {
            let outcome = if event.success { "ok" } else { "FAILED" };
            // A cutover or rollback records [from, to]; other actions the versions they touched.
            let separator = match event.action.as_str() {
                "cutover" | "rollback" => ">",
                _ => ",",
            };
            write!(
                f,
                "  {}  {:<9} {outcome:<6} [{}] by {}",
                event.at,
                event.action,
                event.versions.join(separator),
                event.by
            )?;
            if let Some(error) = &event.error {
                write!(f, ": {error}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
