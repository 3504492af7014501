//! The client messages viewgate inspects after startup.
//!
//! The session loop sees the type of every client message but CopyData (the pause gate holds
//! the first one after a boundary): Query, Sync and FunctionCall each earn exactly one
//! ReadyForQuery, which is how the proxy knows whether work is in flight; Terminate ends the
//! session. Query and Parse carry the SQL that the rewriter reads; a FunctionCall names the
//! function it calls by oid.

use bytes::{BufMut, BytesMut};

use super::frame::Interest;

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const EXECUTE: u8 = b'E';
pub const SYNC: u8 = b'S';
pub const FUNCTION_CALL: u8 = b'F';
pub const TERMINATE: u8 = b'X';
pub const PASSWORD: u8 = b'p';
pub const BIND: u8 = b'B';
pub const DESCRIBE: u8 = b'D';
pub const CLOSE: u8 = b'C';
pub const FLUSH: u8 = b'H';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';

/// Close and Describe name a prepared statement with this byte (a portal with [`PORTAL`]).
pub const STATEMENT: u8 = b'S';
pub const PORTAL: u8 = b'P';

/// A whole Terminate message: the tag and a length of 4, no body.
pub const TERMINATE_MESSAGE: [u8; 5] = [TERMINATE, 0, 0, 0, 4];
/// A Sync message.
pub const SYNC_MESSAGE: [u8; 5] = [SYNC, 0, 0, 0, 4];

/// What the session loop must see of each client message. The pause gate must see the first
/// message after a boundary whatever its type, before any of it is forwarded, but needs only
/// its type: a header glance, so a Bind carrying a large parameter streams through instead
/// of being buffered whole. Query and Parse are read whole for their SQL text, Close for the
/// statement it releases, Terminate to stop on it. A FunctionCall is read whole, like a Query
/// (bounded by `max_message_len` alike): a versioned session forwards it only for the
/// large-object functions, and one it refuses is replaced whole. A Bind is read whole only
/// when it is small (shadow reads copy its parameters); a larger one is glanced at. CopyData
/// flows only inside a COPY, never at a boundary.
pub fn session_interest(tag: u8) -> Interest {
    match tag {
        QUERY | PARSE | CLOSE | TERMINATE | FUNCTION_CALL => Interest::Whole,
        BIND => Interest::WholeUpTo(super::limits::INSPECTED_BIND_MAX_LEN),
        COPY_DATA => Interest::Skip,
        _ => Interest::Header,
    }
}

/// The SQL text of a Query or Parse message; `None` when the message is malformed or the text
/// is not UTF-8 (a client_encoding other than UTF8: forwarded unread).
pub fn statement_text(tag: u8, frame: &[u8]) -> Option<&str> {
    let body = frame.get(super::frame::HEADER_LEN..)?;
    let (start, end) = statement_bounds(tag, body)?;
    std::str::from_utf8(&body[start..end]).ok()
}

/// The raw bytes of a Query's or Parse's statement, whatever their encoding.
pub fn statement_bytes(tag: u8, frame: &[u8]) -> Option<&[u8]> {
    let body = frame.get(super::frame::HEADER_LEN..)?;
    let (start, end) = statement_bounds(tag, body)?;
    body.get(start..end)
}

/// The statement name of a Parse message (empty for the unnamed statement).
pub fn parse_name(frame: &[u8]) -> Option<&str> {
    let body = frame.get(super::frame::HEADER_LEN..)?;
    let end = body.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&body[..end]).ok()
}

/// The oid of the function a FunctionCall message calls (its body's first four bytes);
/// `None` for a message too short to hold one.
pub fn function_call_oid(frame: &[u8]) -> Option<u32> {
    let oid = frame.get(super::frame::HEADER_LEN..super::frame::HEADER_LEN + 4)?;
    Some(u32::from_be_bytes(oid.try_into().ok()?))
}

/// The statement a Close message releases; `None` for a portal or a malformed message.
pub fn closed_statement(frame: &[u8]) -> Option<&str> {
    let body = frame.get(super::frame::HEADER_LEN..)?;
    let (&kind, rest) = body.split_first()?;
    if kind != STATEMENT {
        return None;
    }
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The same message with its SQL text replaced (a Parse keeps its name and parameter types).
pub fn with_statement(tag: u8, frame: &[u8], sql: &str) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(frame.len() + sql.len());
    put_with_statement(&mut out, tag, frame, sql).then_some(out)
}

/// [`with_statement`] appended to `out`; `false` (and nothing appended) for a message that
/// holds no statement.
pub fn put_with_statement(out: &mut BytesMut, tag: u8, frame: &[u8], sql: &str) -> bool {
    let Some(body) = frame.get(super::frame::HEADER_LEN..) else {
        return false;
    };
    let Some((start, end)) = statement_bounds(tag, body) else {
        return false;
    };
    super::frame::encode_message(out, tag, |b| {
        b.put_slice(&body[..start]);
        b.put_slice(sql.as_bytes());
        b.put_slice(&body[end..]);
    });
    true
}

