//! What holds a session at the version it runs at: its prepared statements that name a
//! managed table or its version's view, its `WITH HOLD` cursors and its temporary views and
//! functions over them, each with the version it was made at.
//!
//! A statement is rewritten when it is prepared, so it keeps that version for its life; a
//! cursor, a temporary view or a `pg_temp` function keeps the relations it was made over. While
//! a migration is live the sync triggers tell writers apart by the session's
//! `viewgate.version`, which the proxy keeps equal to the session's version: a session that
//! moved to another version and then wrote through something made at the old one would be
//! judged as the wrong writer (and read the old version's columns). So while such objects
//! exist and a migration is live, the session holds its version (`session_router.rs`) until
//! the client drops them (protocol Close, `DEALLOCATE`, `CLOSE`, `DISCARD`) or disconnects.
//! A temporary view or function holds until `DISCARD TEMP` or `DISCARD ALL` (a `DROP` of it
//! is not followed).
//!
//! A named Parse holds from when it is sent; at the next quiet boundary, one of a batch that
//! Postgres refused before answering that Parse (each Parse is answered in order, and an
//! error skips the rest of its batch) made no statement and holds nothing, though drivers
//! never close it. Likewise a SQL `PREPARE` in a Query: Postgres answers each one it made
//! with the tag `PREPARE`, in order, so one past the count of those answers failed or was
//! skipped. Either way a name it would have replaced (refused with 42P05) keeps its hold.
//!
//! A release counts only once Postgres has done it (the nineteenth red-team pass released
//! holds on a `DEALLOCATE` that Postgres refused, skipped after an error, or never saw because
//! the proxy refused its query string). Each release the client sends (a Close of a statement
//! or a portal, `DEALLOCATE`, `CLOSE`, `DISCARD`) is answered by CloseComplete or its command
//! tag, and Postgres runs a batch (a Query, or the messages up to a Sync) in order and stops
//! it at the first error. So the upstream side notes the batch of each such answer, and at
//! the next quiet boundary, of the releases each batch held, as many as it had answers take
//! effect, in order; the rest were skipped or failed and release nothing.
//!
//! A protocol statement rewritten under the session's name resolution (a search_path or
//! temporary relation that shadows a managed name) is also remembered whole ([`Resolved`]),
//! so the router can prepare it again when that resolution changes, as Postgres parses a
//! prepared statement again under a new search_path.
//!
//! Named statements are tracked both ways Postgres creates them: the extended protocol's
//! Parse and SQL `PREPARE` (one namespace). The unnamed statement is not: it lives until the
//! next Parse or Query, which drivers send in the same batch as its Execute.

use std::collections::HashMap;
use std::sync::Arc;

use super::holding_commands::{
    copies_rows, creates_code, mentions_a_holding_command, says_temporary,
};
use super::statement_words::{self, identifier, is_word};
use crate::rewriter::lexer::Token;
use crate::rewriter::word_scan::Words;
use crate::rewriter::{Rewrite, RewriteCache, VersionTargets, rewrite_cached};

#[derive(Debug, Default)]
pub struct PreparedStatements {
    /// Statement name → what holds it.
    versions: HashMap<String, Held>,
    /// `WITH HOLD` cursor name → what holds it.
    cursors: HashMap<String, Held>,
    /// Temporary views, functions and procedures the session made, one entry per version it
    /// made them at: they end with `DISCARD TEMP` or `DISCARD ALL`.
    temporary: Vec<Held>,
    /// Other views, functions, procedures and rules the session made: they outlive any
    /// release the router follows, so they hold the session until it ends.
    code: Vec<Held>,
    /// Protocol statements whose rewrite depends on how the session resolves names.
    resolved: HashMap<String, Resolved>,
    /// Releases sent since the last quiet boundary, in order, each with the sequence number
    /// it was sent at (it releases only what was made before it) and its batch.
    pending: Vec<Pending>,
    /// The batch the messages routed now belong to (`SessionRouter::note_batch`).
    batch: u64,
    /// How many Parses the client has sent in `batch`.
    parses_in_batch: u32,
    /// The named Parses and SQL `PREPARE`s that made a hold since the last quiet boundary.
    created: Vec<Created>,
    /// Orders holds and releases within one stretch between quiet boundaries.
    sequence: u64,
}

/// How many releases one stretch between quiet boundaries remembers (and how many answers to
/// them the session keeps): a client that pipelines Closes without ever waiting cannot grow
/// either without bound. Releases past it are not followed, which leaves a session held,
/// never released early.
pub const MAX_PENDING_RELEASES: usize = 4096;

