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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::pause::WaitSummary;
use super::reconnect::{ReconnectError, SwitchPlan};
use super::state::ProxyState;
use super::upstream::{UpstreamError, UpstreamTarget};
use super::upstream_auth::Credentials;
use crate::net::conninfo::without_password;

/// A prepared switch that is neither committed nor aborted within this time is aborted.
pub const PREPARED_EXPIRY: Duration = Duration::from_secs(60);
/// Control messages a session may have queued; the coordinator sends at most three.
const CONTROL_QUEUE: usize = 4;
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

impl Switchboard {
    fn lock_phase(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, SwitchError> {
        self.operation
            .try_lock()
            .map_err(|_| SwitchError::InProgress)
    }

    pub fn status(&self, state: &ProxyState) -> StatusReport {
        let phase = self.lock_phase();
        StatusReport {
            state: phase.phase,
            sessions: state.sessions.len(),
            busy_sessions: state.pause.busy(),
            held_messages: state.pause.held_now(),
            paused_ms: state.pause.closed_for().map(millis),
            upstream: state.upstream.load().address.to_string(),
            prepared_upstream: phase.prepared.as_ref().map(|p| p.url.clone()),
        }
    }

    /// Closes the gate and waits until no session has work in flight.
    pub async fn pause(
        &self,
        state: &ProxyState,
        timeout: Duration,
    ) -> Result<PauseReport, SwitchError> {
        let _operation = self.begin()?;
        if self.lock_phase().phase != Phase::Open {
            return Err(SwitchError::WrongState("the proxy is already paused"));
        }
        let waited = close_and_wait(state, timeout).await?;
        self.lock_phase().phase = Phase::Paused;
        tracing::info!(waited_ms = millis(waited), "paused");
        Ok(PauseReport {
            state: Phase::Paused,
            sessions: state.sessions.len(),
            waited_ms: millis(waited),
        })
    }

    pub async fn resume(&self, state: &ProxyState) -> Result<ResumeReport, SwitchError> {
        let _operation = self.begin()?;
        match self.lock_phase().phase {
            Phase::Paused => {}
            Phase::Open => return Err(SwitchError::WrongState("the proxy is not paused")),
            Phase::Prepared => {
                return Err(SwitchError::WrongState(
                    "an upstream switch is prepared: commit or abort it",
                ));
            }
        }
        let waits = state.pause.open().unwrap_or_default();
        self.lock_phase().phase = Phase::Open;
        tracing::info!(?waits, "resumed");
        Ok(ResumeReport {
            state: Phase::Open,
            sessions: state.sessions.len(),
            waits,
        })
    }

    /// Phase one: pause (unless paused already), wait for transactions, and have every
    /// session connect to `url`. On any failure everything is undone.
    pub async fn prepare(
        self: &Arc<Self>,
        state: &Arc<ProxyState>,
        url: &str,
        timeout: Duration,
    ) -> Result<PrepareReport, SwitchError> {
        let _operation = self.begin()?;
        let paused_before = match self.lock_phase().phase {
            Phase::Open => false,
            Phase::Paused => true,
            Phase::Prepared => {
                return Err(SwitchError::WrongState(
                    "an upstream switch is prepared already: commit or abort it",
                ));
            }
        };
        let target = Arc::new(UpstreamTarget::from_url(url, &state.config)?);
        let waited = if paused_before {
            Duration::ZERO
        } else {
            close_and_wait(state, timeout).await?
        };
        let started = Instant::now();
        let plan = Arc::new(SwitchPlan {
            target: target.clone(),
            credentials: Credentials {
                passfile: state.config.upstream_passfile.clone(),
            },
        });
        // Each session connects and logs in; bounded like a client's own startup.
        let deadline = state.config.upstream_connect_timeout + state.config.startup_timeout;
        let replies = state.sessions.senders().into_iter().map(|session| {
            let plan = plan.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                if session
                    .send(SessionControl::Prepare { plan, reply })
                    .await
                    .is_err()
                {
                    return None; // the session ended meanwhile
                }
                match tokio::time::timeout(deadline, answer).await {
                    Ok(Ok(result)) => Some(result),
                    Ok(Err(_)) => None,
                    Err(_) => Some(Err(PrepareError::TimedOut)),
                }
            }
        });
        let results = futures_util::future::join_all(replies).await;
        let prepared = results.iter().filter(|r| matches!(r, Some(Ok(())))).count();
        let mut failures: Vec<String> = results
            .into_iter()
            .filter_map(|result| result?.err())
            .map(|error| error.to_string())
            .collect();
        if !failures.is_empty() {
            failures.sort();
            failures.dedup();
            broadcast_abort(state).await;
            self.end_prepared(state, paused_before);
            tracing::warn!(?failures, "upstream switch aborted");
            return Err(SwitchError::PrepareFailed { failures });
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut phase = self.lock_phase();
            phase.phase = Phase::Prepared;
            phase.paused_before_prepare = paused_before;
            phase.prepared = Some(Prepared {
                target,
                url: without_password(url),
                sessions: prepared,
            });
        }
        let (board, proxy) = (self.clone(), state.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PREPARED_EXPIRY).await;
            if board.generation.load(Ordering::SeqCst) == generation
                && board.lock_phase().phase == Phase::Prepared
            {
                tracing::warn!("upstream switch neither committed nor aborted in time; aborting");
                let _ = board.abort(&proxy).await;
            }
        });
        tracing::info!(sessions = prepared, url = %without_password(url), "upstream switch prepared");
        Ok(PrepareReport {
            state: Phase::Prepared,
            sessions: prepared,
            waited_ms: millis(waited),
            prepare_ms: millis(started.elapsed()),
            upstream: without_password(url),
        })
    }

    /// Phase two: every session moves to its new connection, new sessions go to the new
    /// upstream, and the gate opens.
    pub async fn commit(&self, state: &ProxyState) -> Result<CommitReport, SwitchError> {
        let _operation = self.begin()?;
        let prepared = {
            let mut phase = self.lock_phase();
            let prepared = match phase.phase {
                Phase::Prepared => phase.prepared.take(),
                _ => None,
            };
            prepared.ok_or(SwitchError::WrongState("no upstream switch is prepared"))?
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
        state.upstream.store(prepared.target.clone());
        broadcast(state, |reply| SessionControl::Commit { reply }).await;
        let waits = state.pause.open().unwrap_or_default();
        {
            let mut phase = self.lock_phase();
            phase.phase = Phase::Open;
            phase.paused_before_prepare = false;
        }
        tracing::info!(upstream = %prepared.url, sessions = prepared.sessions, ?waits, "upstream switch committed");
        Ok(CommitReport {
            state: Phase::Open,
            sessions: prepared.sessions,
            upstream: prepared.url,
            waits,
        })
    }

    /// Drops the prepared connections; the proxy goes on with the old upstream.
    pub async fn abort(&self, state: &ProxyState) -> Result<ResumeReport, SwitchError> {
        let _operation = self.begin()?;
        let paused_before = {
            let phase = self.lock_phase();
            if phase.phase != Phase::Prepared {
                return Err(SwitchError::WrongState("no upstream switch is prepared"));
            }
            phase.paused_before_prepare
        };
        self.generation.fetch_add(1, Ordering::SeqCst);
        broadcast_abort(state).await;
        let waits = self.end_prepared(state, paused_before);
        tracing::info!("upstream switch aborted");
        Ok(ResumeReport {
            state: self.lock_phase().phase,
            sessions: state.sessions.len(),
            waits,
        })
    }

    /// Back to open, or to paused when the operator had paused before the prepare.
    fn end_prepared(&self, state: &ProxyState, paused_before: bool) -> WaitSummary {
        let mut phase = self.lock_phase();
        phase.prepared = None;
        phase.paused_before_prepare = false;
        if paused_before {
            phase.phase = Phase::Paused;
            WaitSummary::default()
        } else {
            phase.phase = Phase::Open;
            state.pause.open().unwrap_or_default()
        }
    }
}

