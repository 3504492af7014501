//! A session's version and what each of its statements becomes.
//!
//! Resolution order (decision 3 of the design notes, in `resolve.rs`): a matching rule marked
//! `enforce`, `SET viewgate.version`, the startup declaration, the first matching rule, the
//! catalog's default version. A change takes effect at a transaction boundary: the version is
//! picked again only when the session is idle, so a transaction sees one version from BEGIN
//! to COMMIT. A statement prepared under a version keeps it, because Parse is rewritten when
//! it is sent; while a migration is live, a session holding such statements keeps its
//! version too (`prepared.rs` says why), until it closes them.
//!
//! Picking again is cheap: the session remembers the routing state's generation it resolved
//! under and evaluates rules only when the catalog was reloaded or its own SET changed.
//!
//! The session's `search_path` is followed too (`session_search_path`), while some relation
//! could shadow a managed name: unqualified names are rewritten only where Postgres would
//! find the managed table. Its SETs share the version's transaction bookkeeping: one
//! snapshot, taken before the first change whose fate is not known, is put back if the
//! transaction block rolls back, and a `SET LOCAL` value ends with the block. A session's
//! own temporary relations named like a managed table (`temporary_relations`) are followed
//! the same way: Postgres searches them first.
//!
//! Savepoints (`savepoints`) take the same kind of snapshot (the version SET and both
//! search_path values) when made; `ROLLBACK TO` puts it back. Like SETs, they take effect
//! when routed, so statements pipelined after them are rewritten as Postgres will run them.
//! Where Postgres refuses one, the proxy does not follow it either: a rollback to a name no
//! savepoint has changes nothing (the block is failed, and its end puts back the snapshot
//! taken before the block's first SET, which savepoints never touch); a `SAVEPOINT` or
//! `RELEASE` routed while the block may be failed (Postgres reported an error since a
//! ReadyForQuery or a `ROLLBACK TO` last showed it good; the proxy sees an error before the
//! client does) is not recorded; outside a block none exists.

use std::sync::Arc;

use super::explain_execute;
use super::prepared::PreparedStatements;
use super::raise::Refusal;
use super::relation_kind_restriction;
use super::resolve::{self, Requested};
use super::rules::{Assignment, ClientIdentity, Reason};
use super::savepoints::{self, Lookup, MAX_SAVEPOINTS, SavepointCommand, Savepoints, Step};
use super::search_path::{self, PathCommand};
use super::session_search_path::{PathValue, SavedPath, SessionSearchPath};
use super::state::{RoutingState, SharedRouting};
use super::statement::Statement;
use super::temporary_relations::{self, TempCommand};
use super::version_command;
use super::view_name_capture;
use crate::config::{StickyField, UnparseablePolicy};
use crate::protocol::sqlstate::SqlState;
use crate::rewriter::lexer::Token;
use crate::rewriter::refusal::Undefined;
use crate::rewriter::version_setters;
use crate::rewriter::{
    CachedOutcome, RecentShapes, Rewrite, RewriteCache, VersionTargets, rewrite_cached_in,
};

/// What to send upstream for one statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    Forward,
    Replace(String),
    /// Refused: the client gets this error in the statement's place.
    Refuse(Refusal),
}

/// A version the catalog does not know, declared at startup.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownVersion(pub String);

