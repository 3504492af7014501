//! Authentication, relayed: the upstream authenticates the client, the proxy carries messages.
//!
//! viewgate stores no passwords. It forwards the upstream's challenges (cleartext, md5,
//! SCRAM-SHA-256) and the client's answers unchanged, so a wrong password is refused exactly as
//! Postgres refuses it. Two things are changed on the way: `SCRAM-SHA-256-PLUS` is removed from
//! the mechanisms offered, because channel binding ties SCRAM to the TLS connection the client
//! sees, which ends at the proxy; and the upstream's BackendKeyData is replaced by a key of
//! the proxy's own (see `cancel`).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::cancel::{CancelRegistration, UpstreamKey};
use super::error::SessionError;
use super::login_search_path;
use super::state::ProxyState;
use super::upstream::UpstreamTarget;
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::backend::{self, AuthRequest};
use crate::protocol::frontend;
use crate::protocol::limits::LOGIN_MESSAGE_MAX_LEN;
use crate::protocol::reader::{MessageReader, ReadError};
use crate::protocol::reply;
use crate::protocol::sqlstate::SqlState;
use crate::protocol::startup::StartupMessage;

/// A session ready for queries.
pub struct Established {
    pub cancel_key: Option<CancelRegistration>,
    /// The upstream key, kept to cancel upstream work when the client vanishes mid-query.
    pub upstream_key: Option<UpstreamKey>,
    /// ParameterStatus values reported so far.
    pub parameters: Vec<(String, String)>,
    pub client_leftover: BytesMut,
    pub upstream_leftover: BytesMut,
    /// The upstream's `SHOW search_path` after login, when asked for (`login_search_path`).
    pub search_path: Option<String>,
}

/// Sends the startup message upstream and relays authentication until ReadyForQuery;
/// `ask_search_path`: then asks the upstream for the session's search_path before the client
/// hears that the session is ready.
pub async fn establish(
    client: &mut ClientStream,
    upstream: &mut UpstreamStream,
    target: &Arc<UpstreamTarget>,
    startup: &StartupMessage,
    state: &ProxyState,
    ask_search_path: bool,
) -> Result<Established, SessionError> {
    upstream
        .write_all(&startup.encode_for_upstream())
        .await
        .map_err(|_| SessionError::UpstreamClosed)?;
    let mut from_client = MessageReader::new(state.config.load().max_message_len);
    let mut from_upstream = MessageReader::new(LOGIN_MESSAGE_MAX_LEN);
    let mut to_client = BytesMut::with_capacity(1024);
    let mut established = Established {
        cancel_key: None,
        upstream_key: None,
        parameters: Vec::new(),
        client_leftover: BytesMut::new(),
        upstream_leftover: BytesMut::new(),
        search_path: None,
    };
    loop {
        let frame = from_upstream
            .next(upstream)
            .await
            .map_err(upstream_read_error)?;
        let invalid = || {
            SessionError::UpstreamProtocol(format!(
                "bad message {:?} during startup",
                char::from(frame[0])
            ))
        };
        match frame[0] {
            backend::AUTHENTICATION => {
                let request = backend::auth_request(&frame).ok_or_else(invalid)?;
                match request {
                    AuthRequest::Ok | AuthRequest::SaslFinal => to_client.extend_from_slice(&frame),
                    AuthRequest::CleartextPassword
                    | AuthRequest::Md5Password
                    | AuthRequest::SaslContinue => {
                        to_client.extend_from_slice(&frame);
                        let answer =
                            client_answer(client, &mut from_client, &mut to_client).await?;
                        forward_answer(upstream, &answer).await?;
                    }
                    AuthRequest::Sasl => {
                        let offer =
                            backend::sasl_without_channel_binding(&frame).ok_or_else(invalid)?;
                        to_client.extend_from_slice(&offer);
                        let answer =
                            client_answer(client, &mut from_client, &mut to_client).await?;
                        if matches!(upstream, UpstreamStream::Tls(_))
                            && frontend::scram_channel_binding_flag(&answer) == Some(b'y')
                        {
                            return Err(channel_binding_impossible());
                        }
                        forward_answer(upstream, &answer).await?;
                    }
                    AuthRequest::Unsupported(code) => {
                        return Err(SessionError::Refused {
                            code: SqlState::FEATURE_NOT_SUPPORTED,
                            message: format!(
                                "the upstream server asked for authentication method {code} (Kerberos, GSSAPI or SSPI), which viewgate cannot relay"
                            ),
                        });
                    }
                }
            }
            backend::BACKEND_KEY_DATA => {
                let (process_id, secret) = backend::backend_key_data(&frame).ok_or_else(invalid)?;
                let upstream_key = UpstreamKey {
                    target: target.clone(),
                    process_id,
                    secret,
                };
                let registration = state.cancel_keys.register(upstream_key.clone());
                to_client.extend_from_slice(&reply::backend_key_data(
                    registration.process_id,
                    registration.secret,
                ));
                established.cancel_key = Some(registration);
                established.upstream_key = Some(upstream_key);
            }
            backend::PARAMETER_STATUS => {
                established
                    .parameters
                    .push(backend::parameter_status(&frame).ok_or_else(invalid)?);
                to_client.extend_from_slice(&frame);
            }
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {
                to_client.extend_from_slice(&frame)
            }
            backend::ERROR_RESPONSE => {
                to_client.extend_from_slice(&frame);
                send(client, &mut to_client).await?;
                return Err(SessionError::UpstreamEnded);
            }
            backend::READY_FOR_QUERY => {
                if ask_search_path {
                    established.search_path =
                        login_search_path::ask(upstream, &mut from_upstream, &mut to_client)
                            .await?;
                }
                to_client.extend_from_slice(&frame);
                send(client, &mut to_client).await?;
                established.client_leftover = from_client.into_leftover();
                established.upstream_leftover = from_upstream.into_leftover();
                return Ok(established);
            }
            _ => return Err(invalid()),
        }
    }
}

