//! Who still uses a version: live proxies' sessions (from their heartbeats), the default
//! version, routing rules. Contract, rollback and `views drop` are refused while anything
//! does — which only viewgate can know, because it is the proxy every client goes through.

use std::time::Duration;

use tokio_postgres::GenericClient;

use super::error::ControlError;
use super::overview;
use crate::catalog_read;

/// How long a proxy that stopped reporting still counts: one cut off from the catalog may
/// still serve the sessions its last heartbeat showed; one that died without its farewell (a
/// crash, a killed pod) is forgotten after this.
pub const SILENT_PROXY_COUNTS_FOR: Duration = Duration::from_secs(10 * 60);

/// How the sessions a refusal names leave the version, for the operator who must free them.
const SESSIONS_MOVE_ON: &str = "a session in transaction moves on when its transaction ends; one held by its prepared statements when it closes them or reconnects (a pool's maximum connection lifetime, or `SELECT pg_terminate_backend(<Postgres backend pid>)` over a direct connection); one declared at connect only when its application, deployed anew, declares another version";

/// Why `version` is still in use, one reason a line; empty when nothing uses it.
pub async fn reasons_in_use(
    client: &impl GenericClient,
    version: &str,
) -> Result<Vec<String>, ControlError> {
    let mut reasons = Vec::new();
    let mut sessions_named = false;
    for proxy in overview::load_proxies(client).await? {
        if proxy.stale && proxy.seconds_since_seen > SILENT_PROXY_COUNTS_FOR.as_secs_f64() {
            continue;
        }
        let sessions = proxy.sessions.get(version).copied().unwrap_or(0);
        let who = proxy
            .describe_sessions(version, sessions)
            .map(|who| format!(": {who}"))
            .unwrap_or_default();
        sessions_named |= sessions > 0 && !who.is_empty();
        if sessions > 0 && proxy.stale {
            reasons.push(format!(
                "proxy {} ({}) has not reported for {:.0} s; its last heartbeat showed {sessions} live session(s) at {version} (a silent proxy counts for {} minutes after its last heartbeat, in case it is only cut off from the catalog){who}",
                proxy.proxy_id,
                proxy.listen,
                proxy.seconds_since_seen,
                SILENT_PROXY_COUNTS_FOR.as_secs() / 60
            ));
        } else if sessions > 0 {
            reasons.push(format!(
                "proxy {} ({}) has {sessions} live session(s) at {version}{who}",
                proxy.proxy_id, proxy.listen
            ));
        }
        if proxy.default_version.as_deref() == Some(version) {
            reasons.push(format!(
                "proxy {} ({}) still routes default sessions to {version}",
                proxy.proxy_id, proxy.listen
            ));
        }
    }
    if sessions_named {
        reasons.push(SESSIONS_MOVE_ON.to_owned());
    }
    if catalog_read::default_version(client).await?.as_deref() == Some(version) {
        reasons.push(format!(
            "{version} is the default version (`viewgate cutover --to …` first)"
        ));
    }
    if catalog_read::rules_table_ready(client).await? {
        for rule in catalog_read::load_rules(client).await?.rules {
            if rule.versions().contains(&version) {
                reasons.push(format!(
                    "routing rule {} assigns {version} (`viewgate route remove {}` or set-weights first)",
                    rule.id, rule.id
                ));
            }
        }
    }
    Ok(reasons)
}