pub struct SessionRouter {
    routing: SharedRouting,
    client: ClientIdentity,
    /// The client's split bucket (0 to 99), fixed for the session.
    bucket: u8,
    startup_version: Option<String>,
    /// The `viewgate.version` the upstream session was started with, which `RESET` and
    /// `RESET ALL` put back (`server_version`).
    server_default: Option<String>,
    /// `SET viewgate.version` in the session (RESET clears it).
    set: Option<String>,
    /// `set` and the session's search_path as they were before the oldest SET or RESET whose
    /// fate Postgres has not told yet (made inside a transaction block, it is undone if the
    /// block rolls back).
    unsettled: Option<(Option<String>, SavedPath)>,
    /// A SET or RESET just began `unsettled`: the session must watch for its fate.
    new_unsettled: bool,
    /// The version in effect for the current transaction, if the session is versioned.
    assignment: Option<Assignment>,
    /// The version the session asked for, gone from the catalog since (`resolve::retired`):
    /// every statement is refused until it sets a live one.
    retired: Option<String>,
    /// The routing state generation `assignment` was resolved under; `None`: resolve again.
    resolved_under: Option<u64>,
    /// The generation [`SessionRouter::relabel`] last looked at.
    relabelled_under: Option<u64>,
    policy: UnparseablePolicy,
    cache: Arc<RewriteCache>,
    /// The shapes the session's statements had last, tried before `cache`.
    recent_shapes: RecentShapes,
    /// Named prepared statements that name a managed table, with their versions.
    prepared: PreparedStatements,
    /// The session's search_path, as far as the proxy follows it.
    search_path: SessionSearchPath,
    /// The lexer's buffer for reading search_path changes.
    path_tokens: Vec<Token>,
    /// The open block's savepoints, each with the settings when it was made.
    savepoints: Savepoints<Snapshot>,
    /// The block may be failed (an error since it was last known good): Postgres refuses
    /// SAVEPOINT and RELEASE there, so they are not recorded.
    block_failed: bool,
    /// The session's error count (see [`SessionRouter::note_errors`]) when a `ROLLBACK TO` a
    /// known savepoint last recovered the block.
    recovered_at: u64,
    /// The error count last noted.
    errors: u64,
    /// The targets the statement just routed was rewritten with, when the session's name
    /// resolution decided them (see [`SessionRouter::parse_message`]).
    resolved_with: Option<Arc<VersionTargets>>,
    /// The resolution epoch (search_path epoch, routing generation) prepared statements were
    /// last checked under ([`SessionRouter::stale_statements`]).
    resolution_checked: Option<(u64, u64)>,
}

/// What ends a piece of a statement text: a search_path change, a savepoint step, or a
/// temporary relation named like a managed table created or dropped.
enum Event {
    Path(PathCommand),
    Step(Step),
    Temporary(TempCommand),
}

/// What a savepoint puts back: the version SET, the session and `SET LOCAL` search_paths,
/// and the session's temporary relations.
#[derive(Debug, Clone)]
struct Snapshot {
    set: Option<String>,
    path: SavedPath,
    local_path: Option<PathValue>,
}

impl SessionRouter {
    /// Checks the startup declaration against the catalog. `sticky_identity` picks what of
    /// `client` a weighted split hashes.
    pub fn new(
        routing: SharedRouting,
        client: ClientIdentity,
        startup_version: Option<String>,
        sticky_identity: &[StickyField],
        policy: UnparseablePolicy,
        cache: Arc<RewriteCache>,
    ) -> Result<Self, UnknownVersion> {
        {
            let state = routing.load();
            if let Some(version) = &startup_version
                && (!state.governs(&client.database) || state.targets(version).is_none())
            {
                return Err(UnknownVersion(resolve::refused_version_message(
                    &state,
                    &client.database,
                    version,
                )));
            }
        }
        let mut router = SessionRouter {
            routing,
            bucket: client.bucket(sticky_identity),
            client,
            startup_version,
            server_default: None,
            set: None,
            unsettled: None,
            new_unsettled: false,
            assignment: None,
            retired: None,
            resolved_under: None,
            relabelled_under: None,
            policy,
            cache,
            recent_shapes: RecentShapes::default(),
            prepared: PreparedStatements::default(),
            search_path: SessionSearchPath::new(None),
            path_tokens: Vec::new(),
            savepoints: Savepoints::default(),
            block_failed: false,
            recovered_at: 0,
            errors: 0,
            resolved_with: None,
            resolution_checked: None,
        };
        router.refresh();
        Ok(router)
    }

