//! One client's session: startup, then two pumps between client and upstream.
//!
//! The client→upstream pump counts the messages that earn a ReadyForQuery, hands Query and
//! Parse texts to the session's router (versioned sessions) and stops at Terminate; the
//! upstream→client pump watches ReadyForQuery (transaction status), FATAL errors and
//! ParameterStatus. Whichever pump ends first ends the session; the session then tells the
//! client why, if it can do so between two messages. See docs/CLIENT_SESSION.md.
//!
//! The pause gate (`pause.rs`) is consulted for the first client message after each
//! transaction boundary: while it is closed, that message is held. A switch request
//! (`switch.rs`) stops both pumps at clean points, is carried out with the session to itself
//! (a new upstream connection is prepared, swapped in, or dropped), and the pumps start again
//! on the same buffers, so a held message is forwarded to whichever upstream is current.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth::{self, Established};
use super::cancel::{CancelRegistration, UpstreamKey};
use super::error::SessionError;
use super::handshake::{self, Negotiated};
use super::ledger::RequestLedger;
use super::pause::PauseGate;
use super::pump::{Direction, Inspection, PumpEnd};
use super::reconnect::{self, Reconnected, SwitchPlan};
use super::state::ProxyState;
use super::switch::{PrepareError, Registration, SessionControl};
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::backend::{self, TransactionStatus};
use crate::protocol::frame::encode_message;
use crate::protocol::frontend;
use crate::protocol::limits::UPSTREAM_MESSAGE_MAX_LEN;
use crate::protocol::reply::{self, Severity};
use crate::protocol::sqlstate::SqlState;
use crate::protocol::startup::StartupMessage;
use crate::proxy::stats::SessionAccount;
use crate::router::{ClientIdentity, Routed, SessionRouter, version_command};

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
///
/// While the pause gate is closed a new session waits here, after its startup packet and
/// before connecting upstream, so that it connects to whichever upstream is current when the
/// gate opens. Its startup deadline starts again after the wait. A session in this stretch
/// counts as busy: a pause waits for logins under way to finish.
async fn relay_session(
    mut client: ClientStream,
    startup: StartupMessage,
    router: Option<SessionRouter>,
    state: Arc<ProxyState>,
    mut deadline: Instant,
) -> Result<(), SessionError> {
    let startup_pass = match pass_gate(&state).await {
        Ok((pass, waited)) => {
            if waited {
                deadline = Instant::now() + state.config.startup_timeout;
            }
            pass
        }
        Err(error) => return Err(handshake::refuse(&mut client, error).await),
    };
    let connected = async {
        let target = state.upstream.load_full();
        let mut upstream = target.connect().await?;
        let established = tokio::time::timeout_at(
            deadline,
            auth::establish(&mut client, &mut upstream, &target, &startup, &state),
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
    // Registered before the startup pass ends, so a switch that waits for quiet sessions
    // cannot miss this one.
    let session = Session::new(client, upstream, established, startup, router, state);
    drop(startup_pass);
    session.run().await
}

/// Enters the gate as a busy session for the startup, waiting while it is closed; says
/// whether it waited.
async fn pass_gate(state: &Arc<ProxyState>) -> Result<(StartupPass, bool), SessionError> {
    let mut waited_since = None;
    loop {
        if state.pause.try_enter() {
            if let Some(since) = waited_since {
                state.pause.hold_ended(since);
            }
            return Ok((StartupPass(state.clone()), waited_since.is_some()));
        }
        if waited_since.is_none() {
            let now = std::time::Instant::now();
            state.pause.hold_started(now);
            waited_since = Some(now);
        }
        tokio::select! {
            _ = state.pause.opened() => {}
            _ = state.shutdown.sessions_closing() => return Err(SessionError::Shutdown),
        }
    }
}

/// A session counted busy while it connects and logs in.
struct StartupPass(Arc<ProxyState>);

impl Drop for StartupPass {
    fn drop(&mut self) {
        self.0.pause.leave();
    }
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
    /// An extended-protocol message (Parse, Bind, Describe, Execute, Close) was sent since the
    /// last Sync: the batch is open, and its unnamed statement or portal would not survive a
    /// move to another upstream.
    open_batch: AtomicBool,
    /// The session counts as busy at the pause gate (entered, not yet left).
    busy: AtomicBool,
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

    /// At a boundary where the pause gate may hold the session or move it to another
    /// upstream: idle, and no extended-protocol batch left open.
    fn quiet(&self) -> bool {
        self.idle() && !self.open_batch.load(Ordering::Relaxed)
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
                self.open_batch.store(false, Ordering::Relaxed);
            }
            // Parse, Bind and Describe run nothing (asyncpg prepares with Parse, Describe and
            // Flush, and no Sync); an Execute does.
            frontend::EXECUTE => {
                self.unsynced.store(true, Ordering::Relaxed);
                self.open_batch.store(true, Ordering::Relaxed);
            }
            frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE => {
                self.open_batch.store(true, Ordering::Relaxed)
            }
            _ => {}
        }
    }

    /// Called for each client message before it is forwarded: the first message of new work
    /// enters the pause gate, or is held there. `false` means hold.
    fn enter(&self, gate: &PauseGate, tag: u8) -> bool {
        if !starts_work(tag) || self.busy.load(Ordering::Relaxed) {
            return true;
        }
        if !gate.try_enter() {
            return false;
        }
        self.busy.store(true, Ordering::Relaxed);
        true
    }

    /// Called after each upstream message: leaves the gate at the boundary.
    fn maybe_leave(&self, gate: &PauseGate) {
        if self.busy.load(Ordering::Relaxed) && self.quiet() {
            self.busy.store(false, Ordering::Relaxed);
            gate.leave();
        }
    }
}

