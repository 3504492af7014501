//! What a session makes that holds its version, and what releases it (`prepared.rs` keeps
//! the account): named statements prepared at a version and re-prepared when the session's
//! name resolution changes, SQL that creates something reading a version's view, and the
//! Close messages and answers that end a hold.

use super::super::holding_commands;
use super::super::prepared::{Answers, Resolved, TextContext};
use super::super::rules::Assignment;
use super::super::statement::Statement;
use super::{Routed, SessionRouter};
use crate::rewriter::VersionTargets;
use crate::rewriter::lexer_agreement;
use crate::rewriter::mention::{may_hide_a_name, may_spell_a_name};
use crate::rewriter::rewrite::contains_ignore_ascii_case;

impl SessionRouter {
    /// [`SessionRouter::parse`] of the client's Parse `message`: a named statement rewritten
    /// under the session's name resolution is remembered with it, to be prepared again when
    /// that resolution changes ([`SessionRouter::stale_statements`]).
    pub fn parse_message(
        &mut self,
        name: &str,
        statement: Statement<'_>,
        idle: bool,
        message: &[u8],
    ) -> Routed {
        let (routed, rewritten) = self.route(statement, idle);
        self.remember(Some(name), statement, rewritten, idle);
        let sql = statement.sql;
        let resolved_with = self.resolved_with.take();
        let writes_base_rows = lexer_agreement::writes_base_rows(sql);
        if let (Routed::Replace(sent), Some(assignment), false) =
            (&routed, &self.assignment, name.is_empty())
            && (resolved_with.is_some() || writes_base_rows)
        {
            let targets = resolved_with.as_ref().unwrap_or(assignment.targets());
            let resolved = Resolved {
                sql: sql.to_owned(),
                version: assignment.version().to_owned(),
                identity: targets.cache_identity().to_owned(),
                sent: sent.clone(),
                message: message.to_vec(),
                writes_base_rows,
            };
            self.prepared.resolved(name, resolved);
        }
        routed
    }

    /// The named statements whose rewrite the session's name resolution has changed since
    /// they were prepared, each with its text rewritten under the resolution now in effect
    /// (the caller prepares them again, as Postgres would parse them again under a new
    /// search_path). Cheap when nothing changed: the resolution's epoch is compared first.
    pub fn stale_statements(&mut self) -> Vec<(String, String, Vec<u8>)> {
        if !self.prepared.has_resolution_dependent() {
            return Vec::new();
        }
        let state = self.routing.load();
        let epoch = (self.search_path.epoch(), state.generation());
        if self.resolution_checked == Some(epoch) {
            return Vec::new();
        }
        self.resolution_checked = Some(epoch);
        let user = &self.client.user;
        let search_path = &mut self.search_path;
        self.prepared.stale(&self.cache, |version| {
            let base = state.targets(version)?;
            Some(search_path.targets(base, user))
        })
    }

    /// Follows what the session makes that holds its version (a Parse named `name`, SQL
    /// `PREPARE`, `DECLARE … WITH HOLD`, any view, function, procedure or rule it creates, a
    /// DO block, a stored expression naming the version's view, a text the lexer cannot read)
    /// and what releases it (`prepared.rs`). A text holds when it was rewritten for the
    /// version or names the version's own view (forwarded as it is, it reads that version's
    /// columns all the same).
    pub(super) fn remember(
        &mut self,
        name: Option<&str>,
        statement: Statement<'_>,
        rewritten: bool,
        idle: bool,
    ) {
        let Statement { sql, words } = statement;
        let named = name.is_some_and(|name| !name.is_empty());
        if !named && !holding_commands::mentions_a_holding_command(sql, words) {
            return;
        }
        let version = self
            .assignment
            .as_ref()
            .filter(|assignment| !assignment.targets().managed().is_empty())
            .map(Assignment::version);
        let names_version = self
            .assignment
            .as_ref()
            .filter(|assignment| rewritten || names_own_view(assignment.targets(), sql))
            .map(Assignment::version);
        let spells_version = self
            .assignment
            .as_ref()
            .filter(|assignment| rewritten || spells_own_view(assignment.targets(), sql))
            .map(Assignment::version);
        if let Some(name) = name {
            self.prepared.parsed(name, names_version);
        }
        let text = TextContext {
            version,
            names_version,
            spells_version,
            in_block: !idle,
            parse: name.is_some(),
        };
        self.prepared.sql(sql, words, text, &mut self.path_tokens);
    }

    /// At a quiet boundary, with `answered` the batch of each answer to a release since the
    /// last one: the releases Postgres did take effect (`prepared.rs`); a hold that ends lets
    /// the version change.
    pub fn settle_releases(&mut self, answered: &Answers) {
        if self.prepared.settle(answered) {
            self.resolved_under = None;
        }
    }

    /// The session moved to another upstream, where its cursors and temporary objects are not.
    pub fn moved_upstream(&mut self) {
        self.prepared.moved_upstream();
        self.resolved_under = None;
    }

    /// The message routed now belongs to batch `batch` (the count of messages a
    /// ReadyForQuery answers sent before them); `parse`: it is a Parse.
    pub fn note_batch(&mut self, batch: u64, parse: bool) {
        self.prepared.note_batch(batch, parse);
    }

    /// The client sent a Close of a statement (`Some(name)`) or a portal (`None`): a
    /// statement's hold ends once Postgres answers it ([`Self::settle_releases`]).
    pub fn closed(&mut self, statement: Option<&str>) {
        self.prepared.closed(statement);
    }
}

/// Whether `sql` names one of the version's own views (in any case, anywhere in the text: a
/// mention in a literal holds too, which errs on the safe side), or may, behind a Unicode
/// escape (`U&"…"`: the nineteenth red-team pass's verification hid the name so).
fn names_own_view(targets: &VersionTargets, sql: &str) -> bool {
    may_hide_a_name(sql.as_bytes()) || spells_own_view(targets, sql)
}

/// Whether `sql` itself spells a view of `targets` (or may, with escapes); a definition that
/// could build the name at run time does not count.
fn spells_own_view(targets: &VersionTargets, sql: &str) -> bool {
    may_spell_a_name(sql.as_bytes())
        || targets
            .managed()
            .iter()
            .any(|target| contains_ignore_ascii_case(sql.as_bytes(), target.view.name.as_bytes()))
}
