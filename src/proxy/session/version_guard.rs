//! The session's side of `router::server_version`: the server's `viewgate.version` is what
//! migrations' sync triggers read to tell writers apart, so a statement that would move it
//! where the proxy cannot follow is refused, and the version is told ahead of a message
//! whenever the server may hold another than the one the session is now served at.

use std::sync::atomic::Ordering;

use super::progress::Progress;
use crate::protocol::frontend;
use crate::proxy::pump::Inspection;
use crate::router::server_version::{self, Reset};
use crate::router::statement::Statement;
use crate::router::version_setting::set_version_statement;
use crate::router::{Refusal, SessionRouter};

/// Why a versioned session's statement may not be sent because it moves the server's
/// `viewgate.version` (`router::server_version`): it is one where it may not run, or, while a
/// migration is live, it follows one not yet answered. One that may run then is noted as in
/// flight.
pub(super) fn reset_refusal(
    router: &SessionRouter,
    progress: &Progress,
    statement: Option<Statement<'_>>,
    tag: u8,
    quiet: bool,
    untellable: bool,
) -> Option<Refusal> {
    let version = router.version()?;
    let live = router.tracks_writers();
    if live && progress.reset_unanswered() {
        return Some(server_version::behind_reset(version));
    }
    // Where the version cannot be told ahead of it (a batch is open) and the server may hold
    // another (after a reset, or a move of the session).
    if live && untellable {
        return Some(server_version::untold(version));
    }
    let parse = tag == frontend::PARSE;
    let statement = statement?;
    let reset = server_version::resets(statement.sql, statement.words, &mut Vec::new());
    let situation = server_version::Situation {
        parse,
        quiet,
        live,
        default_is_other: router.server_default_is_other(),
    };
    let refusal = server_version::refusal(reset, situation, version);
    if live && refusal.is_none() && reset != Reset::None {
        progress.reset_sent(parse);
        if server_version::is_told_after(reset, situation) {
            progress.tell_after_reset.sent();
        }
    }
    refusal
}

/// Appends a setting of `viewgate.version` to a Query that ends in `RESET ALL`, where
/// `reset_refusal` let it through on that condition (`server_version::is_told_after`): the
/// reset puts the server back at the startup version, which the session has left.
fn tell_after_reset(router: &SessionRouter, frame: &[u8], inspection: Inspection) -> Inspection {
    let Some(version) = router.version() else {
        return inspection;
    };
    let message = match inspection {
        Inspection::Continue => frame,
        Inspection::Replace(ref replaced) => &replaced[..],
        other => return other,
    };
    // The text ends its last statement on a new line, after any comment it ends with.
    let Some(sql) = frontend::statement_bytes(frontend::QUERY, message)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
    else {
        return inspection;
    };
    let told = format!("{sql}\n;{}", set_version_statement(version));
    Inspection::Replace(frontend::query(&told))
}

/// Puts a setting of `viewgate.version` ahead of the message when the upstream session has another
/// version than the one now in effect: migrations' sync triggers tell writers apart by it.
/// Only at a quiet boundary (nothing in flight, no batch open), so the answer — CommandComplete
/// and ReadyForQuery — comes next and `inspect_upstream` drops it.
pub(super) fn tell_version(
    router: &SessionRouter,
    upstream_version: &mut Option<String>,
    progress: &Progress,
    frame: &[u8],
    inspection: Inspection,
) -> Inspection {
    let inspection = if progress.tell_after_reset.is_sent() {
        tell_after_reset(router, frame, inspection)
    } else {
        inspection
    };
    // A statement of the proxy's own failed (a tell among them): what the server holds is
    // not known, so it is told again.
    if progress.own_failed.swap(false, Ordering::Relaxed) {
        *upstream_version = None;
    }
    let Some(version) = router.version() else {
        return inspection;
    };
    if upstream_version.as_deref() == Some(version) {
        return inspection;
    }
    let message = match inspection {
        Inspection::Continue => frame,
        Inspection::Replace(ref replaced) => &replaced[..],
        other => return other,
    };
    // The name comes from the catalog: never pasted into SQL (see `version_setting`).
    let mut combined = frontend::query(&set_version_statement(version));
    combined.extend_from_slice(message);
    progress.own_statements.fetch_add(1, Ordering::Relaxed);
    *upstream_version = Some(version.to_owned());
    Inspection::Replace(combined)
}
