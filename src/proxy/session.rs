//! One client's session: startup, then two pumps between client and upstream.
//!
//! The client→upstream pump counts the messages that earn a ReadyForQuery, hands Query and
//! Parse texts to the session's router (versioned sessions) and stops at Terminate; the
//! upstream→client pump watches ReadyForQuery (transaction status), FATAL errors and
//! ParameterStatus. Whichever pump ends first ends the session; the session then tells the
//! client why, if it can do so between two messages. See docs/CLIENT_SESSION.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use super::auth::{self, Established};
use super::cancel::{CancelRegistration, UpstreamKey};
use super::error::SessionError;
use super::handshake::{self, Negotiated};
use super::ledger::RequestLedger;
use super::pump::{Direction, Inspection, PumpEnd};
use super::state::ProxyState;
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::backend::{self, TransactionStatus};
use crate::protocol::frontend;
use crate::protocol::reply::{self, Severity};
use crate::protocol::sqlstate::SqlState;
use crate::protocol::startup::StartupMessage;
use crate::router::{ClientIdentity, Routed, SessionRouter, version_command};
use crate::telemetry::SessionAccount;

/// Upstream messages are framed with the protocol's own bound; the proxy only inspects small
/// ones whole (ReadyForQuery, ErrorResponse, ParameterStatus).
const UPSTREAM_MAX_MESSAGE_LEN: usize = i32::MAX as usize;

/// Serves one accepted connection to its end. Never panics on input; errors are logged.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, state: Arc<ProxyState>) {
    let deadline = Instant::now() + state.config.startup_timeout;
    let (mut client, startup) = match handshake::negotiate(tcp, &state, deadline).await {
        Ok(Negotiated::Session { client, startup }) => (client, startup),
        Ok(Negotiated::Cancelled) => return,
        Err(error) => return log_end(peer, &error),
    };
    let router = match session_router(&startup, peer, &state) {
        Ok(router) => router,
        Err(error) => {
            let error = handshake::refuse(&mut client, error).await;
            return log_end(peer, &error);
        }
    };
    let span = tracing::debug_span!("session", %peer, user = startup.user(), database = startup.database());
    relay_session(client, startup, router, state, deadline)
        .instrument(span)
        .await
        .unwrap_or_else(|error| log_end(peer, &error));
}

/// Connects upstream, relays authentication, then runs the session to its end.
async fn relay_session(
    mut client: ClientStream,
    startup: StartupMessage,
    router: Option<SessionRouter>,
    state: Arc<ProxyState>,
    deadline: Instant,
) -> Result<(), SessionError> {
    let connected = async {
        let mut upstream = state.upstream.connect().await?;
        let established = tokio::time::timeout_at(
            deadline,
            auth::establish(&mut client, &mut upstream, &startup, &state),
        )
        .await
        .map_err(|_| SessionError::StartupTimeout)??;
        Ok::<_, SessionError>((upstream, established))
    };
    let (upstream, established) = match connected.await {
        Ok(pair) => pair,
        Err(error) => return Err(handshake::refuse(&mut client, error).await),
    };
    tracing::debug!("session established");
    Session::new(client, upstream, established, router, state)
        .run()
        .await
}

/// The session's router, when versioning is on; an unknown declared version is refused.
/// Routing rules match on the startup's user, database and application_name and on `peer`.
fn session_router(
    startup: &StartupMessage,
    peer: SocketAddr,
    state: &ProxyState,
) -> Result<Option<SessionRouter>, SessionError> {
    let Some(catalog) = &state.catalog else {
        return Ok(None);
    };
    // Until the catalog has been read, the proxy cannot tell which version a session on its
    // database should see; serving it unversioned would put it on the base tables.
    if startup.database() == catalog.database() && !state.routing.load().loaded() {
        return Err(SessionError::Refused {
            code: SqlState::CANNOT_CONNECT_NOW,
            message: format!(
                "viewgate has not loaded its catalog for database \"{}\" yet; retry shortly",
                catalog.database()
            ),
        });
    }
    let client = ClientIdentity {
        user: startup.user().to_owned(),
        database: startup.database().to_owned(),
        application_name: startup.param("application_name").unwrap_or("").to_owned(),
        address: Some(peer.ip()),
    };
    SessionRouter::new(
        state.routing.clone(),
        client,
        version_command::from_startup(&startup.params),
        &state.config.sticky_identity,
        state.config.unparseable_policy,
        state.rewrite_cache.clone(),
    )
    .map(Some)
    .map_err(|error| SessionError::Refused {
        code: SqlState::INVALID_PARAMETER_VALUE,
        message: error.to_string(),
    })
}

fn log_end(peer: SocketAddr, error: &SessionError) {
    match error {
        SessionError::ClientGone | SessionError::UpstreamEnded | SessionError::Shutdown => {
            tracing::debug!(%peer, %error, "session ended")
        }
        _ => tracing::warn!(%peer, %error, "session ended with an error"),
    }
}

