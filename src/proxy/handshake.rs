//! The client side of startup: TLS and GSS negotiation, cancel requests (this replica's own, or
//! forwarded to the peer that owns the session: `peers`), the StartupMessage (a replication
//! connection is refused: it would stream base tables whole).
//!
//! Runs before a client is known, so everything here is bounded: the packet size (10,000 bytes),
//! the number of packets (one encryption request, then the startup), and the time (the
//! deadline covers the whole startup, authentication included). Errors are reported to the
//! client here, because this is the code that holds its stream while it changes type.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::SessionError;
use super::peers::{self, CancelRoute};
use super::state::ProxyState;
use crate::config::ClientTlsMode;
use crate::net::stream::ClientStream;
use crate::protocol::reply::{self, Severity};
use crate::protocol::sqlstate::SqlState;
use crate::protocol::startup::{
    ACCEPT_ENCRYPTION, REFUSE_ENCRYPTION, StartupError, StartupMessage, StartupPacket,
    read_startup_packet,
};

/// The startup parameter that makes a connection a walsender (`database` for logical
/// replication, a true boolean for physical), which viewgate refuses.
const REPLICATION_PARAMETER: &str = "replication";

/// Whether `value` is one of the spellings Postgres's `parse_bool` reads as false (a unique
/// prefix of `false` or `no`, `off`/`of`, `0`): the only `replication` values that leave a
/// connection an ordinary one.
fn means_false(value: &str) -> bool {
    let value = value.trim().to_ascii_lowercase();
    !value.is_empty()
        && ("false".starts_with(&value)
            || "no".starts_with(&value)
            || value == "off"
            || value == "of"
            || value == "0")
}

/// What a new connection turned out to be.
pub enum Negotiated {
    /// A client that wants a session.
    Session {
        client: ClientStream,
        startup: StartupMessage,
    },
    /// A cancel request, already forwarded; the connection is done.
    Cancelled,
}

/// Negotiates until the StartupMessage. On error the client has been told why.
pub async fn negotiate(
    tcp: TcpStream,
    state: &ProxyState,
    deadline: Instant,
) -> Result<Negotiated, SessionError> {
    let mut client = ClientStream::Plain(tcp);
    // As in Postgres, each kind of encryption may be asked for once: libpq with
    // gssencmode=prefer asks for GSS, hears 'N', then asks for TLS on the same connection.
    let mut ssl_asked = false;
    let mut gss_asked = false;
    loop {
        let packet = match tokio::time::timeout_at(deadline, read_startup_packet(&mut client)).await
        {
            Ok(Ok(packet)) => packet,
            Ok(Err(StartupError::Refused { code, message })) => {
                return Err(refuse(&mut client, SessionError::Refused { code, message }).await);
            }
            Ok(Err(StartupError::Io(_))) => return Err(SessionError::ClientGone),
            Err(_) => return Err(refuse(&mut client, SessionError::StartupTimeout).await),
        };
        match packet {
            StartupPacket::SslRequest if ssl_asked => {
                let error =
                    SessionError::ClientProtocol("SSL was requested twice during startup".into());
                return Err(refuse(&mut client, error).await);
            }
            StartupPacket::GssEncRequest if gss_asked => {
                let error = SessionError::ClientProtocol(
                    "GSS encryption was requested twice during startup".into(),
                );
                return Err(refuse(&mut client, error).await);
            }
            StartupPacket::SslRequest => {
                ssl_asked = true;
                client = match (client, &state.tls_acceptor) {
                    (ClientStream::Plain(mut tcp), Some(acceptor)) => {
                        tcp.write_all(&[ACCEPT_ENCRYPTION])
                            .await
                            .map_err(|_| SessionError::ClientGone)?;
                        let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
                        match handshake.await {
                            Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                            // A failed TLS handshake leaves nothing to send an error on.
                            Ok(Err(_)) | Err(_) => return Err(SessionError::ClientGone),
                        }
                    }
                    (mut other, _) => {
                        other
                            .write_all(&[REFUSE_ENCRYPTION])
                            .await
                            .map_err(|_| SessionError::ClientGone)?;
                        other
                    }
                };
            }
            StartupPacket::GssEncRequest => {
                gss_asked = true;
                client
                    .write_all(&[REFUSE_ENCRYPTION])
                    .await
                    .map_err(|_| SessionError::ClientGone)?;
            }
            StartupPacket::Cancel { process_id, secret } => {
                forward_cancel(state, process_id, &secret).await;
                return Ok(Negotiated::Cancelled);
            }
            StartupPacket::Startup(startup) => {
                if state.config.load().client_tls.mode == ClientTlsMode::Require && !client.is_tls()
                {
                    let error = SessionError::Refused {
                        code: SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                        message: "viewgate requires TLS: connect with sslmode=require or stronger"
                            .into(),
                    };
                    return Err(refuse(&mut client, error).await);
                }
                if let Some(mode) = startup.param(REPLICATION_PARAMETER)
                    && !means_false(mode)
                {
                    let error = SessionError::Refused {
                        code: SqlState::FEATURE_NOT_SUPPORTED,
                        message: format!(
                            "viewgate does not proxy replication connections (replication={mode}): their streams and base backups carry managed tables' base rows whole, every version's columns included; connect to PostgreSQL directly"
                        ),
                    };
                    return Err(refuse(&mut client, error).await);
                }
                if startup.needs_negotiation() {
                    let reply = reply::negotiate_protocol_version(startup.extensions.clone());
                    client
                        .write_all(&reply)
                        .await
                        .map_err(|_| SessionError::ClientGone)?;
                }
                return Ok(Negotiated::Session { client, startup });
            }
        }
    }
}

/// Sends the FATAL error for `error` (when there is one to send) and hands the error back.
pub async fn refuse(client: &mut ClientStream, error: SessionError) -> SessionError {
    if let Some((code, message)) = error.client_report() {
        let frame = reply::error_response(Severity::Fatal, code, &message, None);
        // The client may already be gone; the error is logged either way.
        let _ = client.write_all(&frame).await;
        let _ = client.flush().await;
        let _ = client.shutdown().await;
    }
    error
}

async fn forward_cancel(state: &ProxyState, process_id: u32, secret: &[u8]) {
    let secret = match state.peers.load().route(secret) {
        CancelRoute::Local(secret) => secret,
        CancelRoute::Forward {
            peer_id,
            address,
            secret,
        } => {
            match peers::forward(address, process_id, &secret).await {
                Ok(()) => tracing::debug!(process_id, peer_id, "cancel request sent to its peer"),
                Err(error) => tracing::warn!(
                    %error, peer_id, address, "could not forward a cancel request to its peer"
                ),
            }
            return;
        }
        CancelRoute::Dropped(reason) => {
            tracing::debug!(process_id, "cancel request dropped: {reason}");
            return;
        }
    };
    let Some(key) = state.cancel_keys.lookup(process_id, &secret) else {
        // As Postgres does, say nothing to the requester about keys that do not match.
        tracing::debug!(process_id, "cancel request with an unknown key ignored");
        return;
    };
    if let Err(error) = key.target.send_cancel(key.process_id, &key.secret).await {
        tracing::warn!(%error, "could not forward a cancel request upstream");
    }
}

#[cfg(test)]
mod tests {
    use super::means_false;

    #[test]
    fn only_false_spellings_leave_a_connection_ordinary() {
        for value in ["false", "f", "FALSE", "no", "n", "off", "of", "0", " off "] {
            assert!(means_false(value), "{value}");
        }
        for value in ["database", "true", "on", "yes", "1", "", "o", "nope"] {
            assert!(!means_false(value), "{value}");
        }
    }
}
