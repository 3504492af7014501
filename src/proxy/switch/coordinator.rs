//! The switchboard at work: pause, resume and the two-phase upstream switch (prepare every
//! session, then commit or abort all), carried out on one proxy's state. Its own file so that
//! the switchboard's types (`mod.rs`), which the proxy's state holds, do not depend on that
//! state.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{
    CommitReport, PREPARED_EXPIRY, PauseReport, Phase, PhaseState, PrepareError, PrepareReport,
    Prepared, ResumeReport, SWAP_TIMEOUT, SessionControl, StatusReport, SwitchError, Switchboard,
    millis,
};
use crate::net::conninfo::without_password;
use crate::proxy::pause::WaitSummary;
use crate::proxy::reconnect::SwitchPlan;
use crate::proxy::state::ProxyState;
use crate::proxy::upstream::UpstreamTarget;
use crate::proxy::upstream_auth::Credentials;

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
        let config = state.config.load_full();
        let target = Arc::new(UpstreamTarget::from_url(url, &config)?);
        let waited = if paused_before {
            Duration::ZERO
        } else {
            close_and_wait(state, timeout).await?
        };
        let started = Instant::now();
        let plan = Arc::new(SwitchPlan {
            target: target.clone(),
            credentials: Credentials {
                passfile: config.upstream_passfile.clone(),
            },
        });
        // Each session connects and logs in; bounded like a client's own startup.
        let deadline = config.upstream_connect_timeout + config.startup_timeout;
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