/// Closes the gate and waits for in-flight work; on timeout reopens it.
async fn close_and_wait(state: &ProxyState, timeout: Duration) -> Result<Duration, SwitchError> {
    let started = Instant::now();
    state.pause.close();
    if state.pause.wait_quiet(timeout).await {
        return Ok(started.elapsed());
    }
    let busy = state.pause.busy();
    state.pause.open();
    tracing::warn!(busy, "pause timed out; resumed");
    Err(SwitchError::Timeout {
        busy,
        waited_ms: started.elapsed().as_millis() as u64,
    })
}

async fn broadcast_abort(state: &ProxyState) {
    broadcast(state, |reply| SessionControl::Abort { reply }).await;
}

/// Sends every session the request `make` builds and waits (each at most [`SWAP_TIMEOUT`]) for
/// its acknowledgement.
async fn broadcast(state: &ProxyState, make: impl Fn(oneshot::Sender<()>) -> SessionControl) {
    let replies = state.sessions.senders().into_iter().map(|session| {
        let (reply, answer) = oneshot::channel();
        let request = make(reply);
        async move {
            if session.send(request).await.is_ok() {
                let _ = tokio::time::timeout(SWAP_TIMEOUT, answer).await;
            }
        }
    });
    futures_util::future::join_all(replies).await;
}
