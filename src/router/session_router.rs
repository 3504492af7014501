//! A session's version and what each of its statements becomes.
//!
//! Resolution order (shared/DESIGN.md decision 3): `SET viewgate.version` in the session, then
//! the startup declaration, then the catalog's default version. A change takes effect at a
//! transaction boundary: the version in effect is picked again only when the session is idle,
//! so a transaction sees one version from BEGIN to COMMIT. A statement prepared under a version
//! keeps it, because Parse is rewritten when it is sent.

use std::sync::Arc;

use super::raise::{raise_statement, select_text};
use super::state::{RoutingState, SharedRouting};
use super::version_command::{self, VERSION_SETTING, VersionCommand};
use crate::config::UnparseablePolicy;
use crate::protocol::sqlstate::SqlState;
use crate::rewriter::{Rewrite, RewriteCache, VersionTargets, rewrite_cached};

/// What to send upstream for one statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    Forward,
    Replace(String),
}

/// A version the catalog does not know, declared at startup.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownVersion(pub String);

pub struct SessionRouter {
    routing: SharedRouting,
    database: String,
    startup_version: Option<String>,
    declared: Option<String>,
    /// The version in effect for the current transaction, if the session is versioned.
    current: Option<Arc<VersionTargets>>,
    policy: UnparseablePolicy,
    cache: Arc<RewriteCache>,
}

impl SessionRouter {
    /// Checks the startup declaration against the catalog.
    pub fn new(
        routing: SharedRouting,
        database: &str,
        startup_version: Option<String>,
        policy: UnparseablePolicy,
        cache: Arc<RewriteCache>,
    ) -> Result<Self, UnknownVersion> {
        {
            let state = routing.load();
            if let Some(version) = &startup_version
                && state.governs(database)
                && state.targets(version).is_none()
            {
                return Err(UnknownVersion(unknown_version_message(&state, version)));
            }
        }
        let mut router = SessionRouter {
            routing,
            database: database.to_owned(),
            declared: startup_version.clone(),
            startup_version,
            current: None,
            policy,
            cache,
        };
        router.refresh();
        Ok(router)
    }

    /// The version in effect, by name.
    pub fn version(&self) -> Option<&str> {
        self.current
            .as_ref()
            .map(|targets| targets.version.as_str())
    }

    /// Picks the version in effect again; call only at a transaction boundary.
    fn refresh(&mut self) {
        let state = self.routing.load();
        self.current = if state.governs(&self.database) {
            self.declared
                .as_deref()
                .or(state.default_version.as_deref())
                .and_then(|version| state.targets(version))
                .cloned()
        } else {
            None
        };
    }

    /// Decides what to send for one statement (a Query's text or a Parse's query). `idle`
    /// says no transaction is open, so the version may change now.
    pub fn statement(&mut self, sql: &str, idle: bool) -> Routed {
        if idle {
            self.refresh();
        }
        if let Some(command) = version_command::parse(sql) {
            return self.version_command(command, idle);
        }
        let Some(targets) = &self.current else {
            return Routed::Forward;
        };
        match &*rewrite_cached(&self.cache, sql, targets) {
            Ok(Rewrite::Unchanged) => Routed::Forward,
            Ok(Rewrite::Rewritten(text)) => Routed::Replace(text.clone()),
            Err(error) => match self.policy {
                UnparseablePolicy::Passthrough => {
                    tracing::debug!(%error, "statement forwarded without rewriting");
                    Routed::Forward
                }
                UnparseablePolicy::Reject => {
                    let position = error
                        .position
                        .map(|p| format!(" (at character {p})"))
                        .unwrap_or_default();
                    Routed::Replace(raise_statement(
                        SqlState::SYNTAX_ERROR,
                        &format!("{error}{position}"),
                    ))
                }
            },
        }
    }

    fn version_command(&mut self, command: VersionCommand, idle: bool) -> Routed {
        match command {
            VersionCommand::Show => {
                let state = self.routing.load();
                let version = self
                    .version()
                    .map(str::to_owned)
                    .or_else(|| self.declared.clone())
                    .or_else(|| state.default_version.clone())
                    .unwrap_or_default();
                Routed::Replace(select_text(VERSION_SETTING, &version))
            }
            VersionCommand::SetLocal => Routed::Replace(raise_statement(
                SqlState::FEATURE_NOT_SUPPORTED,
                "SET LOCAL viewgate.version is not supported: a version applies to whole transactions; use SET outside a transaction",
            )),
            VersionCommand::Reset => {
                self.declared = self.startup_version.clone();
                if idle {
                    self.refresh();
                }
                Routed::Forward
            }
            VersionCommand::Set(version) => {
                let state = self.routing.load();
                if state.governs(&self.database) && state.targets(&version).is_none() {
                    let message = unknown_version_message(&state, &version);
                    return Routed::Replace(raise_statement(
                        SqlState::INVALID_PARAMETER_VALUE,
                        &message,
                    ));
                }
                self.declared = Some(version);
                if idle {
                    self.refresh();
                }
                // Postgres keeps the setting too, so current_setting() agrees.
                Routed::Forward
            }
        }
    }
}

