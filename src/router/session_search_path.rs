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

use std::collections::BTreeSet;
use std::sync::Arc;

use super::search_path::{PathCommand, RoleChange, parse_list};
use super::temporary_relations::TempCommand;
use crate::rewriter::VersionTargets;
use crate::rewriter::resolution::{
    Pin, TEMP_SCHEMA, USER_ELEMENT, effective_path, pins, with_temporary,
};

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

/// What a rolled-back transaction or savepoint puts back: the session value, and the
/// session's temporary relations named like managed tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPath {
    value: PathValue,
    temporary: BTreeSet<String>,
}

#[derive(Debug)]
pub struct SessionSearchPath {
    reset: PathValue,
    session: PathValue,
    /// The session's own temporary relations named like a managed table
    /// (`temporary_relations`), searched before the path unless it lists `pg_temp`.
    temporary: BTreeSet<String>,
    /// Those of them made `ON COMMIT DROP`: gone when the transaction ends.
    ending: BTreeSet<String>,
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
            temporary: BTreeSet::new(),
            ending: BTreeSet::new(),
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

    /// The session-level value and temporary relations, to restore if the transaction that
    /// changes them rolls back.
    pub fn session_value(&self) -> SavedPath {
        SavedPath {
            value: self.session.clone(),
            temporary: self.temporary.clone(),
        }
    }

    /// Puts back a session value saved before a change that was rolled back.
    pub fn restore(&mut self, saved: SavedPath) {
        if self.session != saved.value || self.temporary != saved.temporary {
            self.session = saved.value;
            self.ending.retain(|name| saved.temporary.contains(name));
            self.temporary = saved.temporary;
            self.epoch += 1;
        }
    }

    /// Changes whenever the resolution may have (the path, the role, temporary relations).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the session has a temporary relation named like a managed table.
    pub fn has_temporary(&self) -> bool {
        !self.temporary.is_empty()
    }

    /// Follows a temporary relation created or dropped (`temporary_relations`).
    pub fn apply_temporary(&mut self, command: TempCommand) {
        match command {
            TempCommand::Created {
                name,
                on_commit_drop,
            } => {
                if on_commit_drop {
                    self.ending.insert(name.clone());
                }
                self.temporary.insert(name);
            }
            TempCommand::Dropped(name) => {
                self.ending.remove(&name);
                self.temporary.remove(&name);
            }
            TempCommand::DroppedAll => {
                self.ending.clear();
                self.temporary.clear();
            }
        }
        self.epoch += 1;
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

    /// The transaction ended: a `SET LOCAL` value ends with it, and so do temporary
    /// relations made `ON COMMIT DROP`.
    pub fn transaction_ended(&mut self) {
        if self.local.take().is_some() {
            self.epoch += 1;
        }
        if !self.ending.is_empty() {
            for name in std::mem::take(&mut self.ending) {
                self.temporary.remove(&name);
            }
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
        let known = match self.current() {
            PathValue::Known(elements)
                if self.user_is_login() || !elements.iter().any(|e| e == USER_ELEMENT) =>
            {
                Some(effective_path(elements, session_user))
            }
            PathValue::Known(_) | PathValue::Unknown => None,
        };
        // An unknown path still searches the temporary schema first, unless it lists
        // `pg_temp`, which is rare enough to assume not.
        let path = known
            .clone()
            .or_else(|| self.has_temporary().then(|| vec![TEMP_SCHEMA.to_owned()]));
        let pins = match (&path, self.has_temporary()) {
            (None, _) => Vec::new(),
            (Some(path), false) => pins(&base.search_path_candidates, path),
            (Some(path), true) => {
                let candidates =
                    with_temporary(&base.search_path_candidates, base, &self.temporary);
                pins(&candidates, path)
            }
        };
        // Only a path the proxy read says which names it reaches (an unknown one searched
        // for temporary relations says nothing of the rest).
        let unreached = match &known {
            Some(path) => unreached(base, path, &pins),
            None => Vec::new(),
        };
        let resolved = match (pins.is_empty(), unreached.is_empty()) {
            (true, true) => base.clone(),
            _ => Arc::new(base.with_pins(&pins).with_unreached(unreached)),
        };
        self.resolved = Some((base.clone(), self.epoch, resolved.clone()));
        resolved
    }
}

/// The unqualified managed names of `base` that no schema on `path` holds (not pinned, and
/// neither the table's schema nor, for a view of the table's own name, the view's is on it).
fn unreached(base: &VersionTargets, path: &[String], pins: &[(String, Pin)]) -> Vec<String> {
    base.managed()
        .iter()
        .filter(|target| base.resolve_table(None, &target.table.name) == Some(*target))
        .filter(|target| !pins.iter().any(|(name, _)| *name == target.table.name))
        .filter(|target| {
            !path.iter().any(|schema| {
                *schema == target.table.schema
                    || (target.view.name == target.table.name && *schema == target.view.schema)
            })
        })
        .map(|target| target.table.name.clone())
        .collect()
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