    /// The search_path the startup packet declared, if any (what RESET returns to unless the
    /// upstream is asked at login).
    pub fn declare_search_path(&mut self, declared: Option<&str>) {
        self.search_path = SessionSearchPath::new(declared);
    }

    /// Whether the upstream should be asked for the session's search_path at login: some
    /// relation could shadow a managed name, so the role's and database's defaults matter.
    pub fn wants_login_search_path(&self) -> bool {
        let state = self.routing.load();
        state.governs(&self.client.database) && state.follows_search_path()
    }

    /// The upstream's answer to `SHOW search_path` at login.
    pub fn login_search_path(&mut self, value: &str) {
        self.search_path.at_login(value);
    }

    /// The version in effect, by name.
    pub fn version(&self) -> Option<&str> {
        self.assignment.as_ref().map(Assignment::version)
    }

    /// The upstream session was started with `version` as its `viewgate.version`.
    pub fn started_upstream_at(&mut self, version: Option<&str>) {
        self.server_default = version.map(str::to_owned);
    }

    /// Whether a reset would put the server at another version than the session's.
    pub fn server_default_is_other(&self) -> bool {
        self.server_default.as_deref() != self.version()
    }

    /// Whether the upstream must be told the session's version (a migration is live).
    pub fn tracks_writers(&self) -> bool {
        self.routing.load().tracks_writers()
    }

