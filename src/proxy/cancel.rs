//! Cancel keys: each client is told its upstream backend's real process id and a secret of
//! the proxy's own, mapped to the upstream backend's key.
//!
//! A CancelRequest arrives on a new, unauthenticated connection carrying only a process id and
//! a secret. The process id is the upstream backend's real one, so what a driver reports
//! matches `pg_stat_activity.pid`, `pg_terminate_backend` and the pid in the session's own
//! NOTIFYs (connection pools and "ignore my own notifications" checks use them). The secret
//! is the proxy's: handing clients the upstream's would let them cancel through another path
//! and would break when a session moves to another upstream. Sessions are found by their
//! secret (unique in the registry, random per session; with peering it also names this
//! replica, see `protocol::cancel_key` and `peers`), and the process id must match too.
//! After an upstream switch the session keeps the process id it was told at startup (the
//! protocol has no way to tell a client a new one): its cancels still reach the new backend,
//! but that pid names the old backend, not the one serving the session now.

use std::sync::Arc;

use dashmap::DashMap;

use super::upstream::UpstreamTarget;
use crate::protocol::cancel_key::issue_secret;

/// The upstream backend a session runs on, as a CancelRequest must name it.
#[derive(Clone)]
pub struct UpstreamKey {
    pub target: Arc<UpstreamTarget>,
    pub process_id: u32,
    pub secret: Vec<u8>,
}

struct Entry {
    /// The process id the client was told (its first upstream backend's).
    process_id: u32,
    upstream: UpstreamKey,
}

/// Sessions by the proxy-side secret their client holds. The map's hasher is keyed at
/// random, so a lookup's timing says nothing about how close a guessed secret came.
#[derive(Default)]
pub struct CancelRegistry {
    sessions: DashMap<u32, Entry>,
    /// This replica's peer id, written into every secret it issues (`protocol::cancel_key`).
    peer_id: Option<u32>,
}

/// A session's proxy-side key; removes itself from the registry when the session ends.
pub struct CancelRegistration {
    registry: Arc<CancelRegistry>,
    /// The upstream backend's real process id.
    pub process_id: u32,
    pub secret: u32,
}

impl CancelRegistration {
    /// The session moved to another upstream backend: the client keeps its key, which now
    /// cancels work on the new backend.
    pub fn repoint(&self, upstream: UpstreamKey) {
        if let Some(mut entry) = self.registry.sessions.get_mut(&self.secret) {
            entry.upstream = upstream;
        }
    }
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.secret);
    }
}

impl CancelRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(CancelRegistry::default())
    }

    /// A registry whose secrets name this replica (`peer_id`) for its peers, or are wholly
    /// random without peering.
    pub fn with_peer_id(peer_id: Option<u32>) -> Arc<Self> {
        Arc::new(CancelRegistry {
            sessions: DashMap::default(),
            peer_id,
        })
    }

    /// Issues a key for a session whose upstream backend is `upstream`: its real process id
    /// and a fresh secret no other session of this proxy holds.
    pub fn register(self: &Arc<Self>, upstream: UpstreamKey) -> CancelRegistration {
        let process_id = upstream.process_id;
        loop {
            let secret = issue_secret(self.peer_id, rand::random());
            if let dashmap::Entry::Vacant(slot) = self.sessions.entry(secret) {
                slot.insert(Entry {
                    process_id,
                    upstream,
                });
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
        let secret: [u8; 4] = secret.try_into().ok()?;
        let entry = self.sessions.get(&u32::from_be_bytes(secret))?;
        constant_time_eq(&entry.process_id.to_be_bytes(), &process_id.to_be_bytes())
            .then(|| entry.upstream.clone())
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
    use crate::protocol::cancel_key::read_secret;

    #[test]
    fn keys_resolve_only_with_the_right_secret_and_vanish_on_drop() {
        let registry = CancelRegistry::new();
        let target = Arc::new(UpstreamTarget::from_config(&Config::default()).unwrap());
        let registration = registry.register(UpstreamKey {
            target,
            process_id: 42,
            secret: vec![1, 2, 3, 4],
        });
        assert_eq!(
            registration.process_id, 42,
            "the client is told the real pid"
        );
        let secret = registration.secret.to_be_bytes();
        let found = registry.lookup(registration.process_id, &secret).unwrap();
        assert_eq!(found.process_id, 42);
        let wrong = (registration.secret ^ 1).to_be_bytes();
        assert!(registry.lookup(registration.process_id, &wrong).is_none());
        assert!(
            registry.lookup(43, &secret).is_none(),
            "the pid must match too"
        );
        // Two sessions on backends with the same pid (two upstreams) stay apart.
        let target = Arc::new(UpstreamTarget::from_config(&Config::default()).unwrap());
        let other = registry.register(UpstreamKey {
            target,
            process_id: 42,
            secret: vec![5, 6, 7, 8],
        });
        assert_ne!(other.secret, registration.secret);
        let found = registry.lookup(42, &other.secret.to_be_bytes()).unwrap();
        assert_eq!(found.secret, vec![5, 6, 7, 8]);
        drop(other);
        let id = registration.process_id;
        drop(registration);
        assert!(registry.lookup(id, &secret).is_none());
        assert!(registry.is_empty());
    }

    #[test]
    fn a_replicas_secrets_name_it() {
        let registry = CancelRegistry::with_peer_id(Some(9));
        let target = Arc::new(UpstreamTarget::from_config(&Config::default()).unwrap());
        let registrations: Vec<_> = (0..64)
            .map(|pid| {
                registry.register(UpstreamKey {
                    target: target.clone(),
                    process_id: pid,
                    secret: vec![0; 4],
                })
            })
            .collect();
        for registration in &registrations {
            let read = read_secret(registration.secret);
            assert_eq!(read.peer_id, 9);
            assert!(!read.forwarded);
            let secret = registration.secret.to_be_bytes();
            assert!(registry.lookup(registration.process_id, &secret).is_some());
        }
    }
}