/// Client messages that begin work when they arrive at a boundary. Flush and the COPY
/// messages do not (they only mean something inside work already counted); Terminate ends
/// the session and is never held.
fn starts_work(tag: u8) -> bool {
    !matches!(
        tag,
        frontend::FLUSH
            | frontend::COPY_DATA
            | frontend::COPY_DONE
            | frontend::COPY_FAIL
            | frontend::TERMINATE
    )
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
    /// ParameterStatus values, as the client last heard them.
    parameters: Vec<(String, String)>,
    /// Per-version accounting of a versioned session's requests (unused when unversioned).
    account: SessionAccount,
    ledger: RequestLedger,
    /// The client's startup, replayed when the session moves to another upstream.
    startup: StartupMessage,
    cancel_key: Option<CancelRegistration>,
    /// Switch requests (`switch.rs`); `None` once the registry has gone.
    control: Option<mpsc::Receiver<SessionControl>>,
    /// A connection to the next upstream, set up and waiting for the switch's commit.
    pending: Option<Reconnected>,
    _registration: Registration,
}

impl Session {
    fn new(
        client: ClientStream,
        upstream: UpstreamStream,
        established: Established,
        startup: StartupMessage,
        router: Option<SessionRouter>,
        state: Arc<ProxyState>,
    ) -> Self {
        let (registration, control) = state.sessions.register();
        Session {
            client,
            upstream,
            from_client: Direction::new(
                established.client_leftover,
                state.config.max_message_len,
                true,
            ),
            from_upstream: Direction::new(
                established.upstream_leftover,
                UPSTREAM_MESSAGE_MAX_LEN,
                false,
            ),
            progress: Progress::default(),
            router,
            upstream_key: established.upstream_key,
            parameters: established.parameters,
            account: SessionAccount::new(state.telemetry.clone()),
            ledger: RequestLedger::default(),
            startup,
            cancel_key: established.cancel_key,
            control: Some(control),
            pending: None,
            _registration: registration,
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
                let _ = self.upstream.write_all(&frontend::TERMINATE_MESSAGE).await;
            }
            Ok(()) => {}
        }
        if let Some(pending) = self.pending.take() {
            pending.discard().await;
        }
        let _ = self.client.shutdown().await;
        let _ = self.upstream.shutdown().await;
        result
    }

    /// Runs the pumps, stopping them for each switch request and starting them again after.
    async fn relay(&mut self) -> Result<(), SessionError> {
        loop {
            match self.relay_until_control().await? {
                Some(control) => self.obey(control).await?,
                None => return Ok(()),
            }
        }
    }

    /// Runs both pumps until one ends (or shutdown closes sessions), or until a switch request
    /// arrives: then both pumps are stopped at clean points and the request is returned.
    async fn relay_until_control(&mut self) -> Result<Option<SessionControl>, SessionError> {
        let Session {
            client,
            upstream,
            state,
            from_client,
            from_upstream,
            progress,
            router,
            parameters,
            control,
            account,
            ledger,
            ..
        } = self;
        let shutdown = state.shutdown.clone();
        let gate = &state.pause;
        let stop = CancellationToken::new();
        let (client_reader, client_writer) = client.split();
        let (upstream_reader, upstream_writer) = upstream.split();
        let progress = &*progress;
        let ledger = &*ledger;

        let to_upstream = from_client.pump(
            client_reader,
            upstream_writer,
            frontend::session_interest,
            |tag, frame| {
                if tag == frontend::TERMINATE {
                    return Inspection::Stop;
                }
                if !progress.enter(gate, tag) {
                    return Inspection::Hold;
                }
                // Decided before this message itself counts as in flight.
                let idle = progress.idle();
                progress.sent(tag);
                let Some(router) = router.as_mut() else {
                    return Inspection::Continue;
                };
                let inspection = match tag {
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
            },
            gate,
            stop.cancelled(),
        );
        let to_client = from_upstream.pump(
            upstream_reader,
            client_writer,
            backend::session_interest,
            |tag, frame| inspect_upstream(progress, ledger, gate, parameters, tag, frame),
            gate,
            stop.cancelled(),
        );
        tokio::pin!(to_upstream, to_client);
        let mut request = None;
        let (mut client_side_stopped, mut upstream_side_stopped) = (false, false);
        loop {
            tokio::select! {
                // Fixed order: cheaper than tokio's random start.
                biased;
                _ = shutdown.sessions_closing() => return Err(SessionError::Shutdown),
                received = next_control(control), if request.is_none() && control.is_some() => {
                    match received {
                        Some(received) => {
                            request = Some(received);
                            stop.cancel();
                        }
                        None => *control = None,
                    }
                }
                end = &mut to_upstream, if !client_side_stopped => match end {
                    PumpEnd::Interrupted => client_side_stopped = true,
                    PumpEnd::Stopped => return Ok(None),
                    PumpEnd::ReaderClosed => return Err(SessionError::ClientGone),
                    PumpEnd::WriterFailed => return Err(upstream_gone(progress)),
                    PumpEnd::Protocol(error) => return Err(SessionError::client_protocol(error)),
                    PumpEnd::Invalid(reason) => {
                        return Err(SessionError::ClientProtocol(reason.into()));
                    }
                },
                end = &mut to_client, if !upstream_side_stopped => match end {
                    PumpEnd::Interrupted => upstream_side_stopped = true,
                    PumpEnd::ReaderClosed => return Err(upstream_gone(progress)),
                    PumpEnd::WriterFailed => return Err(SessionError::ClientGone),
                    PumpEnd::Protocol(error) => {
                        return Err(SessionError::UpstreamProtocol(error.to_string()));
                    }
                    PumpEnd::Invalid(reason) => {
                        return Err(SessionError::UpstreamProtocol(reason.into()));
                    }
                    PumpEnd::Stopped => return Ok(None),
                },
            }
            if client_side_stopped && upstream_side_stopped {
                return Ok(request);
            }
        }
    }

    /// Carries out a switch request with both pumps stopped.
    async fn obey(&mut self, control: SessionControl) -> Result<(), SessionError> {
        match control {
            SessionControl::Prepare { plan, reply } => {
                let result = self.prepare_move(&plan).await;
                let _ = reply.send(result);
            }
            SessionControl::Commit { reply } => {
                let result = self.commit_move().await;
                let _ = reply.send(());
                result?;
            }
            SessionControl::Abort { reply } => {
                if let Some(pending) = self.pending.take() {
                    pending.discard().await;
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    /// Opens and sets up the connection to the plan's upstream; the old one stays in use.
    async fn prepare_move(&mut self, plan: &SwitchPlan) -> Result<(), PrepareError> {
        let who = format!(
            "session of user \"{}\" on database \"{}\"",
            self.startup.user(),
            self.startup.database()
        );
        if !self.progress.quiet()
            || !self.from_upstream.is_drained()
            || !self.from_client.at_message_boundary()
        {
            return Err(PrepareError::NotAtBoundary { who });
        }
        if let Some(old) = self.pending.take() {
            old.discard().await;
        }
        let mut to_client = BytesMut::new();
        let prepared =
            reconnect::prepare(&mut self.upstream, &mut to_client, &self.startup, plan).await;
        if !to_client.is_empty() {
            let _ = self.client.write_all(&to_client).await;
            let _ = self.client.flush().await;
        }
        match prepared {
            Ok(reconnected) => {
                self.pending = Some(reconnected);
                Ok(())
            }
            Err(source) => Err(PrepareError::Reconnect { who, source }),
        }
    }

    /// Swaps to the prepared connection and ends the old one. The client keeps its cancel
    /// key (now pointing at the new backend) and hears of every parameter whose value the new
    /// server reports differently; that happens here, between two messages of its stream.
    async fn commit_move(&mut self) -> Result<(), SessionError> {
        let Some(reconnected) = self.pending.take() else {
            return Ok(());
        };
        let mut old = std::mem::replace(&mut self.upstream, reconnected.stream);
        let _ = old.write_all(&frontend::TERMINATE_MESSAGE).await;
        let _ = old.shutdown().await;
        drop(old);
        let login = reconnected.login;
        self.from_upstream = Direction::new(login.leftover, UPSTREAM_MESSAGE_MAX_LEN, false);
        let key = UpstreamKey {
            target: self.state.upstream.load_full(),
            process_id: login.process_id,
            secret: login.secret,
        };
        if let Some(registration) = &self.cancel_key {
            registration.repoint(key.clone());
        }
        self.upstream_key = Some(key);
        let mut reports = BytesMut::new();
        for (name, value) in login.parameters {
            let known = self.parameters.iter_mut().find(|(known, _)| *known == name);
            match known {
                Some(entry) if entry.1 == value => continue,
                Some(entry) => entry.1 = value.clone(),
                None => self.parameters.push((name.clone(), value.clone())),
            }
            encode_message(&mut reports, backend::PARAMETER_STATUS, |b| {
                b.put_slice(name.as_bytes());
                b.put_u8(0);
                b.put_slice(value.as_bytes());
                b.put_u8(0);
            });
        }
        if !reports.is_empty() {
            let written = async {
                self.client.write_all(&reports).await?;
                self.client.flush().await
            };
            written.await.map_err(|_| SessionError::ClientGone)?;
        }
        tracing::debug!("session moved to the new upstream");
        Ok(())
    }

    /// The client vanished: stop whatever it left running upstream, then close politely.
    async fn abandon_upstream(&mut self) {
        if self.progress.awaiting_ready.load(Ordering::Relaxed) > 0
            && let Some(key) = &self.upstream_key
            && let Err(error) = key.target.send_cancel(key.process_id, &key.secret).await
        {
            tracing::warn!(%error, "could not cancel the upstream query of a vanished client");
        }
        let _ = self.upstream.write_all(&frontend::TERMINATE_MESSAGE).await;
    }
}

impl Drop for Session {
    /// A session that ends with work in flight no longer counts as busy.
    fn drop(&mut self) {
        if self.progress.busy.swap(false, Ordering::Relaxed) {
            self.state.pause.leave();
        }
    }
}

async fn next_control(
    control: &mut Option<mpsc::Receiver<SessionControl>>,
) -> Option<SessionControl> {
    match control {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn upstream_gone(progress: &Progress) -> SessionError {
    if progress.upstream_fatal.load(Ordering::Relaxed) {
        SessionError::UpstreamEnded
    } else {
        SessionError::UpstreamClosed
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

fn inspect_upstream(
    progress: &Progress,
    ledger: &RequestLedger,
    gate: &PauseGate,
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
            progress.maybe_leave(gate);
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
