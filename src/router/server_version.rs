//! What moves the server's `viewgate.version` away from the version the proxy told it.
//!
//! The migrations' sync triggers take the server's `viewgate.version` for the writer's
//! version, so while a migration is live it must be the version the session's statements
//! are rewritten at. The proxy tells it ahead of a statement at a quiet boundary
//! (`proxy::session::relay::tell_version`). Between two such boundaries, three kinds of
//! statement move it:
//! - `RESET ALL` and `DISCARD ALL` put it back to the session's startup value (or none);
//! - `RESET viewgate.version` and `SET viewgate.version TO DEFAULT` do the same, and the
//!   proxy's own choice goes back to its routing, which may differ (an enforced rule);
//! - `SET viewgate.version = v` sets it at once, while the proxy moves the session at its
//!   next transaction boundary.
//!
//! The thirteenth red-team pass and its verification wrote as another version through each
//! (a `RESET ALL` or `RESET viewgate.version` in a block, `SET … TO DEFAULT` at any time). So
//! while a migration is live, such a statement must end a Query sent with nothing in flight
//! and outside a block, nothing before it in that Query opening a block, and nothing may
//! follow it until it is answered; the proxy then tells the version again before the next
//! statement. Connection pools send exactly that: a reset alone (`server_reset_query`), or
//! last after statements that keep no state (asyncpg's `SELECT pg_advisory_unlock_all();
//! CLOSE ALL; UNLISTEN *; RESET ALL;`); Postgres itself runs `DISCARD ALL` only outside blocks
//! and pipelines, which lets it through a Parse too. A Parse of `RESET ALL` is refused at every
//! version: the prepared statement could run later, inside a block of a live migration. Where
//! the session's version changed since it connected, a reset back to the startup value would
//! leave the server there ahead of Binds no tell precedes: a Query ending in `RESET ALL` is
//! then told the session's version as its last statement ([`is_told_after`]); the others are
//! refused.

use super::raise::Refusal;
use super::statement_words::{self, is_word};
use super::version_command::{self, VersionCommand};
use crate::protocol::sqlstate::SqlState;
use crate::rewriter::lexer::Token;
use crate::rewriter::word_scan::{WordSet, Words};

/// The statements that reset every setting: `RESET ALL`, `DISCARD ALL`.
const RESETTING: [&str; 2] = ["reset", "discard"];
const RESETTING_WORDS: WordSet = WordSet::of(&RESETTING);

/// The first words of statements that open a transaction block (`BEGIN`, `START
/// TRANSACTION`), and the word that opens one as another ends (`COMMIT AND CHAIN`): a reset
/// after one would leave a block open at the startup version.
const BLOCK_OPENING: [&str; 2] = ["begin", "start"];
const CHAINING: &str = "chain";

/// Whether a statement holding `words` may reset the session's settings (`RESET ALL`,
/// `DISCARD ALL`, also inside a function or DO block): the words, in any case, anywhere.
pub fn may_reset_settings(words: Words) -> bool {
    words.any(RESETTING_WORDS)
}

/// Whether a Query's or Parse's text moves the server's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// No statement of it does.
    None,
    /// Its last statement resets every setting, and none before it resets or opens a
    /// transaction block (so, sent outside one, the Query ends outside one); `discard`:
    /// `DISCARD ALL`.
    Last { discard: bool },
    /// It is `SET` or `RESET viewgate.version` (only ever recognised as a whole text);
    /// `resets`: `RESET`, or `SET … TO DEFAULT`.
    VersionCommand { resets: bool },
    /// One of its statements does, among others (or the lexer cannot tell).
    AmongOthers,
}

/// Reads `sql` for a statement that moves the server's version; cheap (no lexing) for text
/// that mentions none of `reset`, `discard` and `viewgate.version`.
pub fn resets(sql: &str, words: Words, tokens: &mut Vec<Token>) -> Reset {
    match version_command::parse(sql) {
        Some(VersionCommand::Set(_)) => return Reset::VersionCommand { resets: false },
        Some(VersionCommand::Reset) => return Reset::VersionCommand { resets: true },
        _ => {}
    }
    if !may_reset_settings(words) {
        return Reset::None;
    }
    let Some(statements) = statement_words::statements(sql, tokens) else {
        return Reset::AmongOthers;
    };
    let statements: Vec<_> = statements
        .into_iter()
        .filter(|(_, words)| !words.is_empty())
        .collect();
    let resetting = |words: &[&Token]| match words {
        [verb, all] => {
            RESETTING.iter().any(|word| is_word(sql, verb, word)) && is_word(sql, all, "all")
        }
        _ => false,
    };
    let opens_block = |words: &[&Token]| {
        BLOCK_OPENING
            .iter()
            .any(|word| is_word(sql, words[0], word))
            || words.iter().any(|token| is_word(sql, token, CHAINING))
    };
    match statements.split_last() {
        Some(((_, last), before))
            if resetting(last)
                && !before
                    .iter()
                    .any(|(_, words)| resetting(words) || opens_block(words)) =>
        {
            Reset::Last {
                discard: is_word(sql, last[0], "discard"),
            }
        }
        _ if statements.iter().any(|(_, words)| resetting(words)) => Reset::AmongOthers,
        _ => Reset::None,
    }
}

