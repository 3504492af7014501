//! The `max_client_connections` bound: a slot per client session, taken at accept and given
//! back when the session ends. A counter against a limit rather than a semaphore, so that a
//! reload can move the limit either way at once: raised, waiting clients' successors get in;
//! lowered, the sessions already served go on (as PgBouncer's `max_client_conn` does) and new
//! ones are refused until enough have ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Client sessions served at once, and how many may be.
#[derive(Debug)]
pub struct ClientSlots {
    taken: AtomicUsize,
    limit: AtomicUsize,
}

/// One session's slot; given back on drop.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
}

impl ClientSlots {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ClientSlots {
            taken: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    /// A slot, or `None` when as many sessions as the limit allows are served.
    pub fn try_take(self: &Arc<Self>) -> Option<ClientSlot> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < limit).then_some(taken + 1)
            })
            .ok()
            .map(|_| ClientSlot {
                slots: self.clone(),
            })
    }

    /// Moves the limit; slots already taken are kept.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.slots.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::ClientSlots;

    #[test]
    fn a_lowered_limit_keeps_the_slots_taken_and_refuses_new_ones_until_enough_end() {
        let slots = ClientSlots::new(2);
        let (first, second) = (slots.try_take().unwrap(), slots.try_take().unwrap());
        assert!(slots.try_take().is_none());
        slots.set_limit(3);
        let third = slots.try_take().expect("raised");
        slots.set_limit(1);
        assert!(slots.try_take().is_none());
        drop(first);
        drop(second);
        assert!(
            slots.try_take().is_none(),
            "one still served, the limit is one"
        );
        drop(third);
        assert!(slots.try_take().is_some());
    }
}