/// A Close of prepared statement `name` (the proxy's own; `name` holds no NUL, as it came
/// from a Parse).
pub fn close_statement(name: &str) -> BytesMut {
    let mut message = BytesMut::with_capacity(name.len() + super::frame::HEADER_LEN + 2);
    super::frame::encode_message(&mut message, CLOSE, |body| {
        body.put_u8(STATEMENT);
        body.put_slice(name.as_bytes());
        body.put_u8(0);
    });
    message
}

/// A Query message with `sql` as its text (the proxy's own statements; `sql` holds no NUL).
pub fn query(sql: &str) -> BytesMut {
    let mut message = BytesMut::with_capacity(sql.len() + super::frame::HEADER_LEN + 1);
    super::frame::encode_message(&mut message, QUERY, |body| {
        body.put_slice(sql.as_bytes());
        body.put_u8(0);
    });
    message
}

/// Where the SQL text lies in a Query or Parse body (without its terminator).
fn statement_bounds(tag: u8, body: &[u8]) -> Option<(usize, usize)> {
    let start = match tag {
        QUERY => 0,
        PARSE => body.iter().position(|&b| b == 0)? + 1,
        _ => return None,
    };
    let end = start + body.get(start..)?.iter().position(|&b| b == 0)?;
    Some((start, end))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_message;
    use bytes::{BufMut, BytesMut};

    /// The fuzzer's first crash (`fuzz/fuzz_targets/rewrite.rs`): a NUL inside a literal. The
    /// text the rewriter gets ends at the first NUL, whatever follows in the message.
    #[test]
    fn statement_text_ends_at_the_first_nul() {
        let sql =
            "INSERT INTO model_metadata (\"id\") VALUES (1, '20;\0\0\x006-01') RETURNING \"id\"";
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        let mut frame = BytesMut::new();
        encode_message(&mut frame, QUERY, |b| b.put_slice(&body));
        assert_eq!(
            statement_text(QUERY, &frame),
            Some("INSERT INTO model_metadata (\"id\") VALUES (1, '20;")
        );
    }

    #[test]
    fn replaces_the_text_of_query_and_parse_keeping_the_rest() {
        let mut query = BytesMut::new();
        encode_message(&mut query, QUERY, |b| b.put_slice(b"SELECT 1\0"));
        assert_eq!(statement_text(QUERY, &query), Some("SELECT 1"));
        let replaced = with_statement(QUERY, &query, "SELECT 22").unwrap();
        assert_eq!(statement_text(QUERY, &replaced), Some("SELECT 22"));

        let mut parse = BytesMut::new();
        encode_message(&mut parse, PARSE, |b| {
            b.put_slice(b"stmt1\0SELECT $1\0");
            b.put_u16(1);
            b.put_u32(23);
        });
        assert_eq!(statement_text(PARSE, &parse), Some("SELECT $1"));
        let replaced = with_statement(PARSE, &parse, "SELECT $1 + 0").unwrap();
        let mut expected = BytesMut::new();
        encode_message(&mut expected, PARSE, |b| {
            b.put_slice(b"stmt1\0SELECT $1 + 0\0");
            b.put_u16(1);
            b.put_u32(23);
        });
        assert_eq!(replaced, expected);
        assert_eq!(statement_text(PARSE, &parse[..8]), None);
    }

    /// What the relay counts on to build every rewritten statement in one buffer: once the
    /// message split off it is dropped, `reserve` takes the same memory back.
    #[test]
    fn a_buffer_split_and_dropped_is_reused() {
        let mut query = BytesMut::new();
        encode_message(&mut query, QUERY, |b| b.put_slice(b"SELECT 1\0"));
        let mut buffer = BytesMut::new();
        buffer.reserve(64);
        assert!(put_with_statement(&mut buffer, QUERY, &query, "SELECT 22"));
        let first = buffer.split();
        let memory = first.as_ptr();
        assert_eq!(statement_text(QUERY, &first), Some("SELECT 22"));
        drop(first);
        buffer.reserve(64);
        assert!(put_with_statement(&mut buffer, QUERY, &query, "SELECT 333"));
        let second = buffer.split();
        assert_eq!(second.as_ptr(), memory);
        assert_eq!(statement_text(QUERY, &second), Some("SELECT 333"));
        assert!(!put_with_statement(
            &mut buffer,
            QUERY,
            &query[..3],
            "SELECT 4"
        ));
        assert!(buffer.is_empty());
    }

    #[test]
    fn reads_the_oid_a_function_call_calls() {
        // lo_open(oid 16384, INV_READ): oid 952, no argument formats, two int4 arguments,
        // binary result.
        let mut call = BytesMut::new();
        encode_message(&mut call, FUNCTION_CALL, |b| {
            b.put_u32(952);
            b.put_u16(0);
            b.put_u16(2);
            b.put_i32(4);
            b.put_u32(16384);
            b.put_i32(4);
            b.put_u32(0x40000);
            b.put_u16(1);
        });
        assert_eq!(function_call_oid(&call), Some(952));
        assert_eq!(function_call_oid(&call[..8]), None);
        assert_eq!(session_interest(FUNCTION_CALL), Interest::Whole);
    }
}