/// Whether `sql` is `SET` or `RESET viewgate.version`, which moves the server's version
/// whether or not a migration is live (one may start later).
pub fn commands_version(sql: &str) -> bool {
    matches!(
        version_command::parse(sql),
        Some(VersionCommand::Set(_) | VersionCommand::Reset)
    )
}

/// Where a statement that moves the server's version would be sent.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    /// Through a Parse.
    pub parse: bool,
    /// With nothing in flight and outside a transaction block.
    pub quiet: bool,
    /// While a migration is live.
    pub live: bool,
    /// The server's startup value of `viewgate.version` is not the session's version now
    /// (the session moved since it connected): a reset would put the server there.
    pub default_is_other: bool,
}

/// Why `reset` may not be sent now at `version`: a Parse of `RESET ALL` never; while a
/// migration is live, not among other statements, not a version command through a Parse,
/// not while earlier work is in flight or a transaction block is open, and no `RESET` to a
/// startup value that is not the session's version. `None` when it may.
pub fn refusal(reset: Reset, at: Situation, version: &str) -> Option<Refusal> {
    // A Bind is never preceded by the tell: the statement it runs was rewritten at the
    // version the session had when it was parsed, which a tell of a newer one would belie
    // (and a tell, a simple Query, drops the unnamed statement). So nothing may put the
    // server back at a startup version the session has left while statements parsed since
    // survive: a Query of `DISCARD ALL` drops them all (the unnamed one too, as every Query
    // does), a Parse of it not the unnamed one (the seventeenth red-team pass ran one so).
    let resets_to_startup = match reset {
        Reset::Last { discard } => !discard || at.parse,
        Reset::VersionCommand { resets } => resets,
        _ => false,
    };
    let mut advice = "send it as a query of its own outside a transaction block";
    let why = match reset {
        Reset::None => return None,
        Reset::Last { discard: false } if at.parse => {
            return Some(Refusal::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "viewgate: RESET ALL through the extended protocol is refused at version \"{version}\": prepared, it could clear the version the server writes at inside a transaction block; send it as a simple query"
                ),
            ));
        }
        _ if !at.live => return None,
        Reset::AmongOthers => "among other statements",
        Reset::VersionCommand { .. } if at.parse => "through the extended protocol",
        _ if !at.quiet => "inside a transaction block or behind unanswered work",
        _ if resets_to_startup && at.default_is_other && !is_told_after(reset, at) => {
            advice = "reconnect instead, or SET viewgate.version";
            "in a session whose version changed since it connected (it would put the server back at the startup version)"
        }
        _ => return None,
    };
    Some(Refusal::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "viewgate: RESET ALL, DISCARD ALL or a SET or RESET of viewgate.version {why} is refused at version \"{version}\" while a migration is live: it moves the version the server writes at; {advice}"
        ),
    ))
}

/// Whether `reset`, sent now, is let through with the session's version told right after it
/// in the same Query (`SET viewgate.version` appended as its last statement): a `RESET ALL`
/// ending a Query, sent quiet while a migration is live, in a session whose version changed
/// since it connected. It would put the server back at the startup version, ahead of Binds
/// of statements parsed since, which no tell precedes; told in the same implicit
/// transaction, the server is at the session's version when the Query is answered, or the
/// whole Query (the reset with it) failed. This is how a pool's reset on release arrives
/// (asyncpg's `… UNLISTEN *; RESET ALL;`), and refused it raised from the release of a
/// connection whose work had committed (the async Python walk).
pub fn is_told_after(reset: Reset, at: Situation) -> bool {
    reset == (Reset::Last { discard: false })
        && !at.parse
        && at.live
        && at.quiet
        && at.default_is_other
}

