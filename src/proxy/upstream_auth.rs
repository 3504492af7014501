//! The proxy logging in to an upstream on a session's behalf (trust, cleartext, md5,
//! SCRAM-SHA-256), for moving live sessions to another upstream.
//!
//! Client logins are relayed (`auth.rs`) and give the proxy nothing it could replay, so a
//! session moved by an upstream cutover logs in again with the proxy's own credentials: none
//! for `trust`, otherwise the password `upstream_passfile` holds for the new upstream, the
//! session's database and its user. SCRAM runs without channel binding (`n,,`), which Postgres
//! accepts over TLS and plain connections alike. The login ends at the first ReadyForQuery;
//! what the server reported on the way (its cancel key, ParameterStatus values) is returned.

use std::path::PathBuf;

use bytes::BytesMut;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use super::passfile::{self, LoginTarget, PassfileError};
use super::upstream::{UpstreamAddress, UpstreamTarget};
use crate::net::stream::UpstreamStream;
use crate::protocol::backend;
use crate::protocol::frame::HEADER_LEN;
use crate::protocol::limits::LOGIN_MESSAGE_MAX_LEN;
use crate::protocol::reader::{MessageReader, ReadError};
use crate::protocol::startup::StartupMessage;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "the new upstream asks user \"{user}\" for a password, but upstream_passfile is not set"
    )]
    NoPassfile { user: String },
    #[error(
        "upstream_passfile has no password for user \"{user}\" (database \"{database}\") on the new upstream"
    )]
    NoPassword { user: String, database: String },
    #[error(transparent)]
    Passfile(#[from] PassfileError),
    #[error("the new upstream refused user \"{user}\": {message}")]
    Refused { user: String, message: String },
    #[error(
        "the new upstream asks user \"{user}\" for authentication method {code}, which viewgate cannot use for its own logins"
    )]
    Unsupported { user: String, code: u32 },
    #[error("SCRAM authentication of user \"{user}\" failed: {reason}")]
    Scram { user: String, reason: String },
    #[error("the new upstream sent an unexpected message during login: {0}")]
    Protocol(String),
    #[error("the new upstream closed the connection during login: {0}")]
    Io(String),
}

/// A logged-in upstream connection, at its first ReadyForQuery.
pub struct LoggedIn {
    pub process_id: u32,
    pub secret: Vec<u8>,
    pub parameters: Vec<(String, String)>,
    /// Bytes read past the ReadyForQuery (none, normally).
    pub leftover: BytesMut,
}

/// Where the proxy finds passwords for its own logins.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub passfile: Option<PathBuf>,
}

impl Credentials {
    fn password(
        &self,
        target: &UpstreamTarget,
        startup: &StartupMessage,
    ) -> Result<String, LoginError> {
        let user = startup.user().to_owned();
        let Some(path) = &self.passfile else {
            return Err(LoginError::NoPassfile { user });
        };
        let (host, port) = match &target.address {
            UpstreamAddress::Tcp { host, port } => (host.clone(), *port),
            UpstreamAddress::Unix(path) => (
                path.parent()
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_default(),
                socket_port(path),
            ),
        };
        let login = LoginTarget {
            host: &host,
            port,
            database: startup.database(),
            user: &user,
        };
        passfile::lookup(path, &login)?.ok_or_else(|| LoginError::NoPassword {
            database: startup.database().to_owned(),
            user,
        })
    }
}

/// The port in a socket file name `.s.PGSQL.{port}`.
fn socket_port(path: &std::path::Path) -> u16 {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.rsplit('.').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or(5432)
}