/// A release sent and not yet known to have been done.
#[derive(Debug, Clone)]
struct Pending {
    release: Release,
    sent: u64,
    batch: u64,
    answer: Answer,
}

/// What Postgres answered since the last quiet boundary that decides what the session still
/// holds: the batch of each answer to a release, and each batch it refused a message of,
/// with how many of the batch's Parses it had answered by then.
#[derive(Debug, Default)]
pub struct Answers {
    pub releases: Vec<(u64, Answer)>,
    pub failed_batches: Vec<(u64, u32)>,
}

/// A statement that made a hold, until its batch is answered: Postgres answers a batch's
/// statements in order and skips the rest of the batch after an error, so it was made only
/// if its batch failed after it, or not at all.
#[derive(Debug, Clone)]
struct Created {
    name: String,
    made: u64,
    batch: u64,
    by: Creation,
    /// The hold of the name before, which stays if this statement was not made (Postgres
    /// refuses a name already prepared).
    replaced: Option<Held>,
}

/// How a held statement was made, with its place among the batch's statements of that kind,
/// from 0.
#[derive(Debug, Clone, Copy)]
enum Creation {
    /// A protocol Parse: made if the batch failed after its ParseComplete, or not at all.
    Parse { ordinal: u32 },
    /// A SQL `PREPARE` in a Query: made if the Query was answered with as many `PREPARE` tags.
    Query { ordinal: u32 },
}

/// The tag Postgres answers a SQL `PREPARE` with.
const PREPARE_TAG: &str = "PREPARE";

/// What answers a release: a Close's CloseComplete, or a statement's command tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    CloseComplete,
    Tag(&'static str),
}

/// How a SQL text reached the router (`PreparedStatements::sql`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TextContext<'a> {
    /// The session's version, if it has managed tables.
    pub version: Option<&'a str>,
    /// The version, when the text names a managed table or the version's view (or, being a
    /// definition, may build such a name).
    pub names_version: Option<&'a str>,
    /// The version, when the text itself names a managed table or the version's view: it was
    /// rewritten, spells the view's name, or may spell it with escapes.
    pub spells_version: Option<&'a str>,
    /// A transaction block is open before the text runs.
    pub in_block: bool,
    /// The text is a Parse's: run later, by an Execute.
    pub parse: bool,
}

/// The version something was made at, and when (see `PreparedStatements::sequence`).
#[derive(Debug, Clone)]
struct Held {
    version: String,
    made: u64,
}

/// What a release the client sent drops once Postgres has done it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Release {
    /// A portal's Close: answered like a statement's, and holding nothing.
    Portal,
    Statement(String),
    AllStatements,
    Cursor(String),
    AllCursors,
    Temporary,
    Everything,
}

/// A named statement whose rewrite depends on how the session resolves unqualified names
/// (its search_path, its temporary relations): what is needed to prepare it again when that
/// changes, as Postgres parses a prepared statement again when the search_path changed.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The client's text.
    pub sql: String,
    /// The version it was rewritten at.
    pub version: String,
    /// The cache identity of the targets it was rewritten with (`VersionTargets`).
    pub identity: String,
    /// The text sent to Postgres.
    pub sent: String,
    /// The client's Parse message, whose name and parameter types a new Parse keeps.
    pub message: Vec<u8>,
    /// Written to the base table with the version's column mapping (a MERGE, an upsert),
    /// whose physical names a migration's contract may rename under the same version: read
    /// again whenever the catalog changes, whatever the identity (the thirty-first red-team
    /// pass saw such a statement fail after `migrate complete`, naming a renamed column).
    pub writes_base_rows: bool,
}

/// Whether the answers to `made`'s batch show Postgres did not make it. Past
/// [`MAX_PENDING_RELEASES`] answers some were not kept, and a `PREPARE` is taken as made.
fn not_made(made: &Created, answered: &Answers) -> bool {
    match made.by {
        Creation::Parse { ordinal } => (answered.failed_batches.iter())
            .any(|&(batch, parses)| batch == made.batch && ordinal >= parses),
        Creation::Query { ordinal } => {
            let prepared = (answered.releases.iter())
                .filter(|&&answer| answer == (made.batch, Answer::Tag(PREPARE_TAG)))
                .count();
            answered.releases.len() < MAX_PENDING_RELEASES && ordinal as usize >= prepared
        }
    }
}

