//! A Query ending in `RESET ALL` that went upstream with the session's version told after it,
//! as its last statement (`version_guard.rs`): the tell's CommandComplete follows the reset's
//! and is the proxy's own, which `own_answers.rs` drops; an error ends the Query first, and
//! its ReadyForQuery, the client's, forgets it.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::protocol::backend;

/// Where a Query with a tell appended after its `RESET ALL` stands.
#[derive(Debug, Default)]
pub(super) struct TellAfterReset(AtomicU8);

/// No such Query is unanswered.
const NONE: u8 = 0;
/// Sent: the reset's CommandComplete is still to come.
const AWAITING_RESET: u8 = 1;
/// The reset was answered: the next `SET` CommandComplete is the tell's.
const AWAITING_TELL: u8 = 2;

/// The command tags of the reset and of the tell.
const RESET_TAG: &str = "RESET";
const TELL_TAG: &str = "SET";

impl TellAfterReset {
    /// A Query ending in `RESET ALL` goes upstream with the tell appended.
    pub(super) fn sent(&self) {
        self.0.store(AWAITING_RESET, Ordering::Relaxed);
    }

    /// Whether [`Self::sent`] was called for the message being routed now.
    pub(super) fn is_sent(&self) -> bool {
        self.0.load(Ordering::Relaxed) == AWAITING_RESET
    }

    /// Whether `frame`, a CommandComplete, is the tell's answer, which is then dropped. An
    /// error ends the Query first: no tell is answered, and its ReadyForQuery forgets it.
    pub(super) fn answers_the_tell(&self, tag: u8, frame: &[u8]) -> bool {
        let state = self.0.load(Ordering::Relaxed);
        if state == NONE {
            return false;
        }
        match tag {
            backend::READY_FOR_QUERY => self.0.store(NONE, Ordering::Relaxed),
            backend::COMMAND_COMPLETE => {
                if state == AWAITING_RESET && backend::command_tag_is(frame, RESET_TAG) {
                    self.0.store(AWAITING_TELL, Ordering::Relaxed);
                } else if state == AWAITING_TELL && backend::command_tag_is(frame, TELL_TAG) {
                    self.0.store(NONE, Ordering::Relaxed);
                    return true;
                }
            }
            _ => {}
        }
        false
    }
}