/// Sends `startup` on `stream` and authenticates until ReadyForQuery.
pub async fn login(
    stream: &mut UpstreamStream,
    target: &UpstreamTarget,
    startup: &StartupMessage,
    credentials: &Credentials,
) -> Result<LoggedIn, LoginError> {
    let user = startup.user().to_owned();
    send(stream, &startup.encode_for_upstream()).await?;
    let mut reader = MessageReader::new(LOGIN_MESSAGE_MAX_LEN);
    let mut scram: Option<sasl::ScramSha256> = None;
    let mut logged_in = LoggedIn {
        process_id: 0,
        secret: Vec::new(),
        parameters: Vec::new(),
        leftover: BytesMut::new(),
    };
    loop {
        let frame = reader.next(stream).await.map_err(read_error)?;
        let body = &frame[HEADER_LEN..];
        let invalid = || LoginError::Protocol(format!("message {:?}", char::from(frame[0])));
        match frame[0] {
            backend::AUTHENTICATION => {
                let code = read_u32(body).ok_or_else(invalid)?;
                let data = &body[4..];
                let mut out = BytesMut::new();
                match code {
                    backend::AUTH_OK => continue,
                    backend::AUTH_CLEARTEXT_PASSWORD => {
                        let password = credentials.password(target, startup)?;
                        frontend::password_message(password.as_bytes(), &mut out)
                            .map_err(|e| LoginError::Protocol(e.to_string()))?;
                    }
                    backend::AUTH_MD5_PASSWORD => {
                        let salt: [u8; 4] = *data.first_chunk::<4>().ok_or_else(invalid)?;
                        let password = credentials.password(target, startup)?;
                        let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut out)
                            .map_err(|e| LoginError::Protocol(e.to_string()))?;
                    }
                    backend::AUTH_SASL => {
                        let offered = data
                            .split(|&b| b == 0)
                            .any(|mechanism| mechanism == sasl::SCRAM_SHA_256.as_bytes());
                        if !offered {
                            return Err(LoginError::Unsupported { user, code });
                        }
                        let password = credentials.password(target, startup)?;
                        let exchange = sasl::ScramSha256::new(
                            password.as_bytes(),
                            sasl::ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response(
                            sasl::SCRAM_SHA_256,
                            exchange.message(),
                            &mut out,
                        )
                        .map_err(|e| LoginError::Protocol(e.to_string()))?;
                        scram = Some(exchange);
                    }
                    backend::AUTH_SASL_CONTINUE => {
                        let exchange = scram.as_mut().ok_or_else(invalid)?;
                        exchange.update(data).map_err(|e| LoginError::Scram {
                            user: user.clone(),
                            reason: e.to_string(),
                        })?;
                        frontend::sasl_response(exchange.message(), &mut out)
                            .map_err(|e| LoginError::Protocol(e.to_string()))?;
                    }
                    backend::AUTH_SASL_FINAL => {
                        let exchange = scram.as_mut().ok_or_else(invalid)?;
                        // Checks the server's signature: the new upstream knows the password.
                        exchange.finish(data).map_err(|e| LoginError::Scram {
                            user: user.clone(),
                            reason: e.to_string(),
                        })?;
                        continue;
                    }
                    code => return Err(LoginError::Unsupported { user, code }),
                }
                send(stream, &out).await?;
            }
            backend::BACKEND_KEY_DATA => {
                let (process_id, secret) = backend::backend_key_data(&frame).ok_or_else(invalid)?;
                logged_in.process_id = process_id;
                logged_in.secret = secret;
            }
            backend::PARAMETER_STATUS => {
                logged_in
                    .parameters
                    .push(backend::parameter_status(&frame).ok_or_else(invalid)?);
            }
            backend::NOTICE_RESPONSE | backend::NEGOTIATE_PROTOCOL_VERSION => {}
            backend::ERROR_RESPONSE => {
                let message = backend::error_fields(&frame)
                    .map(|fields| format!("{} (SQLSTATE {})", fields.message, fields.code))
                    .unwrap_or_else(|| "an unreadable error".into());
                return Err(LoginError::Refused { user, message });
            }
            backend::READY_FOR_QUERY => {
                logged_in.leftover = reader.into_leftover();
                return Ok(logged_in);
            }
            _ => return Err(invalid()),
        }
    }
}

fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

async fn send(stream: &mut UpstreamStream, bytes: &[u8]) -> Result<(), LoginError> {
    let sent = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    sent.await.map_err(|e| LoginError::Io(e.to_string()))
}

fn read_error(error: ReadError) -> LoginError {
    match error {
        ReadError::Frame(error) => LoginError::Protocol(error.to_string()),
        ReadError::Closed | ReadError::Io(_) => LoginError::Io(error.to_string()),
    }
}