impl PreparedStatements {
    /// A protocol Parse of statement `name`; `version` is the version it was made at, or
    /// `None` when it names no managed table nor the version's view. A name that is already
    /// prepared is refused by Postgres (42P05), so only a statement that holds changes what
    /// is known: an unmanaged reuse of a held name keeps the hold until the name is closed.
    pub fn parsed(&mut self, name: &str, version: Option<&str>) {
        self.resolved.remove(name);
        if let (false, Some(version)) = (name.is_empty(), version) {
            let ordinal = self.parses_in_batch.saturating_sub(1);
            self.hold_made(name.to_owned(), version, Creation::Parse { ordinal });
        }
    }

    /// Statement `name` holds at `version` from now on, until the answer to its batch shows
    /// it was not made ([`Self::settle`]).
    fn hold_made(&mut self, name: String, version: &str, by: Creation) {
        let held = self.held(version);
        if self.created.len() < MAX_PENDING_RELEASES {
            self.created.push(Created {
                name: name.clone(),
                made: held.made,
                batch: self.batch,
                by,
                replaced: self.versions.get(&name).cloned(),
            });
        }
        self.versions.insert(name, held);
    }

    /// A protocol Close of a statement (`Some(name)`) or a portal (`None`): a statement's hold
    /// ends once Postgres answers it ([`Self::settle`]).
    pub fn closed(&mut self, statement: Option<&str>) {
        let release = match statement {
            Some(name) => Release::Statement(name.to_owned()),
            None => Release::Portal,
        };
        self.release(release, Answer::CloseComplete);
    }

    /// The messages routed from now on belong to batch `batch` (see `proxy::session::progress`:
    /// counted by the messages a ReadyForQuery answers).
    pub fn note_batch(&mut self, batch: u64, parse: bool) {
        if self.batch != batch {
            self.batch = batch;
            self.parses_in_batch = 0;
        }
        self.parses_in_batch += u32::from(parse);
    }

    /// Statement `name`, just parsed, depends on the session's name resolution.
    pub fn resolved(&mut self, name: &str, resolved: Resolved) {
        self.resolved.insert(name.to_owned(), resolved);
    }

    /// Whether any statement depends on the session's name resolution.
    pub fn has_resolution_dependent(&self) -> bool {
        !self.resolved.is_empty()
    }

    /// The statements depending on the session's name resolution whose rewrite changed under
    /// the targets `resolve` now gives their version, each as (name, new text, the client's
    /// Parse message); remembered as prepared again.
    pub fn stale(
        &mut self,
        cache: &RewriteCache,
        mut resolve: impl FnMut(&str) -> Option<Arc<VersionTargets>>,
    ) -> Vec<(String, String, Vec<u8>)> {
        let mut stale = Vec::new();
        for (name, resolved) in &mut self.resolved {
            let Some(targets) = resolve(&resolved.version) else {
                continue;
            };
            if targets.cache_identity() == resolved.identity && !resolved.writes_base_rows {
                continue;
            }
            resolved.identity = targets.cache_identity().to_owned();
            let text = match &*rewrite_cached(cache, &resolved.sql, &targets) {
                Ok(Rewrite::Rewritten(text)) => text.clone(),
                Ok(Rewrite::Unchanged) => resolved.sql.clone(),
                Err(_) => continue,
            };
            if text != resolved.sent {
                resolved.sent = text.clone();
                stale.push((name.clone(), text, resolved.message.clone()));
            }
        }
        stale
    }