/// What both pumps read and write. Atomics because the session future must be `Send`; both
/// pumps run in one task, so `Relaxed` suffices.
#[derive(Default)]
struct Progress {
    /// Messages sent upstream that are still owed a ReadyForQuery.
    awaiting_ready: AtomicU32,
    transaction: AtomicU8,
    /// The upstream sent a FATAL error: the client knows why the session is ending.
    upstream_fatal: AtomicBool,
    /// An Execute was sent since the last Sync: work runs that only the Sync will end.
    unsynced: AtomicBool,
}

impl Progress {
    /// At a transaction boundary: the last ReadyForQuery said idle and nothing sent since is
    /// still in flight. A pipelined BEGIN has not been answered yet, so what follows it is not
    /// at a boundary even though the last status says idle.
    fn idle(&self) -> bool {
        self.transaction.load(Ordering::Relaxed) == TransactionStatus::Idle as u8
            && self.awaiting_ready.load(Ordering::Relaxed) == 0
            && !self.unsynced.load(Ordering::Relaxed)
    }

    /// Accounts for a client message on its way upstream.
    fn sent(&self, tag: u8) {
        match tag {
            frontend::QUERY | frontend::FUNCTION_CALL => {
                self.awaiting_ready.fetch_add(1, Ordering::Relaxed);
            }
            frontend::SYNC => {
                self.awaiting_ready.fetch_add(1, Ordering::Relaxed);
                self.unsynced.store(false, Ordering::Relaxed);
            }
            // Parse, Bind and Describe run nothing (asyncpg prepares with Parse, Describe and
            // Flush, and no Sync); an Execute does.
            frontend::EXECUTE => self.unsynced.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
}

struct Session {
    client: ClientStream,
    upstream: UpstreamStream,
    state: Arc<ProxyState>,
    from_client: Direction,
    from_upstream: Direction,
    progress: Progress,
    router: Option<SessionRouter>,
    upstream_key: Option<UpstreamKey>,
    /// ParameterStatus values, kept to replay the session on another upstream later.
    parameters: Vec<(String, String)>,
    /// Per-version accounting of a versioned session's requests (unused when unversioned).
    account: SessionAccount,
    ledger: RequestLedger,
    _cancel_key: Option<CancelRegistration>,
}

impl Session {
    fn new(
        client: ClientStream,
        upstream: UpstreamStream,
        established: Established,
        router: Option<SessionRouter>,
        state: Arc<ProxyState>,
    ) -> Self {
        Session {
            client,
            upstream,
            from_client: Direction::new(established.client_leftover, state.config.max_message_len),
            from_upstream: Direction::new(established.upstream_leftover, UPSTREAM_MAX_MESSAGE_LEN),
            progress: Progress::default(),
            router,
            upstream_key: established.upstream_key,
            parameters: established.parameters,
            account: SessionAccount::new(state.telemetry.clone()),
            ledger: RequestLedger::default(),
            _cancel_key: established.cancel_key,
            state,
        }
    }

    async fn run(mut self) -> Result<(), SessionError> {
        let result = self.relay().await;
        match &result {
            Err(SessionError::ClientGone) => self.abandon_upstream().await,
            Err(error) => {
                if let Some((code, message)) = error.client_report()
                    && self.from_upstream.at_message_boundary()
                {
                    let frame = reply::error_response(Severity::Fatal, code, &message, None);
                    let _ = self.client.write_all(&frame).await;
                    let _ = self.client.flush().await;
                }
                let _ = self.upstream.write_all(&terminate_message()).await;
            }
            Ok(()) => {}
        }
        let _ = self.client.shutdown().await;
        let _ = self.upstream.shutdown().await;
        result
    }

    /// Runs both pumps until one ends (or shutdown closes sessions).
    async fn relay(&mut self) -> Result<(), SessionError> {
        let shutdown = self.state.shutdown.clone();
        let (client_reader, client_writer) = self.client.split();
        let (upstream_reader, upstream_writer) = self.upstream.split();
        let progress = &self.progress;
        let parameters = &mut self.parameters;
        let router = &mut self.router;
        let account = &mut self.account;
        let ledger = &self.ledger;

        let wanted = if router.is_some() {
            frontend::is_inspected_versioned
        } else {
            frontend::is_inspected
        };
        let to_upstream =
            self.from_client
                .pump(client_reader, upstream_writer, wanted, |tag, frame| {
                    // Decided before this message itself counts as in flight.
                    let idle = progress.idle();
                    progress.sent(tag);
                    let Some(router) = router.as_mut() else {
                        return match tag {
                            frontend::TERMINATE => Inspection::Stop,
                            _ => Inspection::Continue,
                        };
                    };
                    let inspection = match tag {
                        frontend::TERMINATE => Inspection::Stop,
                        frontend::QUERY | frontend::PARSE => {
                            let inspection = route(router, idle, tag, frame);
                            account_for(router, account, ledger);
                            inspection
                        }
                        _ => Inspection::Continue,
                    };
                    if matches!(
                        tag,
                        frontend::QUERY | frontend::SYNC | frontend::FUNCTION_CALL
                    ) {
                        ledger.sent();
                    }
                    inspection
                });
        let to_client = self.from_upstream.pump(
            upstream_reader,
            client_writer,
            is_inspected_upstream,
            |tag, frame| inspect_upstream(progress, ledger, parameters, tag, frame),
        );
        tokio::select! {
            // Fixed order: cheaper than tokio's random start, and each branch is one future.
            biased;
            _ = shutdown.sessions_closing() => Err(SessionError::Shutdown),
            end = to_upstream => match end {
                PumpEnd::Stopped => Ok(()),
                PumpEnd::ReaderClosed => Err(SessionError::ClientGone),
                PumpEnd::WriterFailed => Err(self.upstream_gone()),
                PumpEnd::Protocol(error) => Err(SessionError::client_protocol(error)),
                PumpEnd::Invalid(reason) => Err(SessionError::ClientProtocol(reason.into())),
            },
            end = to_client => match end {
                PumpEnd::ReaderClosed => Err(self.upstream_gone()),
                PumpEnd::WriterFailed => Err(SessionError::ClientGone),
                PumpEnd::Protocol(error) => Err(SessionError::UpstreamProtocol(error.to_string())),
                PumpEnd::Invalid(reason) => Err(SessionError::UpstreamProtocol(reason.into())),
                PumpEnd::Stopped => Ok(()),
            },
        }
    }

    fn upstream_gone(&self) -> SessionError {
        if self.progress.upstream_fatal.load(Ordering::Relaxed) {
            SessionError::UpstreamEnded
        } else {
            SessionError::UpstreamClosed
        }
    }

    /// The client vanished: stop whatever it left running upstream, then close politely.
    async fn abandon_upstream(&mut self) {
        if self.progress.awaiting_ready.load(Ordering::Relaxed) > 0
            && let Some(key) = &self.upstream_key
            && let Err(error) = key.target.send_cancel(key.process_id, &key.secret).await
        {
            tracing::warn!(%error, "could not cancel the upstream query of a vanished client");
        }
        let _ = self.upstream.write_all(&terminate_message()).await;
    }
}

/// Rewrites a Query or Parse for the session's version. Text that is not UTF-8 (another
/// client_encoding) is forwarded unread.
fn route(router: &mut SessionRouter, idle: bool, tag: u8, frame: &[u8]) -> Inspection {
    let Some(sql) = frontend::statement_text(tag, frame) else {
        return Inspection::Continue;
    };
    match router.statement(sql, idle) {
        Routed::Forward => Inspection::Continue,
        Routed::Replace(text) => match frontend::with_statement(tag, frame, &text) {
            Some(message) => Inspection::Replace(message),
            None => Inspection::Continue,
        },
    }
}

/// Counts the session's next requests against the version (and rule) now in effect.
fn account_for(router: &SessionRouter, account: &mut SessionAccount, ledger: &RequestLedger) {
    match router.assignment() {
        Some(assignment) => {
            ledger.attribute(account.assign(assignment.version(), assignment.reason))
        }
        None => account.release(),
    }
}

fn is_inspected_upstream(tag: u8) -> bool {
    matches!(
        tag,
        backend::READY_FOR_QUERY | backend::ERROR_RESPONSE | backend::PARAMETER_STATUS
    )
}

fn inspect_upstream(
    progress: &Progress,
    ledger: &RequestLedger,
    parameters: &mut Vec<(String, String)>,
    tag: u8,
    frame: &[u8],
) -> Inspection {
    match tag {
        backend::READY_FOR_QUERY => {
            let Some(status) = backend::ready_for_query(frame) else {
                return Inspection::Invalid("ReadyForQuery with an unknown transaction status");
            };
            progress.transaction.store(status as u8, Ordering::Relaxed);
            // Saturating: a server may answer a Sync the proxy did not count (none today).
            let _ =
                progress
                    .awaiting_ready
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            ledger.ready();
        }
        backend::ERROR_RESPONSE => {
            if let Some(fields) = backend::error_fields(frame) {
                if matches!(fields.severity.as_str(), "FATAL" | "PANIC") {
                    progress.upstream_fatal.store(true, Ordering::Relaxed);
                }
                ledger.error(&fields.code);
            }
        }
        backend::PARAMETER_STATUS => {
            if let Some((name, value)) = backend::parameter_status(frame) {
                match parameters.iter_mut().find(|(known, _)| *known == name) {
                    Some(entry) => entry.1 = value,
                    None => parameters.push((name, value)),
                }
            }
        }
        _ => {}
    }
    Inspection::Continue
}

fn terminate_message() -> [u8; 5] {
    [frontend::TERMINATE, 0, 0, 0, 4]
}
