//! A session's place between transaction boundaries, as both pumps see it: messages owed a
//! ReadyForQuery, the transaction status, an open extended-protocol batch, and whether the
//! session counts as busy at the pause gate. Decides when a session is idle (its version may
//! change) and quiet (it may be held or moved to another upstream).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use crate::protocol::backend::TransactionStatus;
use crate::protocol::frontend;
use crate::proxy::pause::PauseGate;

/// What both pumps read and write. Atomics because the session future must be `Send`; both
/// pumps run in one task, so `Relaxed` suffices.
#[derive(Default)]
pub(super) struct Progress {
    /// Messages sent upstream that are still owed a ReadyForQuery.
    pub(super) awaiting_ready: AtomicU32,
    pub(super) transaction: AtomicU8,
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
}

impl Progress {
    /// At a transaction boundary: the last ReadyForQuery said idle and nothing sent since is
    /// still in flight. A pipelined BEGIN has not been answered yet, so what follows it is not
    /// at a boundary even though the last status says idle.
    pub(super) fn idle(&self) -> bool {
        self.transaction.load(Ordering::Relaxed) == TransactionStatus::Idle as u8
            && self.awaiting_ready.load(Ordering::Relaxed) == 0
            && !self.unsynced.load(Ordering::Relaxed)
    }

    /// At a boundary where the pause gate may hold the session or move it to another
    /// upstream: idle, and no extended-protocol batch left open.
    pub(super) fn quiet(&self) -> bool {
        self.idle() && !self.open_batch.load(Ordering::Relaxed)
    }

    /// Accounts for a client message on its way upstream.
    pub(super) fn sent(&self, tag: u8) {
        match tag {
            frontend::QUERY | frontend::FUNCTION_CALL => {
                self.awaiting_ready.fetch_add(1, Ordering::Relaxed);
            }
            frontend::SYNC => {
                self.awaiting_ready.fetch_add(1, Ordering::Relaxed);
                self.unsynced.store(false, Ordering::Relaxed);
                self.open_batch.store(false, Ordering::Relaxed);
            }
            // Parse, Bind and Describe run nothing (asyncpg prepares with Parse, Describe and
            // Flush, and no Sync); an Execute does.
            frontend::EXECUTE => {
                self.unsynced.store(true, Ordering::Relaxed);
                self.open_batch.store(true, Ordering::Relaxed);
            }
            frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE => {
                self.open_batch.store(true, Ordering::Relaxed)
            }
            _ => {}
        }
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
