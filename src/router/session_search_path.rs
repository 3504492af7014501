//! One session's `search_path` as the router follows it, and what it makes of the session's
//! version's targets.
//!
//! Three values, as Postgres keeps them: the value RESET returns to (what the upstream
//! answered at login, which includes the role's and database's defaults; else what the
//! startup packet declared), the session's value, and a `SET LOCAL` value that lasts to the
//! end of the transaction. Each is [`PathValue::Unknown`] where the proxy could not follow
//! (a change it cannot read, or statements it did not look at: while no relation anywhere
//! shadows a managed name, sessions do not read their statements for search_path changes,
//! so as to cost nothing). An unknown path resolves as before search_paths were followed:
//! every unqualified managed name is rewritten.
//!
//! Transactions are the router's business (the same snapshot undoes a `SET
//! viewgate.version`): [`SessionSearchPath::session_value`] and
//! [`SessionSearchPath::restore`] save and put back the session value, and
//! [`SessionSearchPath::transaction_ended`] drops the `SET LOCAL` value; a savepoint saves
//! and puts back both ([`SessionSearchPath::local_value`], [`SessionSearchPath::restore_local`]).

use std::sync::Arc;

use super::search_path::{PathCommand, RoleChange, parse_list};
use crate::rewriter::VersionTargets;
use crate::rewriter::resolution::{USER_ELEMENT, effective_path, pins};

/// A search_path value, or the fact that the proxy does not know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathValue {
    /// The schema names, as stored (`$user` not yet expanded).
    Known(Arc<[String]>),
    Unknown,
}

impl PathValue {
    /// A value as `SHOW search_path` prints it or a client writes it.
    pub fn parse(value: &str) -> PathValue {
        match parse_list(value) {
            Some(names) => PathValue::Known(names.into()),
            None => PathValue::Unknown,
        }
    }
}

#[derive(Debug)]
pub struct SessionSearchPath {
    reset: PathValue,
    session: PathValue,
    local: Option<PathValue>,
    /// A role was set (`SET ROLE`) and not reset since: `$user` is not the login user.
    role_set: bool,
    /// The session authorization was set and not reset since: likewise.
    authorization_set: bool,
    /// Changes whenever the effective value may have: the resolved targets are computed again.
    epoch: u64,
    /// The targets last resolved: for which version's targets (held, so compared by
    /// address safely), under which epoch, and the result.
    resolved: Option<(Arc<VersionTargets>, u64, Arc<VersionTargets>)>,
}

impl SessionSearchPath {
    /// A session whose startup packet declared `declared` (or not).
    pub fn new(declared: Option<&str>) -> Self {
        let reset = declared.map_or(PathValue::Unknown, PathValue::parse);
        SessionSearchPath {
            session: reset.clone(),
            reset,
            local: None,
            role_set: false,
            authorization_set: false,
            epoch: 0,
            resolved: None,
        }
    }

    /// What the upstream answered to `SHOW search_path` right after login: the session's
    /// value, and what RESET returns to.
    pub fn at_login(&mut self, value: &str) {
        self.reset = PathValue::parse(value);
        self.session = self.reset.clone();
        self.epoch += 1;
    }

    /// The value in effect now.
    pub fn current(&self) -> &PathValue {
        self.local.as_ref().unwrap_or(&self.session)
    }

    /// The session-level value, to restore if the transaction that changes it rolls back.
    pub fn session_value(&self) -> PathValue {
        self.session.clone()
    }

    /// Puts back a session value saved before a change that was rolled back.
    pub fn restore(&mut self, value: PathValue) {
        if self.session != value {
            self.session = value;
            self.epoch += 1;
        }
    }

    /// The `SET LOCAL` value, for a savepoint to put back.
    pub fn local_value(&self) -> Option<PathValue> {
        self.local.clone()
    }

    /// Puts back a `SET LOCAL` value saved by a savepoint rolled back to.
    pub fn restore_local(&mut self, value: Option<PathValue>) {
        if self.local != value {
            self.local = value;
            self.epoch += 1;
        }
    }

    /// The transaction ended: a `SET LOCAL` value ends with it.
    pub fn transaction_ended(&mut self) {
        if self.local.take().is_some() {
            self.epoch += 1;
        }
    }

