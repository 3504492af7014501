//! Why a session ended, and what (if anything) its client is told.

use crate::protocol::frame::FrameError;
use crate::protocol::sqlstate::SqlState;

use super::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client protocol violation: {0}")]
    ClientProtocol(String),
    #[error("{message}")]
    Refused { code: SqlState, message: String },
    #[error("client did not complete startup in time")]
    StartupTimeout,
    #[error("sorry, too many clients already")]
    TooManyClients,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the upstream server sent an invalid message: {0}")]
    UpstreamProtocol(String),
    /// The upstream ended the session and told the client why (a FATAL it sent, or a refused
    /// login): nothing is added.
    #[error("the upstream server ended the session")]
    UpstreamEnded,
    #[error("the upstream server closed the connection unexpectedly")]
    UpstreamClosed,
    #[error("the client disconnected")]
    ClientGone,
    #[error("terminating connection due to administrator command")]
    Shutdown,
}

impl SessionError {
    pub fn client_protocol(error: FrameError) -> Self {
        SessionError::ClientProtocol(error.to_string())
    }

    /// The FATAL error the client receives, when it can still receive one.
    pub fn client_report(&self) -> Option<(SqlState, String)> {
        let code = match self {
            SessionError::ClientProtocol(_) | SessionError::UpstreamProtocol(_) => {
                SqlState::PROTOCOL_VIOLATION
            }
            SessionError::Refused { code, .. } => *code,
            SessionError::StartupTimeout => SqlState::PROTOCOL_VIOLATION,
            SessionError::TooManyClients => SqlState::TOO_MANY_CONNECTIONS,
            SessionError::Upstream(_) => SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SessionError::UpstreamClosed => SqlState::CONNECTION_FAILURE,
            SessionError::Shutdown => SqlState::ADMIN_SHUTDOWN,
            SessionError::UpstreamEnded | SessionError::ClientGone => return None,
        };
        Some((code, self.to_string()))
    }
}