    /// The version in effect and why the session has it; `None` for an unversioned session.
    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.as_ref()
    }

    /// Picks the version in effect again; call only at a transaction boundary.
    fn refresh(&mut self) {
        let state = self.routing.load();
        if self.resolved_under == Some(state.generation()) {
            return;
        }
        let next = self.resolve(&state);
        self.resolved_under = Some(state.generation());
        self.relabelled_under = self.resolved_under;
        self.retired = match next {
            Some(_) => None,
            None => resolve::retired(&state, &self.client, self.requested()).map(str::to_owned),
        };
        self.assignment = self.held(&state, next.as_ref()).or(next);
    }

    fn requested(&self) -> Requested<'_> {
        Requested {
            set: self.set.as_deref(),
            declared: self.startup_version.as_deref(),
        }
    }

    fn resolve(&self, state: &RoutingState) -> Option<Assignment> {
        resolve::resolve(state, &self.client, self.bucket, self.requested())
    }

    /// The session's assignment kept, as `held`, where a migration is live and `next`, the
    /// version the routing gives it now, is another that a statement it prepared holds it
    /// away from.
    fn held(&self, state: &RoutingState, next: Option<&Assignment>) -> Option<Assignment> {
        let current = self.assignment.as_ref()?;
        let next_version = next?.version();
        (state.tracks_writers()
            && next_version != current.version()
            && self.prepared.held_against(next_version).is_some())
        .then(|| Assignment {
            reason: Reason::Held,
            ..current.clone()
        })
    }

    /// Decides what to send for one statement (a Query's text or a Parse's query). `idle`
    /// says no transaction is open, so the version may change now.
    pub fn statement(&mut self, sql: &str, idle: bool) -> Routed {
        self.read_statement(Statement::new(sql), idle)
    }

    /// [`Self::statement`] of a statement whose words were found already (the relay's).
    pub fn read_statement(&mut self, statement: Statement<'_>, idle: bool) -> Routed {
        let (routed, rewritten) = self.route(statement, idle);
        self.remember(None, statement, rewritten, idle);
        routed
    }

    /// Decides what to send for a Parse of statement `name`, and remembers which version a
    /// named statement that names a managed table was prepared at.
    pub fn parse(&mut self, name: &str, sql: &str, idle: bool) -> Routed {
        self.parse_message(name, Statement::new(sql), idle, &[])
    }

    /// Whether the statement just routed began an unsettled SET, whose fate (committed or
    /// rolled back) the session must report through [`SessionRouter::set_settled`].
    pub fn take_unsettled_set(&mut self) -> bool {
        std::mem::take(&mut self.new_unsettled)
    }

    /// Postgres told the fate of the unsettled SET: kept, or rolled back with its transaction
    /// block (as Postgres's own setting was), which undoes every SET since.
    pub fn set_settled(&mut self, kept: bool) {
        let Some((before, path_before)) = self.unsettled.take() else {
            return;
        };
        self.search_path.transaction_ended();
        if kept {
            return;
        }
        self.search_path.restore(path_before);
        if before != self.set {
            self.set = before;
            self.resolved_under = None;
        }
    }

    /// The session's own choice is about to change: remember what it was until Postgres says
    /// whether the change stands.
    fn set_changing(&mut self) {
        if self.unsettled.is_none() {
            self.unsettled = Some((self.set.clone(), self.search_path.session_value()));
            self.new_unsettled = true;
        }
    }

    /// Follows `steps` in order; `Some` refuses the statement (see [`Self::follow_step`]).
    fn follow_steps(&mut self, steps: Vec<(usize, Step)>, in_block: &mut bool) -> Option<Routed> {
        steps
            .into_iter()
            .find_map(|(_, step)| self.follow_step(step, in_block))
    }

    /// Follows one statement that matters to savepoints (see the module's comment on when);
    /// `in_block`: whether a transaction block is open, as the statements before it left it.
    /// `Some`: the statement is refused, because it cannot be followed.
    fn follow_step(&mut self, step: Step, in_block: &mut bool) -> Option<Routed> {
        let command = match step {
            Step::Begin => {
                *in_block = true;
                return None;
            }
            Step::End { chain } => {
                self.savepoints.clear();
                *in_block = chain;
                return None;
            }
            // Outside a block Postgres refuses it, and no savepoint exists.
            Step::Command(_) if !*in_block => return None,
            Step::Command(command) => command,
        };
        match command {
            SavepointCommand::Savepoint(name) if !self.block_failed => {
                let snapshot = Snapshot {
                    set: self.set.clone(),
                    path: self.search_path.session_value(),
                    local_path: self.search_path.local_value(),
                };
                self.savepoints.push(name, snapshot);
            }
            SavepointCommand::Release(name) if !self.block_failed => self.savepoints.release(&name),
            SavepointCommand::Savepoint(_) | SavepointCommand::Release(_) => {}
            SavepointCommand::RollbackTo(name) => match self.savepoints.rollback_to(&name) {
                Lookup::Found(snapshot) => {
                    self.search_path.restore(snapshot.path);
                    self.search_path.restore_local(snapshot.local_path);
                    if snapshot.set != self.set {
                        self.set = snapshot.set;
                        self.resolved_under = None;
                    }
                    // A block the rollback recovered is no longer failed.
                    self.block_failed = false;
                    self.recovered_at = self.errors;
                }
                Lookup::Missing => {}
                Lookup::Forgotten => {
                    return Some(Routed::Refuse(Refusal::new(
                        SqlState::PROGRAM_LIMIT_EXCEEDED,
                        format!(
                            "viewgate cannot follow ROLLBACK TO SAVEPOINT \"{name}\": it remembers only the newest {MAX_SAVEPOINTS} savepoints of a transaction; roll the transaction back"
                        ),
                    )));
                }
            },
        }
        None
    }

    /// Notes, before a statement is routed, how many errors Postgres reported in the session
    /// (`errors`) and how many of them a ReadyForQuery saying the block is not failed put
    /// behind it (`settled`): more errors since then, or since a `ROLLBACK TO` that recovered
    /// the block, mean the block may be failed.
    pub fn note_errors(&mut self, errors: u64, settled: u64) {
        self.errors = errors;
        self.block_failed = errors > settled.max(self.recovered_at);
    }

    /// What to send, and whether it is the statement rewritten for the session's version.
    fn route(&mut self, statement: Statement<'_>, idle: bool) -> (Routed, bool) {
        let Statement { sql, words } = statement;
        self.resolved_with = None;
        if idle {
            self.refresh();
            self.savepoints.clear();
        }
        if let Some(command) = version_command::parse(sql) {
            return (self.version_command(command, idle), false);
        }
        if let Some(refusal) = self.retired_refusal() {
            return (Routed::Refuse(refusal), false);
        }
        if let Some(assigned) = &self.assignment
            && let Some(refusal) =
                relation_kind_restriction::refusal(sql, words, Some(&assigned.targets().version))
        {
            return (Routed::Refuse(refusal), false);
        }
        let steps = savepoints::steps(sql, words, &mut self.path_tokens);
        let mut in_block = !idle;
        let Some(assignment) = &self.assignment else {
            if version_setters::may_set_the_version(sql) {
                let refusal = relation_kind_restriction::refusal(sql, words, None);
                let refusal = refusal.unwrap_or_else(Refusal::unfollowed_version_change);
                return (Routed::Refuse(refusal), false);
            }
            // Not read for search_path changes: unknown once the session is versioned.
            self.search_path.unread();
            return match self.follow_steps(steps, &mut in_block) {
                Some(refused) => (refused, false),
                None => (Routed::Forward, false),
            };
        };
        let targets = assignment.targets();
        if let Some(call) = explain_execute::outline_call(sql, words, targets) {
            return (Routed::Replace(call), true);
        }
        let views = (targets
            .managed()
            .iter()
            .map(|target| target.view.name.as_str()))
        .chain(targets.other_views().iter().map(|view| view.name.as_str()));
        if let Some(name) =
            view_name_capture::named_like_a_view(sql, words, &mut self.path_tokens, views)
        {
            return (
                Routed::Refuse(Refusal::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!(
                        "a relation named \"{name}\" like a version's view is refused at version \"{}\": viewgate rewrites a managed table to its view by that name, and Postgres could find this relation first; choose another name",
                        targets.version
                    ),
                )),
                false,
            );
        }
        let follows = assignment.targets().follows_search_path;
        let temporary = temporary_relations::may_change(words, self.search_path.has_temporary());
        if !follows && !temporary && !self.search_path.has_temporary() {
            self.search_path.unread();
            if let Some(refused) = self.follow_steps(steps, &mut in_block) {
                return (refused, false);
            }
            let Some(assignment) = &self.assignment else {
                return (Routed::Forward, false);
            };
            let rewriting = Rewriting {
                cache: &self.cache,
                recent: &mut self.recent_shapes,
                policy: self.policy,
            };
            return match rewriting.piece(sql, assignment.targets(), 0) {
                Ok(Some(text)) => (Routed::Replace(text), true),
                Ok(None) => (Routed::Forward, false),
                Err(routed) => (routed, false),
            };
        }
        // Following the search_path or temporary relations: each statement that changes
        // them ends a piece, and the pieces after it are rewritten with the new resolution
        // (Postgres runs them in order).
        let base = assignment.targets().clone();
        let changes = match follows {
            true => search_path::commands(sql, &mut self.path_tokens),
            false => {
                self.search_path.unread();
                Vec::new()
            }
        };
        let created_or_dropped = match temporary {
            true => temporary_relations::commands(sql, &mut self.path_tokens, |name| {
                base.resolve_table(None, name).is_some()
            }),
            false => Vec::new(),
        };
        let mut events: Vec<(usize, Event)> = changes
            .into_iter()
            .map(|(end, command)| (end, Event::Path(command)))
            .chain(
                steps
                    .into_iter()
                    .map(|(end, step)| (end, Event::Step(step))),
            )
            .chain(
                created_or_dropped
                    .into_iter()
                    .map(|(end, command)| (end, Event::Temporary(command))),
            )
            .collect();
        events.sort_by_key(|(end, _)| *end);
        let pieces = events
            .into_iter()
            .map(|(end, event)| (end, Some(event)))
            .chain(std::iter::once((sql.len(), None)));
        let (mut text, mut start, mut rewritten) = (String::new(), 0, false);
        for (end, event) in pieces {
            let piece = sql.get(start..end).unwrap_or_default();
            if !piece.is_empty() {
                let targets = self.search_path.targets(&base, &self.client.user);
                let offset = sql[..start].chars().count();
                let rewriting = Rewriting {
                    cache: &self.cache,
                    recent: &mut self.recent_shapes,
                    policy: self.policy,
                };
                match rewriting.piece(piece, &targets, offset) {
                    Ok(Some(replaced)) => {
                        text.push_str(&replaced);
                        rewritten = true;
                        self.resolved_with = Some(targets.clone());
                    }
                    Ok(None) => text.push_str(piece),
                    Err(routed) => return (routed, false),
                }
            }
            match event {
                Some(Event::Path(command)) => self.path_changed(command),
                Some(Event::Temporary(command)) => {
                    self.set_changing();
                    self.search_path.apply_temporary(command);
                }
                Some(Event::Step(step)) => {
                    if let Some(refused) = self.follow_step(step, &mut in_block) {
                        return (refused, false);
                    }
                }
                None => {}
            }
            start = end.max(start);
        }
        match rewritten {
            true => (Routed::Replace(text), true),
            false => (Routed::Forward, false),
        }
    }

    /// The statement being routed changes the search_path: it applies from the next
    /// statement, and its fate is watched like a version SET's.
    fn path_changed(&mut self, command: PathCommand) {
        self.set_changing();
        self.search_path.apply(command);
    }

    /// The session's own choice changed: resolve again (now if idle, else at the boundary).
    fn requested_changed(&mut self, idle: bool) {
        self.resolved_under = None;
        if idle {
            self.refresh();
        }
    }
}

