//! One client's session: startup, then the message loop between client and upstream.
//!
//! The loop waits on both sockets at once. Bytes from either side are scanned for message
//! boundaries and forwarded as they came, in one write per read; only the few messages the
//! proxy acts on are looked at, and only those need to be complete before they are forwarded.
//! See docs/CLIENT_SESSION.md for the loop written as a specification.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::auth::{self, Established};
use super::cancel::{CancelRegistration, UpstreamKey};
use super::error::SessionError;
use super::handshake::{self, Negotiated};
use super::state::ProxyState;
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::backend::{self, TransactionStatus};
use crate::protocol::frame::{FrameError, FrameScanner, Step};
use crate::protocol::frontend;
use crate::protocol::reply::{self, Severity};

/// Free space kept in each read buffer: what one read can take.
const READ_CHUNK: usize = 16 * 1024;
/// A buffer that grew past this for one large message is replaced once empty, so an idle
/// session does not keep its peak.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Upstream messages larger than this are never inspected whole (ErrorResponse,
/// ParameterStatus and ReadyForQuery are far smaller); it bounds upstream framing.
const UPSTREAM_MAX_MESSAGE_LEN: usize = i32::MAX as usize;

/// Serves one accepted connection to its end. Never panics on input; errors are logged.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, state: Arc<ProxyState>) {
    let deadline = Instant::now() + state.config.startup_timeout;
    let (client, startup) = match handshake::negotiate(tcp, &state, deadline).await {
        Ok(Negotiated::Session { client, startup }) => (client, startup),
        Ok(Negotiated::Cancelled) => return,
        Err(error) => {
            log_end(peer, &error);
            return;
        }
    };
    let span = tracing::debug_span!("session", %peer, user = startup.user(), database = startup.database());
    let _enter = span.enter();
    let mut client = client;
    let upstream = async {
        let mut upstream = state.upstream.connect().await?;
        let established = tokio::time::timeout_at(
            deadline,
            auth::establish(&mut client, &mut upstream, &startup, &state),
        )
        .await
        .map_err(|_| SessionError::StartupTimeout)??;
        Ok::<_, SessionError>((upstream, established))
    };
    let (upstream, established) = match upstream.await {
        Ok(pair) => pair,
        Err(error) => {
            let error = handshake::refuse(&mut client, error).await;
            log_end(peer, &error);
            return;
        }
    };
    tracing::debug!("session established");
    let session = Session::new(client, upstream, established, state);
    if let Err(error) = session.run().await {
        log_end(peer, &error);
    }
}

fn log_end(peer: SocketAddr, error: &SessionError) {
    match error {
        SessionError::ClientGone | SessionError::UpstreamEnded | SessionError::Shutdown => {
            tracing::debug!(%peer, %error, "session ended")
        }
        _ => tracing::warn!(%peer, %error, "session ended with an error"),
    }
}

/// The message loop's state.
struct Session {
    client: ClientStream,
    upstream: UpstreamStream,
    state: Arc<ProxyState>,
    from_client: BytesMut,
    from_upstream: BytesMut,
    client_frames: FrameScanner,
    upstream_frames: FrameScanner,
    /// Messages sent upstream that are still owed a ReadyForQuery.
    awaiting_ready: u32,
    transaction: TransactionStatus,
    /// The upstream sent a FATAL error: the client knows why the session is ending.
    upstream_fatal: bool,
    upstream_key: Option<UpstreamKey>,
    parameters: Vec<(String, String)>,
    _cancel_key: Option<CancelRegistration>,
}

impl Session {
    fn new(
        client: ClientStream,
        upstream: UpstreamStream,
        established: Established,
        state: Arc<ProxyState>,
    ) -> Self {
        let max_message_len = state.config.max_message_len;
        Session {
            client,
            upstream,
            from_client: established.client_leftover,
            from_upstream: established.upstream_leftover,
            client_frames: FrameScanner::new(max_message_len),
            upstream_frames: FrameScanner::new(UPSTREAM_MAX_MESSAGE_LEN),
            awaiting_ready: 0,
            transaction: TransactionStatus::Idle,
            upstream_fatal: false,
            upstream_key: established.upstream_key,
            parameters: established.parameters,
            _cancel_key: established.cancel_key,
            state,
        }
    }