    /// A SQL statement text (`text` says how it was sent and what it names). `PREPARE name
    /// AS …` of a text that names a managed table or the version's view holds; so does, at
    /// any versioned session, `DECLARE name … WITH HOLD …`, `CREATE [OR REPLACE] … {VIEW |
    /// MATERIALIZED VIEW | FUNCTION | PROCEDURE | RULE}` and `DO`, whatever they name (they
    /// may build on something made at the version: a temporary view, a temporary table
    /// Postgres makes the view temporary for); and any other `CREATE` or `ALTER` that names a
    /// managed table or the version's view, but a `CREATE TABLE … AS` copy. `DEALLOCATE
    /// [PREPARE] name | ALL`, `CLOSE name | ALL` and `DISCARD {ALL | TEMP}` release once
    /// answered; the last two kinds only outside a transaction block (a rollback undoes
    /// them), and none of them in a Parse (Postgres runs it at an Execute, which the router
    /// does not follow).
    pub fn sql(&mut self, sql: &str, words: Words, text: TextContext<'_>, tokens: &mut Vec<Token>) {
        if !mentions_a_holding_command(sql, words) {
            return;
        }
        // Text the lexer cannot read (a form feed, a Unicode escape) that may make something
        // holds for good: it cannot be followed (the verification of the twentieth pass hid
        // temporary views so).
        let Some(statements) = statement_words::statements(sql, tokens) else {
            if let Some(version) = text.version {
                self.lasting(version);
            }
            return;
        };
        // A release Postgres may undo (`CLOSE`, `DISCARD`: a rollback, or the implicit block
        // of a query string that fails later) is followed only as a Query of its own outside
        // a block.
        let statements: Vec<_> = statements
            .into_iter()
            .filter(|(_, words)| !words.is_empty())
            .collect();
        let alone = statements.len() == 1 && !text.in_block && !text.parse;
        let mut prepares = 0;
        for (_, words) in statements {
            let word = |at: usize, w: &str| words.get(at).is_some_and(|t| is_word(sql, t, w));
            let name = |at: usize| words.get(at).and_then(|t| identifier(sql, t));
            let release =
                |release: Release, tag: &'static str| (!text.parse).then_some((release, tag));
            let mut released = None;
            if word(0, "PREPARE") && word(1, "TRANSACTION") {
                // Two-phase commit, not a statement.
            } else if word(0, "PREPARE") {
                let ordinal = prepares;
                prepares += 1;
                if let (Some(version), Some(name)) = (text.names_version, name(1)) {
                    if text.parse {
                        // Made at an Execute the router does not follow: held for good.
                        let held = self.held(version);
                        self.versions.insert(name, held);
                    } else {
                        self.hold_made(name, version, Creation::Query { ordinal });
                    }
                }
            } else if word(0, "DEALLOCATE") {
                let at = if word(1, "PREPARE") { 2 } else { 1 };
                released = match (word(at, "ALL"), name(at)) {
                    (true, _) => release(Release::AllStatements, "DEALLOCATE ALL"),
                    (false, Some(name)) => release(Release::Statement(name), "DEALLOCATE"),
                    (false, None) => None,
                };
            } else if word(0, "DECLARE") {
                let holds = (2..words.len())
                    .take_while(|&at| !word(at, "FOR"))
                    .any(|at| word(at - 1, "WITH") && word(at, "HOLD"));
                if let (true, Some(version), Some(name)) = (holds, text.version, name(1)) {
                    let held = self.held(version);
                    self.cursors.insert(name, held);
                }
            } else if word(0, "CLOSE") && alone {
                released = match (word(1, "ALL"), name(1)) {
                    (true, _) => release(Release::AllCursors, "CLOSE CURSOR ALL"),
                    (false, Some(name)) => release(Release::Cursor(name), "CLOSE CURSOR"),
                    (false, None) => None,
                };
            } else if word(0, "DO") {
                // Its body's plain SQL may make anything (the verification of the twentieth
                // pass made temporary views and prepared statements in one).
                if let Some(version) = text.version {
                    self.lasting(version);
                }
            } else if word(0, "CREATE") {
                // Besides code, a stored expression (a default, a check, a policy) that names
                // the version's view keeps reading it (the twenty-second pass read v1's view
                // at v3 through a temporary table's default); a copy of rows does not.
                let made = creates_code(sql, &words).or_else(|| {
                    (text.spells_version.is_some() && !copies_rows(sql, &words))
                        .then(|| says_temporary(sql, &words))
                });
                if let (Some(temporary), Some(version)) = (made, text.version) {
                    self.keep(version, temporary);
                }
            } else if word(0, "ALTER") {
                if let (Some(_), Some(version)) = (text.spells_version, text.version) {
                    self.keep(version, false);
                }
            } else if word(0, "DISCARD") && alone {
                released = match () {
                    () if word(1, "ALL") => release(Release::Everything, "DISCARD ALL"),
                    () if word(1, "TEMP") || word(1, "TEMPORARY") => {
                        release(Release::Temporary, "DISCARD TEMP")
                    }
                    () => None,
                };
            }
            if let Some((release, tag)) = released {
                self.release(release, Answer::Tag(tag));
            }
        }
    }

