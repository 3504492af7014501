//! The application_name a session sets after its startup, as Postgres reports it
//! (ParameterStatus), handed from the pump that reads the server's messages to the one whose
//! router matches routing rules on it (`router::session_router_application`). The session's
//! card takes it at once, so `viewgate status` and the refusals that name sessions show it:
//! they called every pgJDBC session "a client without application_name" (the Java walk).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::proxy::stats::SessionCard;

/// The setting Postgres reports, by its name.
const APPLICATION_NAME: &str = "application_name";

/// The newest application_name reported and not yet taken by the router.
#[derive(Debug, Default)]
pub(super) struct ReportedName {
    /// Whether `name` holds one: the client pump's check, on every statement, is this load.
    pending: AtomicBool,
    name: Mutex<Option<String>>,
}

impl ReportedName {
    /// Follows a ParameterStatus: an application_name goes to the card and waits for the
    /// router.
    pub(super) fn follow(&self, setting: &str, value: &str, card: Option<&SessionCard>) {
        if setting != APPLICATION_NAME {
            return;
        }
        if let Some(card) = card {
            card.renamed(value);
        }
        *self
            .name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(value.to_owned());
        self.pending.store(true, Ordering::Release);
    }

    /// The name reported since the last call, if any.
    pub(super) fn take(&self) -> Option<String> {
        // A load first: the swap's locked write would cost every statement.
        if !self.pending.load(Ordering::Relaxed) || !self.pending.swap(false, Ordering::Acquire) {
            return None;
        }
        self.name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_name_is_taken_once_and_other_settings_pass_by() {
        let reported = ReportedName::default();
        assert_eq!(reported.take(), None);
        reported.follow("TimeZone", "UTC", None);
        assert_eq!(reported.take(), None);
        reported.follow(APPLICATION_NAME, "billing", None);
        reported.follow(APPLICATION_NAME, "billing-svc", None);
        assert_eq!(reported.take().as_deref(), Some("billing-svc"));
        assert_eq!(reported.take(), None);
    }
}
