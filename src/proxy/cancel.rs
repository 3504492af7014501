//! Cancel keys: each client gets a key of the proxy's own, mapped to its upstream backend's.
//!
//! A CancelRequest arrives on a new, unauthenticated connection carrying only a process id and
//! a secret. Handing clients the upstream's key would let them cancel other backends through a
//! different proxy path and would break when a session moves to another upstream; so the proxy
//! issues its own keys and forwards a matching request with the upstream key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use dashmap::DashMap;

use super::upstream::UpstreamTarget;

/// The upstream backend a session runs on, as a CancelRequest must name it.
#[derive(Clone)]
pub struct UpstreamKey {
    pub target: Arc<UpstreamTarget>,
    pub process_id: u32,
    pub secret: Vec<u8>,
}

struct Entry {
    secret: u32,
    upstream: UpstreamKey,
}

#[derive(Default)]
pub struct CancelRegistry {
    sessions: DashMap<u32, Entry>,
    next_process_id: AtomicU32,
}

/// A session's proxy-side key; removes itself from the registry when the session ends.
pub struct CancelRegistration {
    registry: Arc<CancelRegistry>,
    pub process_id: u32,
    pub secret: u32,
}

impl CancelRegistration {
    /// The session moved to another upstream backend: the client keeps its key, which now
    /// cancels work on the new backend.
    pub fn repoint(&self, upstream: UpstreamKey) {
        if let Some(mut entry) = self.registry.sessions.get_mut(&self.process_id) {
            entry.upstream = upstream;
        }
    }
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.process_id);
    }
}

impl CancelRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(CancelRegistry {
            sessions: DashMap::new(),
            // A random start keeps keys from different proxy runs apart.
            next_process_id: AtomicU32::new(rand::random()),
        })
    }

    /// Issues a fresh key for a session whose upstream backend is `upstream`.
    pub fn register(self: &Arc<Self>, upstream: UpstreamKey) -> CancelRegistration {
        let secret = rand::random();
        loop {
            let process_id = self.next_process_id.fetch_add(1, Ordering::Relaxed);
            if process_id == 0 {
                continue;
            }
            if let dashmap::Entry::Vacant(slot) = self.sessions.entry(process_id) {
                slot.insert(Entry { secret, upstream });
                return CancelRegistration {
                    registry: self.clone(),
                    process_id,
                    secret,
                };
            }
        }
    }

    /// The upstream key for a client's CancelRequest, if its key is one we issued.
    pub fn lookup(&self, process_id: u32, secret: &[u8]) -> Option<UpstreamKey> {
        let entry = self.sessions.get(&process_id)?;
        let matches = secret.len() == 4 && constant_time_eq(&entry.secret.to_be_bytes(), secret);
        matches.then(|| entry.upstream.clone())
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Compares secrets without an early exit, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn keys_resolve_only_with_the_right_secret_and_vanish_on_drop() {
        let registry = CancelRegistry::new();
        let target = Arc::new(UpstreamTarget::from_config(&Config::default()).unwrap());
        let registration = registry.register(UpstreamKey {
            target,
            process_id: 42,
            secret: vec![1, 2, 3, 4],
        });
        let secret = registration.secret.to_be_bytes();
        let found = registry.lookup(registration.process_id, &secret).unwrap();
        assert_eq!(found.process_id, 42);
        let wrong = (registration.secret ^ 1).to_be_bytes();
        assert!(registry.lookup(registration.process_id, &wrong).is_none());
        let id = registration.process_id;
        drop(registration);
        assert!(registry.lookup(id, &secret).is_none());
        assert!(registry.is_empty());
    }
}
