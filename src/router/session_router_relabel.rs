//! What a session is counted at between its statements. Its version is picked again at its
//! next statement, so a session that sends none (a LISTEN connection waiting for
//! notifications, a pool's spare connection, a driver binding only statements it cached) would
//! be counted at the version it last ran at for as long as it stays quiet, and `status`, the
//! heartbeat and `migrate complete` would see it there. These say what such a session's next
//! statement will run at, without sending anything: the upstream is told the version ahead
//! of that statement, as always.

use super::SessionRouter;
use crate::router::rules::Assignment;

impl SessionRouter {
    /// At a quiet Bind, of a session that may only bind what it prepared (pgx's and lib/pq's
    /// cached statements): the reason it keeps its version picked again, `held` where the
    /// routing now gives another that a statement it prepared holds it away from, as
    /// [`SessionRouter::refresh`] would. Before, such a session was counted as routed by
    /// `default` at the old version after a cutover, and the operator waiting for `migrate
    /// complete` could not tell why it stayed. Its version itself moves only at its next Query
    /// or Parse, ahead of which the upstream can be told it. Whether the reason changed: a Bind
    /// under the same routing state costs one generation comparison.
    pub fn relabel(&mut self) -> bool {
        let state = self.routing.load();
        if self.relabelled_under == Some(state.generation()) {
            return false;
        }
        self.relabelled_under = Some(state.generation());
        let next = self.resolve(&state);
        let Some(held) = self.held(&state, next.as_ref()) else {
            return false;
        };
        let changed = self.assignment.as_ref().map(|a| a.reason) != Some(held.reason);
        self.assignment = Some(held);
        changed
    }

    /// Whether the session picked its version under the routing state in effect now.
    pub fn follows_current_routing(&self) -> bool {
        self.resolved_under == Some(self.routing.load().generation())
    }

    /// What the session's next statement at a transaction boundary will run at, under the
    /// routing state in effect now, and why (`held` where a statement it prepared holds it):
    /// what a session that sends none is counted at. Nothing changes until that statement,
    /// ahead of which the upstream is told the version: a version moved now could not be
    /// told where the next message opens a batch (a Close, then a Query inside the batch).
    pub fn upcoming(&self) -> Option<Assignment> {
        let state = self.routing.load();
        let next = self.resolve(&state);
        self.held(&state, next.as_ref()).or(next)
    }
}
