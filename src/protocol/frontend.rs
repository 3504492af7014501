//! The client messages viewgate inspects after startup.
//!
//! The session loop watches Query, Parse, Sync, FunctionCall and Terminate: Query, Sync and
//! FunctionCall each earn exactly one ReadyForQuery, which is how the proxy knows whether work is
//! in flight; Terminate ends the session. Query and Parse carry the SQL that the rewriter reads.

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const SYNC: u8 = b'S';
pub const FUNCTION_CALL: u8 = b'F';
pub const TERMINATE: u8 = b'X';
pub const PASSWORD: u8 = b'p';

/// Whether the session loop needs to see a client message with this tag.
pub fn is_inspected(tag: u8) -> bool {
    matches!(tag, QUERY | PARSE | SYNC | FUNCTION_CALL | TERMINATE)
}

/// Whether a message with this tag is answered by exactly one ReadyForQuery.
pub fn expects_ready_for_query(tag: u8) -> bool {
    matches!(tag, QUERY | SYNC | FUNCTION_CALL)
}

/// The channel-binding flag of a SCRAM SASLInitialResponse: `n` (client cannot bind), `y`
/// (client can, but believes the server cannot) or `p` (client binds). `None` for other
/// mechanisms or a malformed message.
pub fn scram_channel_binding_flag(frame: &[u8]) -> Option<u8> {
    let body = frame.get(super::frame::HEADER_LEN..)?;
    let end = body.iter().position(|&b| b == 0)?;
    if !body[..end].starts_with(b"SCRAM-SHA-256") {
        return None;
    }
    // After the mechanism: an i32 length, then the client-first-message.
    body.get(end + 1 + 4).copied()
}
