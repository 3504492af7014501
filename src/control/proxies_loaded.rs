//! Waiting until the proxies serve a change. A command's change reaches each proxy by NOTIFY
//! and a reload some milliseconds after its commit (seconds, for a proxy reconnecting to the
//! catalog); until then that proxy routes by the state before it, and a client that asks for
//! what the command made (the new version, the new default) is refused or routed as before.
//! Each proxy's heartbeat reports the catalog change its routing state has loaded
//! (`viewgate.proxies.loaded_change`, written at once after a reload), so a command waits,
//! briefly, until every live proxy reports at least the catalog's count, and names the ones
//! that do not.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::error::ControlError;
use super::overview::{self, ProxyHeartbeat};
use crate::catalog_read;

/// How long a command waits for the proxies to report its change before it says which have
/// not: a reload takes milliseconds, so a proxy still behind after this is cut off from the
/// catalog (it reloads when it reconnects) or stopped without its farewell.
pub const PROXY_LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the wait reads the heartbeats again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What the live proxies had loaded when the wait ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxiesLoaded {
    /// The catalog's change count the wait asked for.
    pub change: i64,
    /// Live proxies that report the change (or a later one).
    pub serving: Vec<String>,
    /// Live proxies that report an earlier change, with the change they report.
    pub behind: Vec<(String, i64)>,
    /// Live proxies that report no change: built before the report, or unable to read the
    /// count. Not waited for.
    pub silent: Vec<String>,
    pub waited_ms: u64,
}

impl ProxiesLoaded {
    /// Every live proxy that reports serves the change.
    pub fn all_serving(&self) -> bool {
        self.behind.is_empty()
    }

    fn from_heartbeats(change: i64, proxies: &[ProxyHeartbeat], waited: Duration) -> Self {
        let mut loaded = ProxiesLoaded {
            change,
            serving: Vec::new(),
            behind: Vec::new(),
            silent: Vec::new(),
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        };
        for proxy in proxies.iter().filter(|proxy| !proxy.stale) {
            let name = format!("{} ({})", proxy.proxy_id, proxy.listen);
            match proxy.loaded_change {
                Some(reported) if reported >= change => loaded.serving.push(name),
                Some(reported) => loaded.behind.push((name, reported)),
                None => loaded.silent.push(name),
            }
        }
        loaded
    }
}

/// Waits up to `timeout` until every live proxy of the catalog `client` is connected to
/// reports the catalog's latest change; `None` when the catalog keeps no count (made by an
/// older build).
pub async fn wait_for_proxies(
    client: &impl GenericClient,
    timeout: Duration,
) -> Result<Option<ProxiesLoaded>, ControlError> {
    let read = |error: catalog_read::CatalogReadError| ControlError::Database {
        context: error.context.to_owned(),
        message: error.to_string(),
    };
    let Some(change) = catalog_read::catalog_change(client).await.map_err(read)? else {
        return Ok(None);
    };
    let started = Instant::now();
    loop {
        let proxies = overview::load_proxies(client).await?;
        let loaded = ProxiesLoaded::from_heartbeats(change, &proxies, started.elapsed());
        if loaded.all_serving() || started.elapsed() >= timeout {
            return Ok(Some(loaded));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

impl fmt::Display for ProxiesLoaded {
    /// One line a finding; nothing when no proxy is live.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waited = self.waited_ms;
        let mut lines = Vec::new();
        match self.serving.len() {
            0 => {}
            1 => lines.push(format!(
                "1 live proxy has loaded the catalog's latest change ({waited} ms)"
            )),
            serving => lines.push(format!(
                "{serving} live proxies have loaded the catalog's latest change ({waited} ms)"
            )),
        }
        for (proxy, reported) in &self.behind {
            lines.push(format!(
                "warning: proxy {proxy} has not loaded the catalog's latest change after {waited} ms (it reports change {reported} of {}): it routes its sessions as before until it reloads, which it does when it reaches the catalog again; viewgate status shows it",
                self.change
            ));
        }
        for proxy in &self.silent {
            lines.push(format!(
                "note: proxy {proxy} does not report which change it has loaded (an older build, or a catalog role that cannot read viewgate.catalog_change); not waited for"
            ));
        }
        f.write_str(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(id: &str, loaded_change: Option<i64>, stale: bool) -> ProxyHeartbeat {
        ProxyHeartbeat {
            proxy_id: id.to_owned(),
            listen: "127.0.0.1:6432".to_owned(),
            admin_listen: None,
            pid: 1,
            build: "test".to_owned(),
            started_at: String::new(),
            seconds_since_seen: if stale { 60.0 } else { 0.5 },
            stale,
            default_version: None,
            sessions_active: 0,
            sessions: Default::default(),
            session_reasons: Default::default(),
            loaded_change,
            listed_sessions: Default::default(),
        }
    }

    #[test]
    fn sorts_live_proxies_by_what_they_report_and_leaves_stale_ones_out() {
        let proxies = [
            heartbeat("a", Some(7), false),
            heartbeat("b", Some(8), false),
            heartbeat("c", Some(6), false),
            heartbeat("d", None, false),
            heartbeat("e", Some(1), true),
        ];
        let loaded = ProxiesLoaded::from_heartbeats(7, &proxies, Duration::from_millis(3));
        assert_eq!(loaded.serving.len(), 2);
        assert_eq!(loaded.behind, vec![("c (127.0.0.1:6432)".to_owned(), 6)]);
        assert_eq!(loaded.silent, vec!["d (127.0.0.1:6432)".to_owned()]);
        assert!(!loaded.all_serving());
        let text = loaded.to_string();
        assert!(text.starts_with(
            "2 live proxies have loaded the catalog's latest change (3 ms)\nwarning: proxy c"
        ));
        assert!(text.contains("(it reports change 6 of 7)"));
        assert!(text.ends_with("not waited for"));
    }

    #[test]
    fn says_nothing_without_live_proxies() {
        let proxies = [heartbeat("e", Some(1), true)];
        let loaded = ProxiesLoaded::from_heartbeats(7, &proxies, Duration::ZERO);
        assert!(loaded.all_serving());
        assert_eq!(loaded.to_string(), "");
    }
}