/// Flushes what the client should see so far, then reads its one answer.
async fn client_answer(
    client: &mut ClientStream,
    from_client: &mut MessageReader,
    to_client: &mut BytesMut,
) -> Result<BytesMut, SessionError> {
    send(client, to_client).await?;
    let answer = from_client
        .next(client)
        .await
        .map_err(|error| match error {
            ReadError::Frame(error) => SessionError::client_protocol(error),
            ReadError::Closed | ReadError::Io(_) => SessionError::ClientGone,
        })?;
    if answer[0] != frontend::PASSWORD {
        return Err(SessionError::ClientProtocol(format!(
            "expected a password message during authentication, got message type {:?}",
            char::from(answer[0])
        )));
    }
    Ok(answer)
}

async fn forward_answer(upstream: &mut UpstreamStream, answer: &[u8]) -> Result<(), SessionError> {
    upstream
        .write_all(answer)
        .await
        .map_err(|_| SessionError::UpstreamClosed)
}

/// A client that supports channel binding answers `y` when the proxy does not offer it, and a
/// TLS upstream refuses that as a downgrade. Rewriting the flag cannot help: Postgres checks it
/// again in the final message, which the password proof covers. Say what to change instead.
fn channel_binding_impossible() -> SessionError {
    SessionError::Refused {
        code: SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        message: "SCRAM channel binding cannot pass through viewgate when both the client and the upstream connections use TLS: connect with channel_binding=disable, or set upstream_tls.mode = disable".into(),
    }
}

async fn send(client: &mut ClientStream, bytes: &mut BytesMut) -> Result<(), SessionError> {
    let result = async {
        client.write_all(bytes).await?;
        client.flush().await
    };
    result.await.map_err(|_| SessionError::ClientGone)?;
    bytes.clear();
    Ok(())
}

fn upstream_read_error(error: ReadError) -> SessionError {
    match error {
        ReadError::Frame(error) => SessionError::UpstreamProtocol(error.to_string()),
        ReadError::Closed | ReadError::Io(_) => SessionError::UpstreamClosed,
    }
}
