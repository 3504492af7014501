//! What a session that sends no statement is counted at. Its version is picked again only at
//! its next statement, so a session that stays quiet (a LISTEN connection waiting for
//! notifications: sqlx's `PgListener`, job queues; a pool's spare connection) was counted at
//! the version it last ran at after a cutover for as long as it lived, and `migrate complete`
//! was refused until the application restarted; and one that had sent nothing since its
//! startup was counted at no version, so a contract could retire the version it declared.
//! A session is counted at what its next statement will run at when it starts and at each
//! reload of the routing state (`SessionControl::FollowRouting`), where it stands at a
//! transaction boundary with nothing in flight; one busy at the reload is reminded each
//! second until it has picked again (one idle inside a transaction is counted where it runs
//! until the transaction ends). Nothing is sent: the upstream is told the version ahead of
//! the session's next statement, as always.

use std::time::Duration;

use super::Session;
use crate::proxy::switch::SessionControl;

/// How soon a session that was busy at a reload is asked again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

impl Session {
    /// At the session's start: counted at the version its first statement will run at. Its
    /// startup picked that version under the routing state in effect, so the check of
    /// [`Self::follow_routing`] would find nothing to do, and the session was counted at no
    /// version until the next reload: a contract could retire the version an idle pool
    /// connection had declared (the async Python walk: asyncpg's pool keeps spare connections
    /// that send nothing).
    pub(super) fn count_from_start(&mut self) {
        self.count_at_upcoming();
    }

    /// At a reload of the routing state: counted at what its next statement will run at,
    /// unless it already picked its version under that state.
    pub(super) fn follow_routing(&mut self) {
        let Some(router) = self.router.as_ref() else {
            return;
        };
        if router.follows_current_routing() {
            return;
        }
        self.count_at_upcoming();
    }

    fn count_at_upcoming(&mut self) {
        let Some(router) = self.router.as_mut() else {
            return;
        };
        if !self.progress.quiet() {
            self.registration
                .remind(BUSY_RETRY, SessionControl::FollowRouting);
            return;
        }
        // What its next Query would settle first: a SET's fate decides what it asked for.
        if let Some(kept) = self.progress.take_set_verdict() {
            router.set_settled(kept);
        }
        match router.upcoming() {
            Some(next) => self
                .ledger
                .attribute(self.account.assign(next.version(), next.reason)),
            None => self.account.release(),
        }
    }
}
