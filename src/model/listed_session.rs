//! One client session as a proxy lists it: who connected (address, user, database,
//! application_name), since when, the version it is counted at and why, its transaction
//! status, and the Postgres backend serving it.
//!
//! The contract between the proxies, which publish a few such sessions per version in their
//! heartbeat (`viewgate.proxies.listed_sessions`) and all of theirs at the admin API's
//! `/sessions`, and the control plane, which names them where a version is refused retirement
//! ("proxy p1 has 2 live sessions at v1: application "billing" …"). Knowing that *some*
//! session holds v1 tells an operator to wait; knowing *which* tells them whom to restart.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How many sessions per version a heartbeat lists (the oldest first): enough to find the
/// deployment that holds a version back, few enough that the heartbeat's row stays small
/// with thousands of clients. The count of all of them is published beside.
pub const MAX_LISTED_SESSIONS_PER_VERSION: usize = 10;

/// One session, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSession {
    /// The client's address and port, as the proxy's socket sees it.
    pub client: String,
    pub user: String,
    pub database: String,
    /// The startup's `application_name` (empty when the client sent none).
    pub application_name: String,
    /// When the session was established (RFC 3339, UTC, seconds).
    pub connected_at: String,
    /// The version the session is counted at (`None`: unversioned, served as a direct
    /// connection would be).
    pub version: Option<String>,
    /// Why it runs at that version: "declared", "set", "rule 3", "default", "held".
    pub reason: Option<String>,
    /// The transaction status of its last ReadyForQuery: "idle", "in transaction" or
    /// "failed transaction".
    pub transaction: String,
    /// The Postgres backend serving it, to look up in `pg_stat_activity` (its query, since
    /// when it has been idle in transaction); `None` when Postgres sent no BackendKeyData.
    pub backend_pid: Option<u32>,
}

/// Listed sessions per version (`{"v1": [...]}`), as a heartbeat carries them.
pub type ListedByVersion = BTreeMap<String, Vec<ListedSession>>;

impl fmt::Display for ListedSession {
    /// `application "billing" (user app, from 10.0.0.5:51234, connected
    /// 2026-12-07T15:02:11Z, declared at connect, in transaction, Postgres backend pid 4242)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.application_name.as_str() {
            "" => f.write_str("a client without application_name")?,
            name => write!(f, "application {name:?}")?,
        }
        write!(
            f,
            " (user {}, from {}, connected {}",
            self.user, self.client, self.connected_at
        )?;
        if let Some(reason) = &self.reason {
            write!(f, ", {}", reason_phrase(reason))?;
        }
        write!(f, ", {}", self.transaction)?;
        if let Some(pid) = self.backend_pid {
            write!(f, ", Postgres backend pid {pid}")?;
        }
        f.write_str(")")
    }
}

/// A reason's label (`router::Reason`'s display) as a message says it.
fn reason_phrase(reason: &str) -> String {
    match reason {
        "declared" => "declared at connect".to_owned(),
        "set" => "chosen by SET viewgate.version".to_owned(),
        "default" => "placed by the default version".to_owned(),
        "held" => "held by its prepared statements".to_owned(),
        rule if rule.starts_with("rule ") => format!("placed by {rule}"),
        other => other.to_owned(),
    }
}

/// `listed` joined for a message, with how many of `total` it leaves out.
pub fn describe(listed: &[ListedSession], total: i64) -> String {
    let mut text = listed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let left_out = total - i64::try_from(listed.len()).unwrap_or(i64::MAX);
    if left_out > 0 {
        text.push_str(&format!("; and {left_out} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(application_name: &str) -> ListedSession {
        ListedSession {
            client: "10.0.0.5:51234".into(),
            user: "app".into(),
            database: "shop".into(),
            application_name: application_name.into(),
            connected_at: "2026-12-07T15:02:11Z".into(),
            version: Some("v1".into()),
            reason: Some("declared".into()),
            transaction: "in transaction".into(),
            backend_pid: Some(4242),
        }
    }

    #[test]
    fn a_listed_session_names_what_finds_it() {
        assert_eq!(
            session("billing").to_string(),
            "application \"billing\" (user app, from 10.0.0.5:51234, connected 2026-12-07T15:02:11Z, declared at connect, in transaction, Postgres backend pid 4242)"
        );
        let mut by_rule = session("billing");
        by_rule.reason = Some("rule 3 (enforced)".into());
        assert!(
            by_rule
                .to_string()
                .contains(", placed by rule 3 (enforced), ")
        );
        assert!(
            session("")
                .to_string()
                .starts_with("a client without application_name (user app")
        );
    }

    #[test]
    fn a_description_counts_the_sessions_it_leaves_out() {
        let listed = [session("a"), session("b")];
        assert_eq!(describe(&listed, 2).matches("application").count(), 2);
        assert!(describe(&listed, 5).ends_with("; and 3 more"));
    }

    #[test]
    fn an_application_name_is_quoted_with_its_escapes() {
        // A client chooses its application_name: a quote or a newline in it cannot end the
        // message's sentence or start a line of its own.
        let text = session("x\" ) ; evil\nline").to_string();
        assert!(
            text.starts_with(r#"application "x\" ) ; evil\nline" (user"#),
            "{text}"
        );
    }
}
