//! The accept loop: connection limits, one task per client (on the session threads when
//! configured), graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::error::SessionError;
use super::handshake::{self, Negotiated};
use super::session;
use super::session_threads::SessionThreads;
use super::state::{ProxyState, StateError};
use super::upstream::UpstreamTarget;
use crate::config::Config;
use crate::router::watcher::{self, CatalogSource};
use crate::shutdown::Shutdown;

/// Connections over the limit still get a proper 53300 error, which needs a short startup
/// exchange; at most this many such exchanges run at once, beyond that sockets are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long refused connections get to send their startup packet.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// After sessions were told to close, how long they get to say goodbye.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot start the session threads (session_threads): {0}")]
    SessionThreads(std::io::Error),
}

/// A bound proxy, not yet serving.
pub struct Proxy {
    listener: TcpListener,
    state: Arc<ProxyState>,
    /// Where sessions run when `session_threads` is set; else on the caller's runtime.
    threads: Option<SessionThreads>,
}

impl Proxy {
    pub async fn bind(config: Config, shutdown: Shutdown) -> Result<Proxy, ListenError> {
        let state = Arc::new(ProxyState::new(config, shutdown)?);
        if let Some(catalog) = &state.catalog {
            // Route the very first sessions; if the catalog is unreachable now, the watcher
            // keeps trying and sessions run unversioned meanwhile.
            match catalog.load().await {
                Ok(routing) => state.routing.store(Arc::new(routing)),
                Err(error) => {
                    tracing::warn!(%error, "could not load the viewgate catalog at startup")
                }
            }
        }
        if let Some(catalog) = &state.catalog {
            use_recorded_upstream(catalog, &state).await;
        }
        let address = state.config.load().listen.clone();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| ListenError::Bind { address, source })?;
        let threads = match state.config.load().session_threads {
            0 => None,
            count => Some(SessionThreads::start(count).map_err(ListenError::SessionThreads)?),
        };
        Ok(Proxy {
            listener,
            state,
            threads,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &Arc<ProxyState> {
        &self.state
    }

    /// Serves until shutdown begins, then waits for sessions as the configuration says.
    pub async fn run(self) {
        let Proxy {
            listener,
            state,
            threads,
        } = self;
        if let Some(catalog) = &state.catalog {
            let publisher = watcher::Publisher {
                routing: state.routing.clone(),
                cache: state.rewrite_cache.clone(),
                reloaded: state.routing_reloaded.clone(),
            };
            tokio::spawn(watcher::watch(
                catalog.clone(),
                publisher,
                state.config.load().relation_refresh_interval,
                state.shutdown.clone(),
            ));
            tokio::spawn(tell_sessions_of_reloads(state.clone()));
        }
        let sessions = TaskTracker::new();
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
        loop {
            let (tcp, peer) = tokio::select! {
                _ = state.shutdown.begun() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            if let Some(slot) = state.client_slots.try_take() {
                let state = state.clone();
                let counters = &state.session_counters;
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                counters.active.fetch_add(1, Ordering::Relaxed);
                let serve = move |tcp: TcpStream| async move {
                    session::serve(tcp, peer, state.clone()).await;
                    state
                        .session_counters
                        .active
                        .fetch_sub(1, Ordering::Relaxed);
                    drop(slot);
                };
                match &threads {
                    None => {
                        sessions.spawn(serve(tcp));
                    }
                    // The socket is registered with this runtime's reactor: it moves as a std
                    // socket and is registered again on the session's thread.
                    Some(threads) => match tcp.into_std() {
                        Ok(tcp) => threads.spawn(sessions.track_future(async move {
                            match TcpStream::from_std(tcp) {
                                Ok(tcp) => serve(tcp).await,
                                Err(error) => {
                                    tracing::warn!(%error, "cannot move a connection to a session thread");
                                }
                            }
                        })),
                        Err(error) => {
                            tracing::warn!(%error, "cannot move a connection to a session thread");
                        }
                    },
                }
            } else if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                state
                    .session_counters
                    .refused
                    .fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                sessions.spawn(async move {
                    refuse_too_many(tcp, &state).await;
                    drop(refusal);
                });
            } else {
                state
                    .session_counters
                    .refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, "connection dropped: over max_client_connections");
            }
        }
        drop(listener);
        sessions.close();
        let shutdown_timeout = state.config.load().shutdown_timeout;
        tracing::info!(
            sessions = sessions.len(),
            timeout = ?shutdown_timeout,
            "no longer accepting connections; waiting for sessions to finish"
        );
        if tokio::time::timeout(shutdown_timeout, sessions.wait())
            .await
            .is_err()
        {
            tracing::info!(
                sessions = sessions.len(),
                "shutdown timeout reached; closing sessions"
            );
            state.shutdown.close_sessions();
            let _ = tokio::time::timeout(CLOSE_GRACE, sessions.wait()).await;
        }
        if let Some(threads) = threads {
            threads.stop().await;
        }
    }
}

/// A committed upstream cutover is recorded in the catalog (`viewgate.settings.upstream`); a
/// proxy restarted afterwards starts there rather than at its configured upstream. When the
/// catalog cannot be read, the configured upstream is used and the reason logged.
async fn use_recorded_upstream(catalog: &CatalogSource, state: &ProxyState) {
    let recorded = async {
        let (client, connection) = catalog.connect().await?;
        let connection = tokio::spawn(connection);
        let row = client
            .query_opt("SELECT upstream FROM viewgate.settings", &[])
            .await;
        drop(client);
        let _ = connection.await;
        Ok::<_, tokio_postgres::Error>(row?.and_then(|row| row.get::<_, Option<String>>(0)))
    };
    match recorded.await {
        Ok(Some(url)) if url != state.config.load().upstream => {
            match UpstreamTarget::from_url(&url, &state.config.load()) {
                Ok(target) => {
                    tracing::info!(%url, "using the upstream recorded by the last cutover");
                    state.upstream.store(Arc::new(target));
                }
                Err(error) => {
                    tracing::warn!(%error, "the catalog's recorded upstream is invalid; using the configured one")
                }
            }
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "no recorded upstream in the catalog"),
    }
}

/// Answers a connection over the limit with 53300 after its startup packet, as Postgres does.
async fn refuse_too_many(tcp: TcpStream, state: &ProxyState) {
    let deadline = tokio::time::Instant::now() + REFUSAL_TIMEOUT;
    if let Ok(Negotiated::Session { mut client, .. }) =
        handshake::negotiate(tcp, state, deadline).await
    {
        handshake::refuse(&mut client, SessionError::TooManyClients).await;
        let _ = client.shutdown().await;
    }
}

/// Tells the sessions of each reload of the routing state, until shutdown: a quiet one is
/// counted at what its next statement will run at (`session::follow_routing`).
async fn tell_sessions_of_reloads(state: Arc<ProxyState>) {
    let mut reloaded = state.routing_reloaded.subscribe();
    loop {
        tokio::select! {
            _ = state.shutdown.begun() => return,
            changed = reloaded.changed() => match changed {
                Ok(()) => state.sessions.follow_routing(),
                Err(_) => return,
            },
        }
    }
}