    /// A statement the router did not read for search_path changes: the session value may
    /// have changed.
    pub fn unread(&mut self) {
        if self.session != PathValue::Unknown || self.local.is_some() {
            self.session = PathValue::Unknown;
            self.local = None;
            self.epoch += 1;
        }
    }

    /// Follows `command`. A session-level change also ends a `SET LOCAL` value, as in Postgres.
    pub fn apply(&mut self, command: PathCommand) {
        let (value, local) = match command {
            PathCommand::Set { value, local } => (PathValue::parse(&value), local),
            PathCommand::Reset { local } => (self.reset.clone(), local),
            PathCommand::Unknown { local } => (PathValue::Unknown, local),
            PathCommand::Discard => {
                (self.role_set, self.authorization_set) = (false, false);
                (self.reset.clone(), false)
            }
            PathCommand::Role(change) => {
                match change {
                    RoleChange::Set => self.role_set = true,
                    RoleChange::Reset => self.role_set = false,
                    RoleChange::SetAuthorization => self.authorization_set = true,
                    RoleChange::ResetAuthorization => self.authorization_set = false,
                }
                self.epoch += 1;
                return;
            }
        };
        if local {
            self.local = Some(value);
        } else {
            self.session = value;
            self.local = None;
        }
        self.epoch += 1;
    }

    /// Whether `$user` stands for the login user: no role or session authorization set
    /// since login or `DISCARD ALL`. The proxy does not learn the new role's name (SET
    /// LOCAL ROLE ends with its block, a DO block's change is not seen), so a path listing
    /// `$user` is then unknown; a change rolled back is not undone here, which errs on that
    /// side too, except for a RESET rolled back.
    fn user_is_login(&self) -> bool {
        !self.role_set && !self.authorization_set
    }

    /// The targets a statement is rewritten with: `base` itself unless the path is known and
    /// resolves some unqualified managed name elsewhere. Computed again only when the path
    /// or the targets changed.
    pub fn targets(
        &mut self,
        base: &Arc<VersionTargets>,
        session_user: &str,
    ) -> Arc<VersionTargets> {
        if let Some((for_base, epoch, resolved)) = &self.resolved
            && Arc::ptr_eq(for_base, base)
            && *epoch == self.epoch
        {
            return resolved.clone();
        }
        let resolved = match self.current() {
            PathValue::Known(elements)
                if self.user_is_login() || !elements.iter().any(|e| e == USER_ELEMENT) =>
            {
                let path = effective_path(elements, session_user);
                let pins = pins(&base.search_path_candidates, &path);
                if pins.is_empty() {
                    base.clone()
                } else {
                    Arc::new(base.with_pins(&pins))
                }
            }
            PathValue::Known(_) | PathValue::Unknown => base.clone(),
        };
        self.resolved = Some((base.clone(), self.epoch, resolved.clone()));
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(value: &str, local: bool) -> PathCommand {
        PathCommand::Set {
            value: value.into(),
            local,
        }
    }

    fn names(path: &SessionSearchPath) -> Option<String> {
        match path.current() {
            PathValue::Known(names) => Some(names.join(",")),
            PathValue::Unknown => None,
        }
    }

    #[test]
    fn follows_session_and_local_values() {
        let mut path = SessionSearchPath::new(Some("app, public"));
        assert_eq!(names(&path).as_deref(), Some("app,public"));
        path.at_login("\"$user\", public");
        assert_eq!(names(&path).as_deref(), Some("$user,public"));
        path.apply(set("\"t\"", false));
        assert_eq!(names(&path).as_deref(), Some("t"));
        let saved = path.session_value();
        path.apply(set("\"l\"", true));
        assert_eq!(names(&path).as_deref(), Some("l"));
        path.transaction_ended();
        assert_eq!(names(&path).as_deref(), Some("t"));
        path.apply(PathCommand::Reset { local: false });
        assert_eq!(names(&path).as_deref(), Some("$user,public"));
        path.restore(saved);
        assert_eq!(names(&path).as_deref(), Some("t"));
        path.apply(PathCommand::Unknown { local: true });
        assert_eq!(names(&path), None);
        path.transaction_ended();
        assert_eq!(names(&path).as_deref(), Some("t"));
        path.unread();
        assert_eq!(names(&path), None);
        path.apply(PathCommand::Reset { local: false });
        assert_eq!(names(&path).as_deref(), Some("$user,public"));
        assert_eq!(names(&SessionSearchPath::new(None)), None);
    }
}
