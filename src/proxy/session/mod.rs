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
//! (`switch/`) stops both pumps at clean points, is carried out with the session to itself
//! (a new upstream connection is prepared, swapped in, or dropped), and the pumps start again
//! on the same buffers, so a held message is forwarded to whichever upstream is current.
//!
//! This file sets a session up (handshake, routing, login) and ends it; its parts live beside
//! it: `progress` (transaction boundaries), `relay` (the pump loop) and `upstream_move` (the
//! move to another upstream).

mod error_position;
mod follow_routing;
mod hidden_detail;
mod own_answers;
mod progress;
mod relay;
mod reported_name;
mod table_at_version;
mod tell_after_reset;
mod upstream_move;
mod version_guard;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use self::progress::Progress;
use crate::model::catalog_substitutes::{
    CLIENT_MIN_MESSAGES, SEARCH_PATH, STANDARD_CONFORMING_STRINGS,
};
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::frontend;
use crate::protocol::limits::UPSTREAM_MESSAGE_MAX_LEN;
use crate::protocol::reply::{self, Severity};
use crate::protocol::sqlstate::SqlState;
use crate::protocol::startup::{StartupMessage, startup_setting};
use crate::proxy::auth::{self, Established};
use crate::proxy::cancel::{CancelRegistration, UpstreamKey};
use crate::proxy::error::SessionError;
use crate::proxy::handshake::{self, Negotiated};
use crate::proxy::ledger::RequestLedger;
use crate::proxy::pump::Direction;
use crate::proxy::reconnect::Reconnected;
use crate::proxy::shadow_session::ShadowSession;
use crate::proxy::state::ProxyState;
use crate::proxy::stats::{Introduction, SessionAccount, SessionCard};
use crate::proxy::switch::{Registration, SessionControl};
use crate::router::version_command::VERSION_SETTING;
use crate::router::{ClientIdentity, SessionRouter, search_path, version_command};

/// Serves one accepted connection to its end. Never panics on input; errors are logged.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, state: Arc<ProxyState>) {
    let deadline = Instant::now() + state.config.load().startup_timeout;
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
    // The server's `viewgate.version` starts at the session's version, never at what the
    // client declared (an enforced rule may have overridden it): `RESET`, `RESET ALL` and
    // `SET … TO DEFAULT` go back to it, and a session the proxy cannot tell the version
    // to in time writes at it (the sixteenth red-team pass).
    let startup = match router.as_ref().and_then(SessionRouter::version) {
        Some(version) => startup.with_setting(VERSION_SETTING, Some(version)),
        None => startup,
    };
    relay_session(client, peer, startup, router, state, deadline)
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
    peer: SocketAddr,
    startup: StartupMessage,
    router: Option<SessionRouter>,
    state: Arc<ProxyState>,
    mut deadline: Instant,
) -> Result<(), SessionError> {
    let startup_pass = match pass_gate(&state).await {
        Ok((pass, waited)) => {
            if waited {
                deadline = Instant::now() + state.config.load().startup_timeout;
            }
            pass
        }
        Err(error) => return Err(handshake::refuse(&mut client, error).await),
    };
    let connected = async {
        let target = state.upstream.load_full();
        let mut upstream = target.connect().await?;
        let ask_search_path = router
            .as_ref()
            .is_some_and(SessionRouter::wants_login_search_path);
        let established = tokio::time::timeout_at(
            deadline,
            auth::establish(
                &mut client,
                &mut upstream,
                &target,
                &startup,
                &state,
                ask_search_path,
            ),
        )
        .await
        .map_err(|_| SessionError::StartupTimeout)??;
        Ok::<_, SessionError>((upstream, established))
    };
    let (upstream, established) = match connected.await {
        Ok(pair) => pair,
        Err(error) => return Err(handshake::refuse(&mut client, error).await),
    };
    let mut router = router;
    if let (Some(router), Some(path)) = (router.as_mut(), &established.search_path) {
        router.login_search_path(path);
    }
    tracing::debug!("session established");
    // Registered before the startup pass ends, so a switch that waits for quiet sessions
    // cannot miss this one.
    let session = Session::new(client, peer, upstream, established, startup, router, state);
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
        // Without a catalog nothing is versioned; a session that asks for a version must not
        // be served the base tables as if it had one (the fifty-third red-team pass).
        if let Some(version) = version_command::from_startup(&startup.params) {
            return Err(SessionError::Refused {
                code: SqlState::INVALID_PARAMETER_VALUE,
                message: format!(
                    "viewgate.version \"{version}\" asks for a version, but this proxy has no catalog (set `catalog` in its configuration), so it versions nothing; leave viewgate.version out"
                ),
            });
        }
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
    let config = state.config.load_full();
    let mut router = SessionRouter::new(
        state.routing.clone(),
        client,
        version_command::from_startup(&startup.params),
        &config.sticky_identity,
        config.unparseable_policy,
        state.rewrite_cache.clone(),
    )
    .map_err(|error| SessionError::Refused {
        code: SqlState::INVALID_PARAMETER_VALUE,
        message: error.to_string(),
    })?;
    let declared = startup_setting(&startup.params, SEARCH_PATH);
    if let Some(message) = router.startup_path_refusal(declared.as_deref()) {
        return Err(SessionError::Refused {
            code: SqlState::FEATURE_NOT_SUPPORTED,
            message: format!("viewgate: {message}"),
        });
    }
    let strings = startup_setting(&startup.params, STANDARD_CONFORMING_STRINGS);
    let levels = startup_setting(&startup.params, CLIENT_MIN_MESSAGES);
    if let Some(message) = router
        .startup_strings_refusal(strings.as_deref())
        .or_else(|| router.startup_messages_refusal(levels.as_deref()))
    {
        return Err(SessionError::Refused {
            code: SqlState::FEATURE_NOT_SUPPORTED,
            message: format!("viewgate: {message}"),
        });
    }
    router.declare_search_path(search_path::from_startup(&startup.params).as_deref());
    Ok(Some(router))
}

