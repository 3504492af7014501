//! A session's place between transaction boundaries, as both pumps see it: messages owed a
//! ReadyForQuery, the transaction status, an open extended-protocol batch, and whether the
//! session counts as busy at the pause gate. Decides when a session is idle (its version may
//! change) and quiet (it may be held or moved to another upstream).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use super::error_position::SentTexts;
use super::tell_after_reset::TellAfterReset;
use crate::protocol::backend::TransactionStatus;
use crate::protocol::frontend;
use crate::proxy::pause::PauseGate;
use crate::rewriter::VersionTargets;
use crate::router::ConformingStrings;
use crate::router::prepared::{Answer, Answers, MAX_PENDING_RELEASES};

/// What both pumps read and write. Atomics because the session future must be `Send`; both
/// pumps run in one task, so `Relaxed` suffices.
#[derive(Default)]
pub(super) struct Progress {
    /// Messages sent upstream that are still owed a ReadyForQuery.
    pub(super) awaiting_ready: AtomicU32,
    /// Shared with the session's card (`proxy::stats::session_cards`), which lists it.
    pub(super) transaction: Arc<AtomicU8>,
    /// The upstream sent a FATAL error: the client knows why the session is ending.
    pub(super) upstream_fatal: AtomicBool,
    /// An Execute was sent since the last Sync: work runs that only the Sync will end.
    pub(super) unsynced: AtomicBool,
    /// An extended-protocol message (Parse, Bind, Describe, Execute, Close) was sent since the
    /// last Sync: the batch is open, and its unnamed statement or portal would not survive a
    /// move to another upstream.
    pub(super) open_batch: AtomicBool,
    /// The session counts as busy at the pause gate (entered, not yet left).
    pub(super) busy: AtomicBool,
    /// Statements the proxy sent upstream on its own (telling Postgres the session's version)
    /// whose answers, up to their ReadyForQuery, the client must not see.
    pub(super) own_statements: AtomicU32,
    /// A Query ending in `RESET ALL` went with the version told after it (`own_answers`).
    pub(super) tell_after_reset: TellAfterReset,
    /// One of those statements failed since the proxy last sent the version: the server's
    /// `viewgate.version` may not be what the proxy told it.
    pub(super) own_failed: AtomicBool,
    /// Whether a COMMIT ([`END_COMMIT`]) or ROLLBACK ([`END_ROLLBACK`]) was answered since the
    /// last ReadyForQuery (0: neither), for the next one to judge how a block ended.
    pub(super) last_end: AtomicU8,
    /// Messages sent that a ReadyForQuery answers (Query, Sync, FunctionCall), and
    /// ReadyForQuery messages received, since the session began: batch `n` (from 0) is
    /// answered when `batches_answered` passes `n`.
    pub(super) batches_sent: AtomicU64,
    pub(super) batches_answered: AtomicU64,
    /// The batch of the oldest `SET viewgate.version` whose fate Postgres has not told yet
    /// ([`NO_BATCH`]: none): answered outside a block it stands unless its batch failed (an
    /// implicit transaction, rolled back whole); inside one, it stands only if the block
    /// commits.
    pub(super) unsettled_set: AtomicU64,
    /// That SET's fate, once known: [`SET_KEPT`], [`SET_UNDONE`], or 0 (not yet).
    pub(super) set_verdict: AtomicU8,
    /// Postgres reported an error while answering the unsettled SET's batch: run outside a
    /// block, the batch was one implicit transaction, rolled back whole (the SET with it, or
    /// skipped after the error).
    pub(super) unsettled_failed: AtomicBool,
    /// Queries and Parses viewgate refused, oldest first: the batch each belongs to and the ErrorResponse
    /// the client gets in place of Postgres's answer to `REFUSED_STATEMENT`. A Mutex, touched
    /// only when `refusals_waiting` says there is one; entries whose batch was answered
    /// without their error (an earlier error skipped the Parse) are dropped.
    pub(super) refusals: Mutex<VecDeque<(u64, BytesMut)>>,
    pub(super) refusals_waiting: AtomicU32,
    /// Syncs sent since the last Query or Execute, up to a CopyDone or CopyFail: if that
    /// Query or Execute turns out to be a `COPY … FROM STDIN`, Postgres reads them inside
    /// the COPY and ignores them (libpq and tokio-postgres send one right behind the
    /// Execute), so they are owed no ReadyForQuery ([`Progress::copy_in_started`]).
    syncs_behind_start: AtomicU64,
    /// A CopyDone or CopyFail was sent since the last Query or Execute.
    copy_end_sent: AtomicBool,
    /// Postgres is in COPY FROM STDIN (CopyInResponse seen) and the client has not ended it:
    /// a Sync or Flush now is ignored, and any other message ends the COPY with an error,
    /// consumed without an answer of its own.
    copy_in: AtomicBool,
    /// The batch of the last `RESET ALL` or `DISCARD ALL` let through while a migration is
    /// live ([`NO_BATCH`]: none), which statements may not follow until it is answered
    /// (`router::server_version`).
    reset_batch: AtomicU64,
    /// ErrorResponses from Postgres (the proxy's own statements' answers aside), and their
    /// number at the last ReadyForQuery whose status was not failed ([`Progress::errors`]).
    pub(super) errors: AtomicU64,
    pub(super) errors_settled: AtomicU64,
    /// The targets of the version the session last ran a statement at (`None`: unversioned),
    /// for what a constraint violation's detail may show it (`rewriter::error_detail`).
    version_targets: Mutex<Option<Arc<VersionTargets>>>,
    /// The address of `version_targets`' value (0 for none): a statement routed at the same
    /// targets takes no lock.
    version_targets_at: AtomicUsize,
    /// The batch of each answer to a client's release (CloseComplete, and the command tags of
    /// `DEALLOCATE`, `CLOSE`, `DISCARD`) or SQL `PREPARE` since the last quiet boundary: a
    /// release holds nothing back any more, and a `PREPARE` holds, only once answered
    /// (`router::prepared`). Touched only for those answers, which are rare.
    release_answers: Mutex<Vec<(u64, Answer)>>,
    /// Each batch Postgres refused a message of since the last quiet boundary, with how many
    /// of its Parses it had answered: the batch's later Parses made no statement, and hold
    /// nothing (`router::prepared`). Touched only on errors.
    failed_batches: Mutex<Vec<(u64, u32)>>,
    /// `release_answers` or `failed_batches` is not empty: most quiet boundaries take no lock.
    releases_answered: AtomicBool,
    /// The session's client_encoding is not UTF8 (from ParameterStatus): only pure-ASCII
    /// text, which reads the same in every encoding Postgres supports, can be rewritten.
    pub(super) foreign_encoding: AtomicBool,
    /// The session's standard_conforming_strings is off (from ParameterStatus): Postgres
    /// reads `\'` inside `'…'` as an escaped quote, which viewgate's lexers do not.
    pub(super) nonstandard_strings: AtomicBool,
    /// The texts of the rewritten statements not yet answered, for an error's position.
    pub(super) sent_texts: SentTexts,
}