/// What rewriting a statement's pieces needs from the session: its caches and its policy for
/// statements the rewriter cannot read.
struct Rewriting<'s> {
    cache: &'s RewriteCache,
    recent: &'s mut RecentShapes,
    policy: UnparseablePolicy,
}

impl Rewriting<'_> {
    /// `piece` (a whole statement text, or the part of one between search_path changes that
    /// starts `offset` characters in) rewritten for `targets`: `Ok(None)` unchanged, `Err`
    /// what to send instead when it cannot be rewritten (per the unparseable policy).
    fn piece(
        self,
        piece: &str,
        targets: &VersionTargets,
        offset: usize,
    ) -> Result<Option<String>, Routed> {
        let outcome = match rewrite_cached_in(self.cache, self.recent, piece, targets) {
            // A shape's rewrite is made for this text alone: its text is taken, not copied.
            CachedOutcome::Own(Ok(Rewrite::Rewritten(text))) => return Ok(Some(text)),
            outcome => outcome,
        };
        match &*outcome {
            Ok(Rewrite::Unchanged) => Ok(None),
            Ok(Rewrite::Rewritten(text)) => Ok(Some(text.clone())),
            Err(error) => Err(match self.policy {
                UnparseablePolicy::Passthrough => {
                    tracing::debug!(%error, "statement forwarded without rewriting");
                    Routed::Forward
                }
                UnparseablePolicy::Reject => {
                    let position = error
                        .position
                        .map(|p| format!(" (at character {})", p + offset))
                        .unwrap_or_default();
                    let code = match error.undefined {
                        Some(Undefined::Relation(_)) => SqlState::UNDEFINED_TABLE,
                        Some(Undefined::Column) => SqlState::UNDEFINED_COLUMN,
                        None => SqlState::SYNTAX_ERROR,
                    };
                    Routed::Refuse(Refusal::new(code, format!("{error}{position}")))
                }
            }),
        }
    }
}

#[path = "session_router_application.rs"]
mod application;
#[path = "session_router_holds.rs"]
mod holds;
#[path = "session_router_refusals.rs"]
mod refusals;
#[path = "session_router_relabel.rs"]
mod relabel;
#[path = "session_router_version.rs"]
mod version_commands;

#[cfg(test)]
#[path = "session_router_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_router_retired_tests.rs"]
mod retired_tests;