fn log_end(peer: SocketAddr, error: &SessionError) {
    match error {
        SessionError::ClientGone | SessionError::UpstreamEnded | SessionError::Shutdown => {
            tracing::debug!(%peer, %error, "session ended")
        }
        _ => tracing::warn!(%peer, %error, "session ended with an error"),
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
    /// ParameterStatus values, as the client last heard them.
    parameters: Vec<(String, String)>,
    /// An application_name the session set, for its router.
    reported_name: reported_name::ReportedName,
    /// Per-version accounting of a versioned session's requests, and the card that lists the
    /// session (versioned or not) to the heartbeat and the admin API.
    account: SessionAccount,
    ledger: RequestLedger,
    /// The client's startup, with the session's version for `viewgate.version`: what the
    /// upstream was sent, replayed when the session moves to another upstream.
    startup: StartupMessage,
    cancel_key: Option<CancelRegistration>,
    /// Switch requests (`switch/`); `None` once the registry has gone.
    control: Option<mpsc::Receiver<SessionControl>>,
    /// A connection to the next upstream, set up and waiting for the switch's commit.
    pending: Option<Reconnected>,
    /// The `viewgate.version` the upstream session has: the session's version at startup,
    /// then what the proxy last set (migrations' sync triggers tell writers apart by it).
    upstream_version: Option<String>,
    /// What shadow reads need to remember of the session (prepared reads, search_path).
    shadow: ShadowSession,
    /// Its place in the registry, through which switch requests and reminders reach it.
    registration: Registration,
}

impl Session {
    fn new(
        client: ClientStream,
        peer: SocketAddr,
        upstream: UpstreamStream,
        established: Established,
        startup: StartupMessage,
        router: Option<SessionRouter>,
        state: Arc<ProxyState>,
    ) -> Self {
        let (registration, control) = state.sessions.register();
        let upstream_version = startup_setting(&startup.params, VERSION_SETTING);
        let mut router = router;
        if let Some(router) = router.as_mut() {
            router.started_upstream_at(upstream_version.as_deref());
        }
        let progress = Progress::new();
        let introduction = Introduction {
            client: peer,
            user: startup.user().to_owned(),
            database: startup.database().to_owned(),
            application_name: startup.param("application_name").unwrap_or("").to_owned(),
            backend_pid: established.upstream_key.as_ref().map(|key| key.process_id),
        };
        let card = SessionCard::new(introduction, progress.transaction.clone());
        Session {
            client,
            upstream,
            from_client: Direction::new(
                established.client_leftover,
                state.config.load().max_message_len,
                true,
            ),
            from_upstream: Direction::new(
                established.upstream_leftover,
                UPSTREAM_MESSAGE_MAX_LEN,
                false,
            ),
            progress,
            shadow: ShadowSession::new(&startup.params),
            router,
            upstream_key: established.upstream_key,
            parameters: established.parameters,
            reported_name: Default::default(),
            account: SessionAccount::listed(state.telemetry.clone(), card),
            ledger: RequestLedger::default(),
            startup,
            cancel_key: established.cancel_key,
            control: Some(control),
            pending: None,
            upstream_version,
            registration,
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