/// `unsettled_set` when no SET waits for its fate.
pub(super) const NO_BATCH: u64 = u64::MAX;
/// The SET stands (it committed).
const SET_KEPT: u8 = 1;
/// The SET was rolled back with its block.
const SET_UNDONE: u8 = 2;

/// The last statement committed its block (`last_end`, `block_ended`).
pub(super) const END_COMMIT: u8 = 1;
/// The last statement rolled its block back, or failed.
pub(super) const END_ROLLBACK: u8 = 2;

impl Progress {
    /// A fresh session's progress: idle, nothing sent, no SET waiting for its fate.
    pub(super) fn new() -> Self {
        Progress {
            unsettled_set: AtomicU64::new(NO_BATCH),
            reset_batch: AtomicU64::new(NO_BATCH),
            ..Progress::default()
        }
    }

    /// Called for each ReadyForQuery the client sees: records the status and, once the
    /// batch of an unsettled SET is answered and the session is idle again, its fate: kept if
    /// it ran outside a block or its block committed, undone if the block rolled back.
    pub(super) fn ready(&self, status: TransactionStatus) {
        let previous = self.transaction.swap(status as u8, Ordering::Relaxed);
        if status != TransactionStatus::Failed {
            self.errors_settled
                .store(self.errors.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let end = self.last_end.swap(0, Ordering::Relaxed);
        let answered = self.batches_answered.fetch_add(1, Ordering::Relaxed) + 1;
        self.sent_texts.batch_answered(answered);
        if self.refusals_waiting.load(Ordering::Relaxed) > 0 {
            self.with_refusals(|refusals| {
                while refusals.front().is_some_and(|(batch, _)| *batch < answered) {
                    refusals.pop_front();
                }
            });
        }
        let unsettled = self.unsettled_set.load(Ordering::Relaxed);
        if unsettled == NO_BATCH || answered <= unsettled || status != TransactionStatus::Idle {
            return;
        }
        let was_in_block = previous == TransactionStatus::InTransaction as u8
            || previous == TransactionStatus::Failed as u8;
        let failed = self.unsettled_failed.swap(false, Ordering::Relaxed);
        let kept = match was_in_block {
            true => end == END_COMMIT,
            false => !failed,
        };
        self.set_verdict
            .store(if kept { SET_KEPT } else { SET_UNDONE }, Ordering::Relaxed);
        self.unsettled_set.store(NO_BATCH, Ordering::Relaxed);
    }

    /// A `SET viewgate.version` was just routed in a message of kind `tag` (already counted
    /// by [`Progress::sent`]): its fate is told by the ReadyForQuery that answers it (a
    /// Query's own, a Parse's next Sync's).
    pub(super) fn set_sent(&self, tag: u8) {
        let sent = self.batches_sent.load(Ordering::Relaxed);
        let batch = if tag == frontend::QUERY {
            sent.saturating_sub(1)
        } else {
            sent
        };
        let fresh = self.unsettled_set.compare_exchange(
            NO_BATCH,
            batch,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if fresh.is_ok() {
            self.unsettled_failed.store(false, Ordering::Relaxed);
        }
    }

    /// The session's statement was just routed at `targets`' version (`None`: unversioned).
    pub(super) fn note_version(&self, targets: Option<&Arc<VersionTargets>>) {
        let at = targets.map_or(0, |targets| Arc::as_ptr(targets) as usize);
        // The slot holds the Arc, so no other live targets can have its address.
        if self.version_targets_at.swap(at, Ordering::Relaxed) != at
            && let Ok(mut slot) = self.version_targets.lock()
        {
            *slot = targets.cloned();
        }
    }

    /// The targets of the version the session last ran at, if it is versioned.
    pub(super) fn version_targets(&self) -> Option<Arc<VersionTargets>> {
        self.version_targets.lock().ok()?.clone()
    }

    /// Postgres sent an ErrorResponse (not to one of the proxy's own statements): counted,
    /// and noted against the unsettled SET if it answers the SET's batch.
    pub(super) fn upstream_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let batch = self.batches_answered.load(Ordering::Relaxed);
        let unsettled = self.unsettled_set.load(Ordering::Relaxed);
        if unsettled != NO_BATCH && batch == unsettled {
            self.unsettled_failed.store(true, Ordering::Relaxed);
        }
        let parses = self.sent_texts.parses_answered_now();
        let mut failed = self
            .failed_batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Postgres skips the rest of a batch after its first error: one entry a batch.
        if failed.len() < MAX_PENDING_RELEASES && failed.last().is_none_or(|&(b, _)| b != batch) {
            failed.push((batch, parses));
        }
        drop(failed);
        self.releases_answered.store(true, Ordering::Release);
    }

    /// A Query or Parse was refused and replaced by `REFUSED_STATEMENT`: `error` goes to the client in
    /// place of Postgres's answer (its batch ends at the next Sync).
    pub(super) fn statement_refused(&self, error: BytesMut) {
        let batch = self.batches_sent.load(Ordering::Relaxed);
        self.with_refusals(|refusals| refusals.push_back((batch, error)));
    }

    /// The client's ErrorResponse for an upstream error answering a refused Parse, if it is
    /// one (`refused`: the error is Postgres's answer to `REFUSED_STATEMENT`).
    pub(super) fn refusal_answered(&self, refused: impl FnOnce() -> bool) -> Option<BytesMut> {
        if self.refusals_waiting.load(Ordering::Relaxed) == 0 || !refused() {
            return None;
        }
        let mut answer = None;
        self.with_refusals(|refusals| answer = refusals.pop_front().map(|(_, error)| error));
        answer
    }

    fn with_refusals(&self, change: impl FnOnce(&mut VecDeque<(u64, BytesMut)>)) {
        // A poisoned lock only means another pump panicked mid-change; the queue is still a
        // queue.
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut refusals);
        self.refusals_waiting.store(
            u32::try_from(refusals.len()).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }

    /// The fate of the unsettled SET, once known: `Some(true)` if it stands.
    pub(super) fn take_set_verdict(&self) -> Option<bool> {
        match self.set_verdict.swap(0, Ordering::Relaxed) {
            0 => None,
            verdict => Some(verdict == SET_KEPT),
        }
    }

    /// The Query just counted ([`Progress::sent`]) resets every setting, or the Parse just
    /// sent (`parse`) does, in the batch its next Sync ends.
    pub(super) fn reset_sent(&self, parse: bool) {
        let sent = self.batches_sent.load(Ordering::Relaxed);
        let batch = if parse { sent } else { sent.saturating_sub(1) };
        self.reset_batch.store(batch, Ordering::Relaxed);
    }

    /// A reset noted by [`Progress::reset_sent`] is not answered yet.
    pub(super) fn reset_unanswered(&self) -> bool {
        let batch = self.reset_batch.load(Ordering::Relaxed);
        batch != NO_BATCH && self.batches_answered.load(Ordering::Relaxed) <= batch
    }

    /// At a transaction boundary: the last ReadyForQuery said idle and nothing sent since is
    /// still in flight. A pipelined BEGIN has not been answered yet, so what follows it is not
    /// at a boundary even though the last status says idle.
    pub(super) fn idle(&self) -> bool {
        self.transaction.load(Ordering::Relaxed) == TransactionStatus::Idle as u8
            && self.awaiting_ready.load(Ordering::Relaxed) == 0
            && !self.unsynced.load(Ordering::Relaxed)
    }

    /// How many errors Postgres reported, and how many of them a ReadyForQuery that said the
    /// session is not in a failed block has since put behind it: while more were reported,
    /// the block may be failed (the client may have seen the error before its
    /// ReadyForQuery arrived).
    pub(super) fn errors(&self) -> (u64, u64) {
        (
            self.errors.load(Ordering::Relaxed),
            self.errors_settled.load(Ordering::Relaxed),
        )
    }

    /// How Postgres will read a backslash in the `'…'` literals of the statement about to be
    /// sent: as the session follows standard_conforming_strings, unless work sent before it
    /// is still unanswered: that work may change the setting, and Postgres reports a change
    /// (ParameterStatus) only before the ReadyForQuery answering it. Call before the statement
    /// itself is counted ([`Progress::sent`]).
    pub(super) fn conforming_strings(&self) -> ConformingStrings {
        if self.nonstandard_strings.load(Ordering::Relaxed) {
            ConformingStrings::Off
        } else if self.awaiting_ready.load(Ordering::Relaxed) > 0
            || self.unsynced.load(Ordering::Relaxed)
        {
            ConformingStrings::Pending
        } else {
            ConformingStrings::On
        }
    }

    /// Postgres answered a release of the client's, in the batch it is answering now.
    pub(super) fn release_answered(&self, answer: Answer) {
        let batch = self.batches_answered.load(Ordering::Relaxed);
        let mut answers = self
            .release_answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Past the router's limit its releases are not followed: fewer answers only confirm
        // fewer of those it did follow.
        if answers.len() < MAX_PENDING_RELEASES {
            answers.push((batch, answer));
        }
        drop(answers);
        self.releases_answered.store(true, Ordering::Release);
    }

    /// The batches of the release answers and of the failed batches since the last call.
    pub(super) fn take_release_answers(&self) -> Answers {
        // A load first: the common boundary has nothing, and a swap would write the line.
        if !self.releases_answered.load(Ordering::Relaxed)
            || !self.releases_answered.swap(false, Ordering::Acquire)
        {
            return Answers::default();
        }
        fn take<T>(answers: &Mutex<Vec<T>>) -> Vec<T> {
            std::mem::take(
                &mut *answers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
        }
        Answers {
            releases: take(&self.release_answers),
            failed_batches: take(&self.failed_batches),
        }
    }

    /// At a boundary where the pause gate may hold the session or move it to another
    /// upstream: idle, and no extended-protocol batch left open.
    pub(super) fn quiet(&self) -> bool {
        self.idle() && !self.open_batch.load(Ordering::Relaxed)
    }

    /// Accounts for a client message on its way upstream.
    pub(super) fn sent(&self, tag: u8) {
        if self.copy_in.load(Ordering::Relaxed) {
            match tag {
                // Ignored inside a COPY; CopyData is its own.
                frontend::SYNC | frontend::FLUSH | frontend::COPY_DATA => return,
                frontend::COPY_DONE | frontend::COPY_FAIL => {}
                // Ends the COPY with an error, and is consumed by it.
                _ => {
                    self.copy_in.store(false, Ordering::Relaxed);
                    return;
                }
            }
        }
        match tag {
            frontend::QUERY | frontend::FUNCTION_CALL => {
                self.awaiting_ready.fetch_add(1, Ordering::Relaxed);
                self.batches_sent.fetch_add(1, Ordering::Relaxed);
                self.behind_new_start();
                if tag == frontend::QUERY {
                    // A simple Query ends the implicit transaction an unsynced batch began
                    // (and drops the unnamed statement) as a Sync does: asyncpg prepares
                    // with Parse, Describe and Flush, then may send a Query.
                    self.unsynced.store(false, Ordering::Relaxed);
                    self.open_batch.store(false, Ordering::Relaxed);
                }
            }
            frontend::SYNC => {
                self.awaiting_ready.fetch_add(1, Ordering::Relaxed);
                self.batches_sent.fetch_add(1, Ordering::Relaxed);
                self.unsynced.store(false, Ordering::Relaxed);
                self.open_batch.store(false, Ordering::Relaxed);
                if !self.copy_end_sent.load(Ordering::Relaxed) {
                    self.syncs_behind_start.fetch_add(1, Ordering::Relaxed);
                }
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                self.copy_in.store(false, Ordering::Relaxed);
                self.copy_end_sent.store(true, Ordering::Relaxed);
            }
            // Parse, Bind and Describe run nothing (asyncpg prepares with Parse, Describe and
            // Flush, and no Sync); an Execute does.
            frontend::EXECUTE => {
                self.unsynced.store(true, Ordering::Relaxed);
                self.open_batch.store(true, Ordering::Relaxed);
                self.behind_new_start();
            }
            frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE => {
                self.open_batch.store(true, Ordering::Relaxed)
            }
            _ => {}
        }
    }

    /// A Query, FunctionCall or Execute was sent: what follows it is behind it.
    fn behind_new_start(&self) {
        self.syncs_behind_start.store(0, Ordering::Relaxed);
        self.copy_end_sent.store(false, Ordering::Relaxed);
    }

    /// Postgres answered the last Query or Execute with CopyInResponse: the Syncs sent behind
    /// it before the client's CopyDone or CopyFail were read inside the COPY and ignored, so
    /// they are owed nothing; until the client ends the COPY, later ones are ignored too.
    pub(super) fn copy_in_started(&self) {
        let ignored = self.syncs_behind_start.swap(0, Ordering::Relaxed);
        let _ = self
            .awaiting_ready
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(ignored.try_into().unwrap_or(u32::MAX)))
            });
        let _ = self
            .batches_sent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(ignored))
            });
        self.copy_in.store(
            !self.copy_end_sent.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// Called for each client message before it is forwarded: the first message of new work
    /// enters the pause gate, or is held there. `false` means hold.
    pub(super) fn enter(&self, gate: &PauseGate, tag: u8) -> bool {
        if !starts_work(tag) || self.busy.load(Ordering::Relaxed) {
            return true;
        }
        if !gate.try_enter() {
            return false;
        }
        self.busy.store(true, Ordering::Relaxed);
        true
    }

    /// Called after each upstream message: leaves the gate at the boundary.
    pub(super) fn maybe_leave(&self, gate: &PauseGate) {
        if self.busy.load(Ordering::Relaxed) && self.quiet() {
            self.busy.store(false, Ordering::Relaxed);
            gate.leave();
        }
    }
}

