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
use crate::rewriter::{Rewrite, VersionTargets, rewrite};

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
}

impl SessionRouter {
    /// Checks the startup declaration against the catalog.
    pub fn new(
        routing: SharedRouting,
        database: &str,
        startup_version: Option<String>,
        policy: UnparseablePolicy,
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
        match rewrite(sql, targets) {
            Ok(Rewrite::Unchanged) => Routed::Forward,
            Ok(Rewrite::Rewritten(text)) => Routed::Replace(text),
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
