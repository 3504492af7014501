//! A session's own version commands (`version_command.rs` recognises them): `SHOW
//! viewgate.version` answered by the proxy, `SET` checked against the routing state (an
//! unknown version, an enforced rule elsewhere, statements held at another version while a
//! migration is live) and, like `RESET`, followed from the next transaction boundary.

use super::super::raise::{Refusal, select_text};
use super::super::resolve;
use super::super::version_command::{VERSION_SETTING, VersionCommand};
use super::{Routed, SessionRouter};
use crate::protocol::sqlstate::SqlState;

impl SessionRouter {
    /// What `command` becomes, sent when the session is `idle` or not.
    pub(super) fn version_command(&mut self, command: VersionCommand, idle: bool) -> Routed {
        match command {
            VersionCommand::Show => {
                let state = self.routing.load();
                let version = self
                    .version()
                    .or(self.set.as_deref())
                    .or(self.startup_version.as_deref())
                    .or(state.default_version.as_deref())
                    .unwrap_or_default();
                Routed::Replace(select_text(VERSION_SETTING, version))
            }
            VersionCommand::SetLocal => Routed::Refuse(Refusal::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "SET LOCAL viewgate.version is not supported: a version applies to whole transactions; use SET outside a transaction",
            )),
            VersionCommand::Reset => {
                self.set_changing();
                self.set = None;
                self.requested_changed(idle);
                Routed::Forward
            }
            VersionCommand::Set(version) => {
                let state = self.routing.load();
                if !state.governs(&self.client.database) || state.targets(&version).is_none() {
                    let message =
                        resolve::refused_version_message(&state, &self.client.database, &version);
                    return Routed::Refuse(Refusal::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        message,
                    ));
                }
                if let Some(message) =
                    resolve::enforced_elsewhere(&state, &self.client, self.bucket, &version)
                {
                    return Routed::Refuse(Refusal::new(SqlState::INSUFFICIENT_PRIVILEGE, message));
                }
                if state.tracks_writers()
                    && let Some((what, held)) = self.prepared.held_against(&version)
                {
                    return Routed::Refuse(Refusal::new(
                        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "viewgate.version cannot change to \"{version}\" while a migration is live: {what} was made at \"{held}\"; drop it (DEALLOCATE, CLOSE, DISCARD TEMP) or reconnect first (a driver's statement cache, as asyncpg's, pgx's or postgres.js', names its statements for the connection's life: reconnect, declaring the version at connect)"
                        ),
                    ));
                }
                self.set_changing();
                self.set = Some(version);
                self.requested_changed(idle);
                // Postgres keeps the setting too, so current_setting() agrees.
                Routed::Forward
            }
        }
    }
}