fn unknown_version_message(state: &RoutingState, version: &str) -> String {
    format!(
        "unknown viewgate version \"{version}\"; known versions: {}",
        state.version_names().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::catalog::{RoutedTable, RoutingMap};
    use crate::router::state::RoutingState;
    use arc_swap::ArcSwap;

    fn routing(default: Option<&str>) -> SharedRouting {
        let table = |version: &str| RoutedTable {
            table_name: "t".into(),
            base_schema: "public".into(),
            base_table: "t".into(),
            view_schema: "public".into(),
            view_name: format!("t_{version}"),
        };
        let map = RoutingMap {
            default_version: default.map(str::to_owned),
            rules: Default::default(),
            versions: [("v1", table("v1")), ("v2", table("v2"))]
                .into_iter()
                .map(|(v, t)| (v.to_owned(), vec![t]))
                .collect(),
        };
        Arc::new(ArcSwap::from_pointee(RoutingState::from_catalog(
            "app", &map,
        )))
    }

    fn router(default: Option<&str>, declared: Option<&str>) -> SessionRouter {
        SessionRouter::new(
            routing(default),
            "app",
            declared.map(str::to_owned),
            UnparseablePolicy::Reject,
            Arc::new(RewriteCache::default()),
        )
        .unwrap()
    }

    fn replaced(routed: Routed) -> String {
        match routed {
            Routed::Replace(text) => text,
            Routed::Forward => panic!("expected a replacement"),
        }
    }

    #[test]
    fn declared_beats_default_and_reset_returns_to_the_declaration() {
        let mut session = router(Some("v1"), Some("v2"));
        assert_eq!(
            replaced(session.statement("SELECT * FROM t", true)),
            "SELECT * FROM t_v2 AS t"
        );
        assert_eq!(
            session.statement("SET viewgate.version = 'v1'", true),
            Routed::Forward
        );
        assert_eq!(session.version(), Some("v1"));
        assert_eq!(
            session.statement("RESET viewgate.version", true),
            Routed::Forward
        );
        assert_eq!(session.version(), Some("v2"));
        let undeclared = router(Some("v1"), None);
        assert_eq!(undeclared.version(), Some("v1"));
    }

    #[test]
    fn a_change_inside_a_transaction_waits_for_idle() {
        let mut session = router(Some("v1"), None);
        session.statement("SET viewgate.version = 'v2'", false);
        assert_eq!(
            replaced(session.statement("SELECT * FROM t", false)),
            "SELECT * FROM t_v1 AS t"
        );
        assert_eq!(
            replaced(session.statement("SELECT * FROM t", true)),
            "SELECT * FROM t_v2 AS t"
        );
    }

    #[test]
    fn unknown_versions_are_refused() {
        let error = SessionRouter::new(
            routing(None),
            "app",
            Some("v9".into()),
            UnparseablePolicy::Reject,
            Arc::new(RewriteCache::default()),
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            "unknown viewgate version \"v9\"; known versions: v1, v2"
        );
        let mut session = router(None, Some("v1"));
        let raised = replaced(session.statement("SET viewgate.version = 'v9'", true));
        assert!(
            raised.starts_with("DO $viewgate$") && raised.contains("'22023'"),
            "{raised}"
        );
        assert_eq!(
            session.version(),
            Some("v1"),
            "a refused SET changes nothing"
        );
    }

    #[test]
    fn other_databases_and_unversioned_sessions_pass_through() {
        let mut elsewhere = SessionRouter::new(
            routing(Some("v1")),
            "other",
            None,
            UnparseablePolicy::Reject,
            Arc::new(RewriteCache::default()),
        )
        .unwrap();
        assert_eq!(
            elsewhere.statement("SELECT * FROM t", true),
            Routed::Forward
        );
        let mut no_default = router(None, None);
        assert_eq!(
            no_default.statement("SELECT * FROM t", true),
            Routed::Forward
        );
    }

    #[test]
    fn the_policy_decides_about_unparseable_statements() {
        let unparseable = "SELECT * FROM ROWS FROM (generate_series(1, 2)) AS t";
        let mut rejecting = router(Some("v1"), None);
        let raised = replaced(rejecting.statement(unparseable, true));
        assert!(raised.contains("'42601'"), "{raised}");
        let mut forwarding = SessionRouter::new(
            routing(Some("v1")),
            "app",
            None,
            UnparseablePolicy::Passthrough,
            Arc::new(RewriteCache::default()),
        )
        .unwrap();
        assert_eq!(forwarding.statement(unparseable, true), Routed::Forward);
    }

    #[test]
    fn show_answers_the_version_in_effect() {
        let mut session = router(Some("v1"), None);
        let show = replaced(session.statement("SHOW viewgate.version", true));
        assert_eq!(show, select_text(VERSION_SETTING, "v1"));
    }
}
