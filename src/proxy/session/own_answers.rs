//! Answers to what the proxy sent upstream on the session's behalf, which the client must not
//! see: a tell of the session's version put ahead of a client's message, or one appended to a
//! Query that resets every setting (`version_guard.rs`), and statements prepared again. A tell
//! ahead is answered before the client's own answers, so its CommandComplete and
//! ReadyForQuery come first and are dropped whole; a tell appended is the last statement of
//! the client's Query, so only its CommandComplete is dropped, after the reset's, and the
//! Query's ReadyForQuery is the client's.

use std::sync::atomic::Ordering;

use bytes::BytesMut;

use super::progress::Progress;
use crate::protocol::backend;
use crate::proxy::pump::Inspection;

/// What becomes of an upstream message that answers the proxy's own statements: `None` for
/// one the client is to see as it is.
pub(super) fn own_answer(progress: &Progress, tag: u8, frame: &[u8]) -> Option<Inspection> {
    if progress.own_statements.load(Ordering::Relaxed) > 0 {
        return Some(drop_own_answer(progress, tag, frame));
    }
    (progress.tell_after_reset.answers_the_tell(tag, frame))
        .then(|| Inspection::Replace(BytesMut::new()))
}

/// The answer to a statement the proxy sent itself ahead of the client's: dropped, up to and
/// including its ReadyForQuery. Asynchronous messages (notices, notifications, parameter
/// changes) pass.
fn drop_own_answer(progress: &Progress, tag: u8, frame: &[u8]) -> Inspection {
    match tag {
        backend::COMMAND_COMPLETE | backend::PARSE_COMPLETE | backend::CLOSE_COMPLETE => {
            Inspection::Replace(BytesMut::new())
        }
        backend::READY_FOR_QUERY => {
            progress.own_statements.fetch_sub(1, Ordering::Relaxed);
            Inspection::Replace(BytesMut::new())
        }
        backend::ERROR_RESPONSE => {
            progress.own_failed.store(true, Ordering::Relaxed);
            let code = backend::error_fields(frame).map(|fields| fields.code);
            tracing::warn!(
                ?code,
                "Postgres refused a statement the proxy sent on the session's behalf (its version setting, or a prepared statement prepared again)"
            );
            Inspection::Replace(BytesMut::new())
        }
        _ => Inspection::Continue,
    }
}
