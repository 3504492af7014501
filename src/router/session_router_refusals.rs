//! What a versioned session may not send whatever its statements say: settings in its
//! startup packet that would let Postgres read its text or print its rows otherwise than the
//! rewriter assumes (search_path, standard_conforming_strings, client_min_messages), text the
//! rewriter cannot read, and FunctionCall messages. Each refusal is judged at the version in
//! effect for the message.

use super::super::function_call;
use super::super::raise::{ConformingStrings, Refusal};
use super::super::search_path::MAX_SEARCH_PATH_LEN;
use super::SessionRouter;
use crate::protocol::sqlstate::SqlState;
use crate::rewriter::{reading_settings, refusal, search_path_catalog};

impl SessionRouter {
    /// Why the session may not start with the search_path its startup packet declared: one
    /// with information_schema or a schema of catalog substitutes on it, at a version with
    /// managed tables (`rewriter::search_path_catalog`).
    pub fn startup_path_refusal(&self, declared: Option<&str>) -> Option<String> {
        let targets = self.assignment.as_ref()?.targets();
        let declared = declared.filter(|_| !targets.managed().is_empty())?;
        if declared.len() > MAX_SEARCH_PATH_LEN {
            // Not followed, so not known to keep the catalog's schemas off the path.
            return Some(format!(
                "a startup search_path longer than {MAX_SEARCH_PATH_LEN} bytes is refused at version \"{}\": viewgate cannot follow it",
                targets.version
            ));
        }
        search_path_catalog::names_catalog_schema(declared)
            .then(|| refusal::information_schema_path(&targets.version))
    }

    /// Why the session may not start with the standard_conforming_strings its startup packet
    /// declared (`declared`): anything but on, at a version with managed tables
    /// (`rewriter::reading_settings`).
    pub fn startup_strings_refusal(&self, declared: Option<&str>) -> Option<String> {
        let targets = self.assignment.as_ref()?.targets();
        let refusal = Refusal::nonconforming(targets, None)?;
        declared
            .is_some_and(|value| !reading_settings::is_on_value(value))
            .then_some(refusal.message)
    }

    /// Why the session may not start with the client_min_messages its startup packet
    /// declared (`declared`): a level that sends LOG or DEBUG messages, at a version with
    /// managed tables (`rewriter::reading_settings`).
    pub fn startup_messages_refusal(&self, declared: Option<&str>) -> Option<String> {
        let targets = self.assignment.as_ref()?.targets();
        (!targets.managed().is_empty()
            && declared.is_some_and(|value| !reading_settings::is_quiet_level_value(value)))
        .then(|| {
            format!(
                "client_min_messages below notice is refused at version \"{}\": the server's LOG and DEBUG messages may print query trees naming columns this version does not have",
                targets.version
            )
        })
    }

    /// The refusal of every statement of a session whose version was retired under it
    /// (`resolve::retired`), naming it.
    pub(super) fn retired_refusal(&self) -> Option<Refusal> {
        let version = self.retired.as_deref()?;
        Some(Refusal::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "viewgate version \"{version}\" was retired (by migrate complete, migrate rollback or views drop) while this session used it; reconnect, or SET viewgate.version to a live version"
            ),
        ))
    }

    /// A statement the rewriter cannot read (not UTF-8, or not ASCII in another
    /// client_encoding: `foreign`): refused if it mentions a managed table, since forwarding
    /// it would read the base table; `None` (forward it) otherwise.
    pub fn unreadable(&mut self, bytes: &[u8], foreign: bool) -> Option<Refusal> {
        let assignment = self.assignment.as_ref()?;
        Refusal::unreadable(assignment.targets(), bytes, foreign)
    }

    /// A statement with a backslash while Postgres may read its `'…'` literals otherwise than
    /// the rewriter (`strings`): refused if it mentions a managed table of the version in
    /// effect for it (picked again first when `idle`, as routing it would); `None` (route it
    /// as usual) otherwise.
    pub fn backslashes(
        &mut self,
        bytes: &[u8],
        idle: bool,
        strings: ConformingStrings,
    ) -> Option<Refusal> {
        if idle {
            self.refresh();
        }
        Refusal::backslashes(self.assignment.as_ref()?.targets(), bytes, strings)
    }

    /// Any statement while the session has standard_conforming_strings off: refused unless
    /// it turns the setting back on (`Refusal::nonconforming`), at the version in effect for
    /// it (picked again first when `idle`).
    pub fn nonconforming(&mut self, sql: Option<&str>, idle: bool) -> Option<Refusal> {
        if idle {
            self.refresh();
        }
        Refusal::nonconforming(self.assignment.as_ref()?.targets(), sql)
    }

    /// A FunctionCall message of function `oid`: `Some` is the refusal the client gets in its
    /// place (`function_call`: in a version with managed tables, only large-object functions
    /// are called this way). The version is picked again first when `idle`.
    pub fn function_call(&mut self, oid: Option<u32>, idle: bool) -> Option<Refusal> {
        if idle {
            self.refresh();
        }
        if let Some(refusal) = self.retired_refusal() {
            return Some(refusal);
        }
        let targets = self
            .assignment
            .as_ref()
            .map(|assignment| &**assignment.targets());
        function_call::refusal(targets, oid)
    }
}
