//! Pause, resume and the two-phase upstream switch of one proxy: the operations behind the
//! admin API's `/pause`, `/resume` and `/upstream/{prepare,commit,abort}`.
//!
//! States: **open** → `pause` → **paused** → `resume` → open; and open (or paused) →
//! `prepare` → **prepared** → `commit` | `abort` → open. A prepare closes the pause gate,
//! waits until no session has work in flight (up to a timeout; on timeout the gate reopens and
//! nothing changed), then asks every session to open, log in and set up its connection to the
//! new upstream while it stands at its boundary. Only when every session succeeded is the
//! proxy *prepared*; otherwise all new connections are dropped and the proxy resumes on the old
//! upstream, so a proxy never ends half-switched. Commit makes each session swap to its new
//! connection (ending the old one), points new sessions at the new upstream, and opens the
//! gate; abort drops the new connections and opens the gate. A prepared proxy that hears
//! neither within [`PREPARED_EXPIRY`] aborts by itself, so a lost coordinator (a killed
//! `viewgate cutover`) cannot leave clients waiting forever.
//!
//! Sessions are reached through the [`SessionRegistry`]: each established session registers a
//! control channel and obeys [`SessionControl`] messages at its next clean point.
//!
//! This file holds the switchboard's types and the registry; the operations themselves, which
//! need the proxy's state, are in `coordinator.rs`.

mod coordinator;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::proxy::pause::WaitSummary;
use crate::proxy::reconnect::{ReconnectError, SwitchPlan};
use crate::proxy::upstream::{UpstreamError, UpstreamTarget};

/// A prepared switch that is neither committed nor aborted within this time is aborted.
pub const PREPARED_EXPIRY: Duration = Duration::from_secs(60);
/// Control messages a session may have queued: the coordinator sends at most three, and a
/// reload of the routing state one more (dropped when the queue is full).
const CONTROL_QUEUE: usize = 5;
/// Extra time sessions get to answer a commit or abort (they only swap connections).
const SWAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one session could not prepare its move, for the operator's report.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{who}: not at a transaction boundary")]
    NotAtBoundary { who: String },
    #[error("{who}: {source}")]
    Reconnect { who: String, source: ReconnectError },
    #[error("a session did not finish connecting in time")]
    TimedOut,
}

/// What the coordinator asks of one session.
pub enum SessionControl {
    /// Open and set up a connection to the plan's upstream; keep the old one meanwhile.
    Prepare {
        plan: Arc<SwitchPlan>,
        reply: oneshot::Sender<Result<(), PrepareError>>,
    },
    /// Switch to the prepared connection.
    Commit { reply: oneshot::Sender<()> },
    /// Drop the prepared connection.
    Abort { reply: oneshot::Sender<()> },
    /// The routing state was reloaded: a session standing quiet picks its version again, as
    /// its next statement would, so it is counted where it will run.
    FollowRouting,
}

/// The established sessions of one proxy, by id.
#[derive(Default)]
pub struct SessionRegistry {
    next_id: AtomicU64,
    sessions: DashMap<u64, mpsc::Sender<SessionControl>>,
}

/// A session's place in the registry; removed when dropped.
pub struct Registration {
    registry: Arc<SessionRegistry>,
    id: u64,
}

impl Registration {
    /// Sends this session `control` after `delay`, unless it has ended by then.
    pub fn remind(&self, delay: Duration, control: SessionControl) {
        let (registry, id) = (self.registry.clone(), self.id);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let sender = registry
                .sessions
                .get(&id)
                .map(|entry| entry.value().clone());
            if let Some(sender) = sender {
                let _ = sender.try_send(control);
            }
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions.remove(&self.id);
    }
}

impl SessionRegistry {
    pub fn register(self: &Arc<Self>) -> (Registration, mpsc::Receiver<SessionControl>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(CONTROL_QUEUE);
        self.sessions.insert(id, sender);
        let registration = Registration {
            registry: self.clone(),
            id,
        };
        (registration, receiver)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Tells every session the routing state was reloaded; a session whose queue is full is
    /// busy with a switch and picks its version again at its next statement anyway.
    pub fn follow_routing(&self) {
        for entry in &self.sessions {
            let _ = entry.value().try_send(SessionControl::FollowRouting);
        }
    }

    fn senders(&self) -> Vec<mpsc::Sender<SessionControl>> {
        self.sessions
            .iter()
            .map(|entry| entry.value().clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("another pause or cutover operation is in progress on this proxy")]
    InProgress,
    #[error("{0}")]
    WrongState(&'static str),
    #[error("invalid new upstream: {0}")]
    BadTarget(#[from] UpstreamError),
    #[error(
        "{busy} session(s) still had transactions in flight after {waited_ms} ms; nothing was changed and the proxy resumed"
    )]
    Timeout { busy: usize, waited_ms: u64 },
    #[error(
        "the cutover was aborted and the proxy resumed on the current upstream: {}",
        failures.join("; ")
    )]
    PrepareFailed { failures: Vec<String> },
}

impl SwitchError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            SwitchError::InProgress | SwitchError::WrongState(_) => 409,
            SwitchError::BadTarget(_) => 400,
            SwitchError::Timeout { .. } => 504,
            SwitchError::PrepareFailed { .. } => 502,
        }
    }
}

/// Where the proxy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Open,
    Paused,
    Prepared,
}

/// The coordinator's state; one per proxy.
pub struct Switchboard {
    /// Serialises operations; they may wait for seconds.
    operation: tokio::sync::Mutex<()>,
    phase: Mutex<PhaseState>,
    generation: AtomicU64,
}

struct PhaseState {
    phase: Phase,
    /// The gate was closed by `pause` before the prepare: abort returns to paused.
    paused_before_prepare: bool,
    prepared: Option<Prepared>,
}

struct Prepared {
    target: Arc<UpstreamTarget>,
    url: String,
    sessions: usize,
}

impl Default for Switchboard {
    fn default() -> Self {
        Switchboard {
            operation: tokio::sync::Mutex::new(()),
            phase: Mutex::new(PhaseState {
                phase: Phase::Open,
                paused_before_prepare: false,
                prepared: None,
            }),
            generation: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub state: Phase,
    pub sessions: usize,
    pub busy_sessions: usize,
    pub held_messages: usize,
    pub paused_ms: Option<f64>,
    /// The upstream new sessions connect to.
    pub upstream: String,
    /// The prepared switch's target (a URL without password).
    pub prepared_upstream: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PauseReport {
    pub state: Phase,
    pub sessions: usize,
    /// How long in-flight transactions took to finish.
    pub waited_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ResumeReport {
    pub state: Phase,
    pub sessions: usize,
    /// What clients waited during the pause that ended.
    pub waits: WaitSummary,
}

#[derive(Debug, Serialize)]
pub struct PrepareReport {
    pub state: Phase,
    pub sessions: usize,
    pub waited_ms: f64,
    pub prepare_ms: f64,
    pub upstream: String,
}

#[derive(Debug, Serialize)]
pub struct CommitReport {
    pub state: Phase,
    pub sessions: usize,
    pub upstream: String,
    pub waits: WaitSummary,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