    async fn run(mut self) -> Result<(), SessionError> {
        let result = self.message_loop().await;
        match &result {
            Err(SessionError::ClientGone) => self.abandon_upstream().await,
            Err(error) => {
                if let Some((code, message)) = error.client_report()
                    && !self.upstream_frames.mid_message()
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

    async fn message_loop(&mut self) -> Result<(), SessionError> {
        loop {
            // Leftovers from startup are processed before waiting for more.
            if !self.from_client.is_empty() && self.forward_from_client().await? {
                return Ok(());
            }
            if !self.from_upstream.is_empty() {
                self.forward_from_upstream().await?;
            }
            reserve(&mut self.from_client);
            reserve(&mut self.from_upstream);
            tokio::select! {
                read = self.client.read_buf(&mut self.from_client) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Err(SessionError::ClientGone);
                    }
                }
                read = self.upstream.read_buf(&mut self.from_upstream) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Err(if self.upstream_fatal {
                            SessionError::UpstreamEnded
                        } else {
                            SessionError::UpstreamClosed
                        });
                    }
                }
                _ = self.state.shutdown.sessions_closing() => return Err(SessionError::Shutdown),
            }
        }
    }

    /// Forwards what the client sent. Returns true when the client terminated the session.
    async fn forward_from_client(&mut self) -> Result<bool, SessionError> {
        let scanned = scan(
            &mut self.client_frames,
            &self.from_client,
            frontend::is_inspected,
            |tag, _frame| {
                if frontend::expects_ready_for_query(tag) {
                    self.awaiting_ready += 1;
                }
                tag == frontend::TERMINATE
            },
        )
        .map_err(SessionError::client_protocol)?;
        let (len, terminate) = scanned;
        if len > 0 {
            write(&mut self.upstream, &self.from_client[..len])
                .await
                .map_err(|_| SessionError::UpstreamClosed)?;
            self.from_client.advance(len);
        }
        Ok(terminate)
    }

    async fn forward_from_upstream(&mut self) -> Result<(), SessionError> {
        let mut invalid = None;
        let scanned = scan(
            &mut self.upstream_frames,
            &self.from_upstream,
            is_inspected_upstream,
            |tag, frame| {
                match tag {
                    backend::READY_FOR_QUERY => match backend::ready_for_query(frame) {
                        Some(status) => {
                            self.transaction = status;
                            self.awaiting_ready = self.awaiting_ready.saturating_sub(1);
                        }
                        None => invalid = Some("ReadyForQuery with an unknown status"),
                    },
                    backend::ERROR_RESPONSE => {
                        if let Some(fields) = backend::error_fields(frame)
                            && matches!(fields.severity.as_str(), "FATAL" | "PANIC")
                        {
                            self.upstream_fatal = true;
                        }
                    }
                    backend::PARAMETER_STATUS => {
                        if let Some((name, value)) = backend::parameter_status(frame) {
                            remember_parameter(&mut self.parameters, name, value);
                        }
                    }
                    _ => {}
                }
                false
            },
        )
        .map_err(|error| SessionError::UpstreamProtocol(error.to_string()))?;
        if let Some(reason) = invalid {
            return Err(SessionError::UpstreamProtocol(reason.into()));
        }
        let (len, _) = scanned;
        if len > 0 {
            write(&mut self.client, &self.from_upstream[..len])
                .await
                .map_err(|_| SessionError::ClientGone)?;
            self.from_upstream.advance(len);
        }
        Ok(())
    }

    /// The client vanished: stop whatever it left running upstream, then close politely.
    async fn abandon_upstream(&mut self) {
        if self.awaiting_ready > 0
            && let Some(key) = &self.upstream_key
            && let Err(error) = key.target.send_cancel(key.process_id, &key.secret).await
        {
            tracing::warn!(%error, "could not cancel the upstream query of a vanished client");
        }
        let _ = self.upstream.write_all(&terminate_message()).await;
    }
}

/// Scans complete messages (and pieces of passed-through ones) at the start of `buffer`,
/// calling `inspect` for each wanted message; `inspect` returns true to stop after that
/// message. Returns how many bytes may be forwarded and whether `inspect` stopped the scan.
fn scan(
    frames: &mut FrameScanner,
    buffer: &[u8],
    wanted: fn(u8) -> bool,
    mut inspect: impl FnMut(u8, &[u8]) -> bool,
) -> Result<(usize, bool), FrameError> {
    let mut position = 0;
    loop {
        match frames.step(&buffer[position..], wanted)? {
            Step::Passthrough(n) => position += n,
            Step::Message { tag, frame } => {
                position += frame.len();
                if inspect(tag, frame) {
                    return Ok((position, true));
                }
            }
            Step::Incomplete { .. } => return Ok((position, false)),
        }
    }
}

fn is_inspected_upstream(tag: u8) -> bool {
    matches!(
        tag,
        backend::READY_FOR_QUERY | backend::ERROR_RESPONSE | backend::PARAMETER_STATUS
    )
}

fn remember_parameter(parameters: &mut Vec<(String, String)>, name: String, value: String) {
    match parameters.iter_mut().find(|(known, _)| *known == name) {
        Some(entry) => entry.1 = value,
        None => parameters.push((name, value)),
    }
}

/// Keeps room for one more read; hands back memory a large message left behind.
fn reserve(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > SHRINK_ABOVE {
        *buffer = BytesMut::with_capacity(READ_CHUNK);
    }
    buffer.reserve(READ_CHUNK);
}

async fn write<S: AsyncWriteExt + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

fn terminate_message() -> [u8; 5] {
    [frontend::TERMINATE, 0, 0, 0, 4]
}
