//! Messages viewgate itself sends to clients: errors, its own cancel key, protocol negotiation.
//!
//! These are built with pgwire's message types, which encode correctly; viewgate never uses
//! pgwire to decode what a peer sent (its decoders assume well-formed input).

use bytes::BytesMut;
use pgwire::messages::Message;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::startup::{BackendKeyData, NegotiateProtocolVersion, SecretKey};

use super::backend::{
    FIELD_CODE, FIELD_HINT, FIELD_MESSAGE, FIELD_SEVERITY, FIELD_SEVERITY_NONLOCALIZED,
};
use super::sqlstate::SqlState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the connection goes on.
    Error,
    /// The connection ends after this message.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An ErrorResponse with severity, SQLSTATE and message (and an optional hint).
pub fn error_response(
    severity: Severity,
    code: SqlState,
    message: &str,
    hint: Option<&str>,
) -> BytesMut {
    let mut fields = vec![
        (FIELD_SEVERITY, severity.as_str().to_owned()),
        (FIELD_SEVERITY_NONLOCALIZED, severity.as_str().to_owned()),
        (FIELD_CODE, code.as_str().to_owned()),
        (FIELD_MESSAGE, message.to_owned()),
    ];
    if let Some(hint) = hint {
        fields.push((FIELD_HINT, hint.to_owned()));
    }
    encode(ErrorResponse::new(fields))
}

/// The BackendKeyData a client sees: the upstream backend's process id with the proxy's own
/// secret, never the upstream's.
pub fn backend_key_data(process_id: u32, secret: u32) -> BytesMut {
    encode(BackendKeyData::new(
        process_id as i32,
        SecretKey::I32(secret as i32),
    ))
}

/// Tells a client that asked for a newer 3.x minor version or for `_pq_` extensions that
/// viewgate speaks 3.0 and supports none of them, as Postgres itself does.
pub fn negotiate_protocol_version(unsupported_options: Vec<String>) -> BytesMut {
    encode(NegotiateProtocolVersion::new(0, unsupported_options))
}

fn encode(message: impl Message) -> BytesMut {
    let mut out = BytesMut::with_capacity(64);
    // Encoding into a BytesMut only fails on values out of the protocol's range, which these
    // fixed-shape messages never hold.
    if message.encode(&mut out).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend;

    #[test]
    fn error_response_round_trips_through_our_decoder() {
        let frame = error_response(Severity::Fatal, SqlState::ADMIN_SHUTDOWN, "bye", None);
        let fields = backend::error_fields(&frame).unwrap();
        assert_eq!(
            (
                fields.severity.as_str(),
                fields.code.as_str(),
                fields.message.as_str()
            ),
            ("FATAL", "57P01", "bye")
        );
    }

    #[test]
    fn backend_key_data_round_trips() {
        let frame = backend_key_data(7, 0xdead_beef);
        assert_eq!(
            backend::backend_key_data(&frame),
            Some((7, 0xdead_beef_u32.to_be_bytes().to_vec()))
        );
    }
}