/// For a statement sent while the server may hold another version than the session's and an
/// extended-protocol batch is open, so that the proxy cannot tell it first.
pub fn untold(version: &str) -> Refusal {
    Refusal::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "viewgate: a statement sent inside an unfinished extended-protocol batch is refused at version \"{version}\" while a migration is live and the server may hold another version: send Sync first, and viewgate tells the server the session's version ahead of the next statement"
        ),
    )
}

/// For a statement sent after one of those and before its answer, while a migration is live.
pub fn behind_reset(version: &str) -> Refusal {
    Refusal::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "viewgate: a statement sent behind an unanswered RESET ALL, DISCARD ALL or SET or RESET of viewgate.version is refused at version \"{version}\" while a migration is live: the server's version is told again only after its answer; wait for it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_reset_last_or_among_others() {
        let mut tokens = Vec::new();
        for (sql, expected) in [
            ("SELECT reset_password(1)", Reset::None),
            ("RESET search_path", Reset::None),
            ("SELECT 'reset all'", Reset::None),
            ("RESET ALL", Reset::Last { discard: false }),
            (" reset  all ; ", Reset::Last { discard: false }),
            ("/* pool */ DISCARD ALL", Reset::Last { discard: true }),
            (
                "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
                Reset::Last { discard: false },
            ),
            ("BEGIN; RESET ALL", Reset::AmongOthers),
            ("start transaction; SELECT 1; RESET ALL", Reset::AmongOthers),
            ("COMMIT AND CHAIN; RESET ALL", Reset::AmongOthers),
            ("RESET ALL; RESET ALL", Reset::AmongOthers),
            ("RESET ALL; INSERT INTO t VALUES (1)", Reset::AmongOthers),
            ("SELECT $$ RESET ALL", Reset::AmongOthers),
            (
                "SET viewgate.version = v2",
                Reset::VersionCommand { resets: false },
            ),
            (
                "set viewgate.version to default;",
                Reset::VersionCommand { resets: true },
            ),
            (
                "RESET viewgate.version",
                Reset::VersionCommand { resets: true },
            ),
            ("SHOW viewgate.version", Reset::None),
        ] {
            assert_eq!(
                resets(sql, Words::in_text(sql.as_bytes()), &mut tokens),
                expected,
                "{sql}"
            );
        }
    }

    #[test]
    fn only_a_lone_reset_at_a_quiet_boundary_may_run_during_a_migration() {
        let reset_all = Reset::Last { discard: false };
        let discard_all = Reset::Last { discard: true };
        let set = Reset::VersionCommand { resets: false };
        let reset = Reset::VersionCommand { resets: true };
        let at = |parse, quiet, live, default_is_other| Situation {
            parse,
            quiet,
            live,
            default_is_other,
        };
        for (statement, situation) in [
            (reset_all, at(false, true, true, false)),
            (discard_all, at(true, true, true, false)),
            (set, at(false, true, true, true)),
            (reset, at(false, true, true, false)),
            (discard_all, at(false, true, true, true)),
            (discard_all, at(true, true, true, false)),
            (set, at(true, false, false, true)),
            (Reset::None, at(true, false, true, true)),
            (Reset::AmongOthers, at(false, false, false, false)),
            // Told the session's version after it, in the same Query.
            (reset_all, at(false, true, true, true)),
        ] {
            assert!(
                refusal(statement, situation, "v1").is_none(),
                "{statement:?}"
            );
        }
        assert!(is_told_after(reset_all, at(false, true, true, true)));
        for (statement, situation) in [
            (reset_all, at(false, true, true, false)),
            (reset_all, at(true, true, true, true)),
            (reset_all, at(false, true, false, true)),
            (reset, at(false, true, true, true)),
            (discard_all, at(false, true, true, true)),
        ] {
            assert!(!is_told_after(statement, situation), "{statement:?}");
        }
        for (statement, situation) in [
            (reset_all, at(false, false, true, false)),
            (discard_all, at(true, false, true, false)),
            (set, at(false, false, true, false)),
            (set, at(true, true, true, false)),
            (Reset::AmongOthers, at(false, true, true, false)),
            (reset, at(false, true, true, true)),
            (discard_all, at(true, true, true, true)),
        ] {
            let refused = refusal(statement, situation, "v1").expect("refused");
            assert_eq!(refused.code, SqlState::FEATURE_NOT_SUPPORTED);
            assert!(refused.message.contains("while a migration is live"));
        }
        let prepared = refusal(reset_all, at(true, true, false, false), "v1").expect("refused");
        assert!(prepared.message.contains("extended protocol"));
    }
}
