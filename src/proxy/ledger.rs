//! The requests a versioned session has sent and not yet seen answered, each with the moment it
//! was sent and the version it ran at, so answers are counted against the right version even
//! when a pipeline spans a version change.
//!
//! A request is whatever earns one ReadyForQuery: a Query, a Sync, a FunctionCall. The
//! client→upstream pump records them as they go out; the upstream→client pump settles them as
//! errors and ReadyForQuery come back. Both pumps run in one task, so the lock is never
//! contended; it exists because the session future must be `Send`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::proxy::stats::Attribution;

#[derive(Debug, Default)]
pub struct RequestLedger {
    inner: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    pending: VecDeque<Pending>,
    /// What requests sent now are counted against.
    current: Option<Arc<Attribution>>,
}

#[derive(Debug)]
struct Pending {
    sent: Instant,
    attribution: Option<Arc<Attribution>>,
    failed: bool,
}

impl RequestLedger {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Requests sent from now on run at `attribution`'s version.
    pub fn attribute(&self, attribution: &Arc<Attribution>) {
        let mut ledger = self.lock();
        let same = matches!(&ledger.current, Some(current) if Arc::ptr_eq(current, attribution));
        if !same {
            ledger.current = Some(attribution.clone());
        }
    }

    /// A request went upstream.
    pub fn sent(&self) {
        let mut ledger = self.lock();
        let attribution = ledger.current.clone();
        ledger.pending.push_back(Pending {
            sent: Instant::now(),
            attribution,
            failed: false,
        });
    }

    /// An ErrorResponse came back: it belongs to the oldest unanswered request, or, when none
    /// is pending (an error before the Sync was sent), to the session's version.
    pub fn error(&self, code: &str) {
        let mut ledger = self.lock();
        let Ledger { pending, current } = &mut *ledger;
        let attribution = match pending.front_mut() {
            Some(request) => {
                request.failed = true;
                request.attribution.as_ref()
            }
            None => current.as_ref(),
        };
        if let Some(attribution) = attribution {
            attribution.failed(code);
        }
    }

    /// A ReadyForQuery came back: the oldest request is done.
    pub fn ready(&self) {
        let request = self.lock().pending.pop_front();
        if let Some(Pending {
            sent,
            attribution: Some(attribution),
            failed,
        }) = request
        {
            attribution.finished(sent.elapsed(), failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::{SessionAccount, Telemetry};
    use crate::router::Reason;

    #[test]
    fn answers_are_counted_against_the_version_their_request_ran_at() {
        let telemetry = Telemetry::new();
        let mut account = SessionAccount::new(telemetry.clone());
        let ledger = RequestLedger::default();
        ledger.attribute(account.assign("v1", Reason::Default));
        ledger.sent();
        ledger.sent();
        ledger.attribute(account.assign("v2", Reason::Default));
        ledger.sent();
        ledger.error("42P01");
        ledger.ready();
        ledger.ready();
        ledger.ready();
        ledger.ready(); // an answer nobody is owed changes nothing
        ledger.error("57014");
        let versions = telemetry.versions();
        let counts: Vec<_> = versions
            .iter()
            .map(|v| (v.version.as_str(), v.queries, v.errors.clone()))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("v1", 2, [("42".to_owned(), 1)].into()),
                ("v2", 1, [("57".to_owned(), 1)].into()),
            ]
        );
    }
}