    /// At a quiet boundary, with `answered` the batch and kind of each answer to a release
    /// since the last one, in order: of the releases of each kind each batch held, as many as
    /// it had answers of that kind were done (Postgres stops a batch at its first error).
    /// Returns whether a hold ended.
    pub fn settle(&mut self, answered: &Answers) -> bool {
        let created = std::mem::take(&mut self.created);
        let before = self.held_count();
        // A statement Postgres did not make holds nothing (drivers do not close a statement
        // whose Parse failed: the walk's DBD::Pg, PDO and Sequel sessions were held by one
        // after a 42703 until they reconnected).
        for made in created {
            if !not_made(&made, answered)
                || self
                    .versions
                    .get(&made.name)
                    .is_none_or(|held| held.made != made.made)
            {
                continue;
            }
            match made.replaced {
                Some(before) => self.versions.insert(made.name, before),
                None => {
                    self.resolved.remove(&made.name);
                    self.versions.remove(&made.name)
                }
            };
        }
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return self.held_count() < before;
        }
        let mut unused: Vec<(u64, Answer)> = answered.releases.clone();
        for Pending {
            release,
            sent,
            batch,
            answer,
        } in pending
        {
            let Some(at) = unused.iter().position(|&used| used == (batch, answer)) else {
                continue;
            };
            unused.remove(at);
            self.apply(release, sent);
        }
        self.held_count() < before
    }

    /// The session moved to another upstream: its cursors and temporary objects stayed on the
    /// old one (`proxy::reconnect` carries prepared statements and settings only); lasting
    /// views and functions are in the database, and still hold.
    pub fn moved_upstream(&mut self) {
        self.cursors.clear();
        self.temporary.clear();
    }

    /// Drops what `release`, sent at `sent`, releases: what was made before it.
    fn apply(&mut self, release: Release, sent: u64) {
        let older = |held: &Held| held.made < sent;
        match release {
            Release::Portal => {}
            Release::Statement(name) => {
                if self.versions.get(&name).is_some_and(older) {
                    self.versions.remove(&name);
                }
                self.resolved.remove(&name);
            }
            Release::AllStatements => {
                self.versions.retain(|_, held| !older(held));
                self.resolved.clear();
            }
            Release::Cursor(name) => {
                if self.cursors.get(&name).is_some_and(older) {
                    self.cursors.remove(&name);
                }
            }
            Release::AllCursors => self.cursors.retain(|_, held| !older(held)),
            Release::Temporary => self.temporary.retain(|held| !older(held)),
            Release::Everything => {
                self.versions.retain(|_, held| !older(held));
                self.cursors.retain(|_, held| !older(held));
                self.temporary.retain(|held| !older(held));
                self.resolved.clear();
            }
        }
    }

    /// Something made at a version other than `version`, if any: the session cannot move to
    /// `version` while a migration is live. As (what it is, the version it holds).
    pub fn held_against(&self, version: &str) -> Option<(String, &str)> {
        let other = |held: &&Held| held.version != version;
        if let Some((name, held)) = self.versions.iter().find(|(_, held)| other(held)) {
            return Some((format!("prepared statement \"{name}\""), &held.version));
        }
        if let Some((name, held)) = self.cursors.iter().find(|(_, held)| other(held)) {
            return Some((format!("cursor \"{name}\""), &held.version));
        }
        self.temporary
            .iter()
            .chain(&self.code)
            .find(other)
            .map(|held| {
                (
                    "a view, function or rule it made".to_owned(),
                    held.version.as_str(),
                )
            })
    }

    /// Something the session made at `version` that no release the router follows undoes.
    fn lasting(&mut self, version: &str) {
        let held = self.held(version);
        self.code.retain(|made| made.version != version);
        self.code.push(held);
    }

    fn held(&mut self, version: &str) -> Held {
        self.sequence += 1;
        Held {
            version: version.to_owned(),
            made: self.sequence,
        }
    }

    /// Something made at `version` that keeps reading it: until `DISCARD` for a temporary
    /// object, for the session's life otherwise.
    fn keep(&mut self, version: &str, temporary: bool) {
        let held = self.held(version);
        let kept = if temporary {
            &mut self.temporary
        } else {
            &mut self.code
        };
        kept.retain(|made| made.version != version);
        kept.push(held);
    }

    fn release(&mut self, release: Release, answer: Answer) {
        if self.pending.len() >= MAX_PENDING_RELEASES {
            return;
        }
        self.sequence += 1;
        self.pending.push(Pending {
            release,
            sent: self.sequence,
            batch: self.batch,
            answer,
        });
    }

    fn held_count(&self) -> usize {
        self.versions.len() + self.cursors.len() + self.temporary.len() + self.code.len()
    }
}

#[cfg(test)]
#[path = "prepared_tests.rs"]
mod tests;
