//! Who each live session of one proxy is: the card a session fills at its start (address,
//! user, database, application_name, when), and keeps current where that costs nothing on the
//! hot path (the version it is counted at changes rarely, and so does an application_name set
//! after the startup; the transaction status is the atomic the pumps already write; the
//! backend pid changes only with an upstream move).
//!
//! Counts say that a version is still in use; cards say by whom. The heartbeat lists a few per
//! version (`model::listed_session`), the admin API's `/sessions` all of them, and `migrate
//! complete` names them when it is refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dashmap::DashMap;

use crate::model::identifier::truncate_identifier;
use crate::model::listed_session::{ListedByVersion, ListedSession};
use crate::protocol::backend::TransactionStatus;
use crate::router::Reason;

/// The cards of one proxy's live sessions, by a number of their own.
#[derive(Debug, Default)]
pub struct SessionCards {
    next_id: AtomicU64,
    cards: DashMap<u64, Arc<SessionCard>>,
}

/// One session's card.
#[derive(Debug)]
pub struct SessionCard {
    client: SocketAddr,
    user: String,
    database: String,
    /// The startup's, then what the session set (`proxy::session::reported_name`).
    application_name: Mutex<String>,
    connected_at: SystemTime,
    /// The session's transaction status as its pumps last read it from a ReadyForQuery
    /// (`TransactionStatus as u8`): the same atomic, shared.
    transaction: Arc<AtomicU8>,
    /// The serving backend's process id (0: Postgres sent none).
    backend_pid: AtomicU32,
    /// The version the session is counted at and why; set when that changes, which is rare.
    counted: Mutex<Option<(String, Reason)>>,
}

/// Who a session is, at its start.
#[derive(Debug, Clone)]
pub struct Introduction {
    pub client: SocketAddr,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub backend_pid: Option<u32>,
}

impl SessionCard {
    pub fn new(introduction: Introduction, transaction: Arc<AtomicU8>) -> Self {
        SessionCard {
            client: introduction.client,
            user: introduction.user,
            database: introduction.database,
            // As Postgres keeps it (`pg_stat_activity`): a client cannot make its card, or the
            // heartbeat's row, long.
            application_name: Mutex::new(
                truncate_identifier(&introduction.application_name).to_owned(),
            ),
            connected_at: SystemTime::now(),
            transaction,
            backend_pid: AtomicU32::new(introduction.backend_pid.unwrap_or(0)),
            counted: Mutex::new(None),
        }
    }

    /// The session set its application_name to `name` (Postgres reported it).
    pub fn renamed(&self, name: &str) {
        *self
            .application_name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            truncate_identifier(name).to_owned();
    }

    /// The session moved to another backend (an upstream switch).
    pub fn served_by(&self, backend_pid: u32) {
        self.backend_pid.store(backend_pid, Ordering::Relaxed);
    }

    /// The session is now counted at `counted` (`None`: at no version).
    pub(super) fn count_at(&self, counted: Option<(&str, Reason)>) {
        *self
            .counted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            counted.map(|(version, reason)| (version.to_owned(), reason));
    }

    fn listed(&self) -> ListedSession {
        let counted = self
            .counted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let transaction = match self.transaction.load(Ordering::Relaxed) {
            status if status == TransactionStatus::InTransaction as u8 => "in transaction",
            status if status == TransactionStatus::Failed as u8 => "failed transaction",
            _ => "idle",
        };
        ListedSession {
            client: self.client.to_string(),
            user: self.user.clone(),
            database: self.database.clone(),
            application_name: self
                .application_name
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            connected_at: humantime_serde::re::humantime::format_rfc3339_seconds(self.connected_at)
                .to_string(),
            reason: counted.as_ref().map(|(_, reason)| reason.to_string()),
            version: counted.map(|(version, _)| version),
            transaction: transaction.to_owned(),
            backend_pid: match self.backend_pid.load(Ordering::Relaxed) {
                0 => None,
                pid => Some(pid),
            },
        }
    }
}

impl SessionCards {
    /// Files `card`; the returned number takes it out again ([`SessionCards::remove`]).
    pub(super) fn insert(&self, card: Arc<SessionCard>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.cards.insert(id, card);
        id
    }

    pub(super) fn remove(&self, id: u64) {
        self.cards.remove(&id);
    }

    /// Every live session, the longest connected first.
    pub fn all(&self) -> Vec<ListedSession> {
        let mut cards: Vec<Arc<SessionCard>> = self
            .cards
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        cards.sort_by_key(|card| card.connected_at);
        cards.iter().map(|card| card.listed()).collect()
    }

    /// Up to `per_version` sessions at each version, the longest connected first: the ones
    /// most likely to hold a version back (an old deployment, a pool that never recycles).
    pub fn by_version(&self, per_version: usize) -> ListedByVersion {
        let mut listed = ListedByVersion::new();
        for session in self.all() {
            let Some(version) = session.version.clone() else {
                continue;
            };
            let at_version = listed.entry(version).or_default();
            if at_version.len() < per_version {
                at_version.push(session);
            }
        }
        listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(application_name: &str) -> Arc<SessionCard> {
        Arc::new(SessionCard::new(
            Introduction {
                client: "10.0.0.5:51234".parse().unwrap(),
                user: "app".into(),
                database: "shop".into(),
                application_name: application_name.into(),
                backend_pid: Some(4242),
            },
            Arc::new(AtomicU8::new(TransactionStatus::Idle as u8)),
        ))
    }

    #[test]
    fn cards_list_the_version_the_status_and_the_backend_as_they_change() {
        let cards = SessionCards::default();
        let billing = card("billing");
        let web = card("web");
        let billing_id = cards.insert(billing.clone());
        cards.insert(web.clone());
        billing.count_at(Some(("v1", Reason::Declared)));
        web.count_at(Some(("v2", Reason::Default)));
        billing
            .transaction
            .store(TransactionStatus::InTransaction as u8, Ordering::Relaxed);
        billing.served_by(77);

        let all = cards.all();
        assert_eq!(all.len(), 2);
        let listed = &cards.by_version(10)["v1"];
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].application_name, "billing");
        assert_eq!(listed[0].reason.as_deref(), Some("declared"));
        assert_eq!(listed[0].transaction, "in transaction");
        assert_eq!(listed[0].backend_pid, Some(77));
        assert_eq!(listed[0].client, "10.0.0.5:51234");

        cards.remove(billing_id);
        assert_eq!(cards.by_version(10).keys().collect::<Vec<_>>(), vec!["v2"]);
    }

    #[test]
    fn a_version_lists_at_most_its_share_and_unversioned_sessions_none() {
        let cards = SessionCards::default();
        for _ in 0..5 {
            let at_v1 = card("pool");
            at_v1.count_at(Some(("v1", Reason::Default)));
            cards.insert(at_v1);
        }
        cards.insert(card(&"x".repeat(5000)));
        assert_eq!(cards.by_version(3)["v1"].len(), 3);
        assert_eq!(cards.by_version(3).len(), 1);
        let all = cards.all();
        assert_eq!(all.len(), 6);
        assert!(
            all.iter()
                .all(|session| session.application_name.len() <= 63)
        );
    }
}