/// Client messages that begin work when they arrive at a boundary. Flush and the COPY
/// messages do not (they only mean something inside work already counted); Terminate ends
/// the session and is never held.
fn starts_work(tag: u8) -> bool {
    !matches!(
        tag,
        frontend::FLUSH
            | frontend::COPY_DATA
            | frontend::COPY_DONE
            | frontend::COPY_FAIL
            | frontend::TERMINATE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `tag` as the client side does (counted first, then routed).
    fn send(progress: &Progress, tag: u8, sets_version: bool) {
        progress.sent(tag);
        if sets_version {
            progress.set_sent(tag);
        }
    }

    fn answer(progress: &Progress, end: Option<u8>, status: TransactionStatus) {
        if let Some(end) = end {
            progress.last_end.store(end, Ordering::Relaxed);
        }
        progress.ready(status);
    }

    #[test]
    fn a_set_outside_a_block_stands_at_its_own_ready_for_query() {
        let progress = Progress::new();
        send(&progress, frontend::QUERY, true);
        assert_eq!(progress.take_set_verdict(), None);
        answer(&progress, None, TransactionStatus::Idle);
        assert_eq!(progress.take_set_verdict(), Some(true));
        assert_eq!(progress.take_set_verdict(), None);
    }

    #[test]
    fn a_set_in_a_batch_that_fails_outside_a_block_is_undone() {
        let progress = Progress::new();
        send(&progress, frontend::QUERY, true); // SET …; SELECT 1/0
        progress.upstream_error();
        answer(&progress, None, TransactionStatus::Idle);
        assert_eq!(progress.take_set_verdict(), Some(false));
        // An error answering an earlier batch is not the SET's.
        send(&progress, frontend::QUERY, false); // SELECT 1/0
        send(&progress, frontend::QUERY, true); // SET, pipelined behind it
        progress.upstream_error();
        answer(&progress, None, TransactionStatus::Idle);
        answer(&progress, None, TransactionStatus::Idle);
        assert_eq!(progress.take_set_verdict(), Some(true));
    }

    #[test]
    fn a_set_in_a_block_follows_the_block() {
        for (end, kept) in [
            (Some(END_COMMIT), true),
            (Some(END_ROLLBACK), false),
            (None, false),
        ] {
            let progress = Progress::new();
            send(&progress, frontend::QUERY, false); // BEGIN
            answer(&progress, None, TransactionStatus::InTransaction);
            send(&progress, frontend::QUERY, true); // SET
            answer(&progress, None, TransactionStatus::InTransaction);
            assert_eq!(progress.take_set_verdict(), None, "the block is still open");
            send(&progress, frontend::QUERY, false); // COMMIT / ROLLBACK / a failing COMMIT
            answer(&progress, end, TransactionStatus::Idle);
            assert_eq!(progress.take_set_verdict(), Some(kept), "{end:?}");
        }
    }

    #[test]
    fn errors_are_settled_by_a_ready_for_query_that_is_not_failed() {
        let progress = Progress::new();
        progress.errors.fetch_add(1, Ordering::Relaxed);
        assert_eq!(progress.errors(), (1, 0), "seen before its ReadyForQuery");
        answer(&progress, None, TransactionStatus::Failed);
        assert_eq!(progress.errors(), (1, 0), "the block is failed");
        answer(&progress, None, TransactionStatus::InTransaction);
        assert_eq!(progress.errors(), (1, 1), "recovered");
    }

    #[test]
    fn strings_conform_only_as_followed_and_with_nothing_unanswered() {
        let progress = Progress::new();
        assert_eq!(progress.conforming_strings(), ConformingStrings::On);
        // A pipelined `SET standard_conforming_strings = off` is not answered yet.
        send(&progress, frontend::QUERY, false);
        assert_eq!(progress.conforming_strings(), ConformingStrings::Pending);
        progress.nonstandard_strings.store(true, Ordering::Relaxed); // its ParameterStatus
        progress.awaiting_ready.store(0, Ordering::Relaxed); // its ReadyForQuery
        answer(&progress, None, TransactionStatus::Idle);
        assert_eq!(progress.conforming_strings(), ConformingStrings::Off);
        progress.nonstandard_strings.store(false, Ordering::Relaxed);
        // An Execute runs before its Sync: what it runs may change the setting too.
        send(&progress, frontend::PARSE, false);
        assert_eq!(progress.conforming_strings(), ConformingStrings::On);
        send(&progress, frontend::EXECUTE, false);
        assert_eq!(progress.conforming_strings(), ConformingStrings::Pending);
    }

    #[test]
    fn a_parse_is_settled_by_the_next_sync_and_stale_refusals_are_dropped() {
        let progress = Progress::new();
        send(&progress, frontend::PARSE, true);
        progress.statement_refused(BytesMut::from(&b"refusal"[..]));
        send(&progress, frontend::SYNC, false);
        // An earlier error skipped the refused Parse: its refusal never answers anything.
        assert_eq!(progress.refusal_answered(|| false), None);
        answer(&progress, None, TransactionStatus::Idle);
        assert_eq!(progress.take_set_verdict(), Some(true));
        assert_eq!(progress.refusals_waiting.load(Ordering::Relaxed), 0);
        // A refusal answered in its batch replaces the error once.
        progress.statement_refused(BytesMut::from(&b"mine"[..]));
        send(&progress, frontend::SYNC, false);
        assert_eq!(
            progress.refusal_answered(|| true).as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(progress.refusal_answered(|| true), None);
    }

    /// A ReadyForQuery as the relay takes it: the status, and one answer fewer owed.
    fn ready_for_query(progress: &Progress) {
        progress.ready(TransactionStatus::Idle);
        let _ = progress
            .awaiting_ready
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Found by the fourteenth red-team pass, and what tokio-postgres's `copy_in` sends: the
    /// Sync behind a COPY's Execute is read inside the COPY and ignored, and so is one sent
    /// during it; counted, the session never looked idle again (pause and cutover waited).
    #[test]
    fn syncs_postgres_reads_inside_a_copy_are_owed_nothing() {
        let progress = Progress::new();
        for tag in [frontend::BIND, frontend::EXECUTE, frontend::SYNC] {
            progress.sent(tag);
        }
        progress.copy_in_started();
        for tag in [
            frontend::SYNC,
            frontend::FLUSH,
            frontend::COPY_DONE,
            frontend::SYNC,
        ] {
            progress.sent(tag);
        }
        assert!(!progress.idle());
        ready_for_query(&progress);
        assert!(progress.idle(), "one ReadyForQuery answers the COPY");

        // A simple-protocol COPY whose data, CopyDone and a Sync came before CopyInResponse:
        // the Sync after CopyDone is a real one.
        for tag in [frontend::QUERY, frontend::COPY_DONE, frontend::SYNC] {
            progress.sent(tag);
        }
        progress.copy_in_started();
        ready_for_query(&progress);
        assert!(!progress.idle());
        ready_for_query(&progress);
        assert!(progress.idle());

        // A Query sent inside a COPY ends it with an error and is consumed.
        progress.sent(frontend::QUERY);
        progress.copy_in_started();
        progress.sent(frontend::QUERY);
        ready_for_query(&progress);
        assert!(progress.idle());
    }
}
