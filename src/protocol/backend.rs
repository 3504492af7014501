//! The server messages viewgate acts on, decoded with bounds checks.
//!
//! Only the startup sequence (Authentication, ParameterStatus, BackendKeyData) and the markers
//! the session loop needs (ReadyForQuery, ErrorResponse) are decoded; everything else is
//! forwarded as bytes. Decoders take the whole frame (tag and length included) as produced by
//! the frame scanner, and return `None` for a malformed body instead of panicking.

use bytes::{BufMut, BytesMut};

use super::frame::{HEADER_LEN, Interest, encode_message};

pub const AUTHENTICATION: u8 = b'R';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const PARAMETER_STATUS: u8 = b'S';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
pub const PARSE_COMPLETE: u8 = b'1';
pub const BIND_COMPLETE: u8 = b'2';
pub const CLOSE_COMPLETE: u8 = b'3';
pub const DATA_ROW: u8 = b'D';
pub const ROW_DESCRIPTION: u8 = b'T';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const COPY_IN_RESPONSE: u8 = b'G';

/// ErrorResponse and NoticeResponse field codes viewgate reads or writes.
pub const FIELD_SEVERITY: u8 = b'S';
/// The severity, never translated.
pub const FIELD_SEVERITY_NONLOCALIZED: u8 = b'V';
pub const FIELD_CODE: u8 = b'C';
pub const FIELD_MESSAGE: u8 = b'M';
pub const FIELD_HINT: u8 = b'H';
pub const FIELD_DETAIL: u8 = b'D';
pub const FIELD_SCHEMA: u8 = b's';
pub const FIELD_TABLE: u8 = b't';
pub const FIELD_CONSTRAINT: u8 = b'n';
pub const FIELD_COLUMN: u8 = b'c';
/// Where in the statement's text the error is, a 1-based character offset.
pub const FIELD_POSITION: u8 = b'P';
/// Where the error arose: the call stack of functions, one line each (CONTEXT).
pub const FIELD_WHERE: u8 = b'W';
/// The statement a function was preparing when the error arose, and the position in it.
pub const FIELD_INTERNAL_QUERY: u8 = b'q';
pub const FIELD_INTERNAL_POSITION: u8 = b'p';

/// Authentication request codes (the first field of an Authentication message).
pub const AUTH_OK: u32 = 0;
pub const AUTH_CLEARTEXT_PASSWORD: u32 = 3;
pub const AUTH_MD5_PASSWORD: u32 = 5;
pub const AUTH_SASL: u32 = 10;
pub const AUTH_SASL_CONTINUE: u32 = 11;
pub const AUTH_SASL_FINAL: u32 = 12;

/// The SASL mechanism whose channel binding cannot survive TLS ending at the proxy.
pub const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// The server messages the session loop acts on, all small: ReadyForQuery, ErrorResponse,
/// NoticeResponse, ParameterStatus and CopyInResponse. Everything else (rows above all) streams through.
pub fn session_interest(tag: u8) -> Interest {
    match tag {
        // CommandComplete so that the answer to a statement the proxy sent itself can be
        // dropped, and to tell a COMMIT from a ROLLBACK (`proxy/session/relay.rs`); it is
        // small, and passes on otherwise.
        READY_FOR_QUERY | ERROR_RESPONSE | PARAMETER_STATUS | COMMAND_COMPLETE => Interest::Whole,
        // A notice's context may quote a statement of a version's write trigger, which the
        // session must not see (`proxy/session/hidden_detail.rs`); notices are small.
        NOTICE_RESPONSE => Interest::Whole,
        // The answers to statements the proxy prepares again on the session's behalf, which
        // the client must not see (header-only messages).
        PARSE_COMPLETE | CLOSE_COMPLETE => Interest::Whole,
        // Postgres now ignores the Syncs behind the COPY's Execute (`proxy/session/progress.rs`).
        COPY_IN_RESPONSE => Interest::Header,
        _ => Interest::Skip,
    }
}

fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or_default()
}

fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// An Authentication message's request code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    CleartextPassword,
    Md5Password,
    Sasl,
    SaslContinue,
    SaslFinal,
    /// Kerberos, GSSAPI, SSPI and anything newer: not relayed.
    Unsupported(u32),
}

pub fn auth_request(frame: &[u8]) -> Option<AuthRequest> {
    Some(match read_u32(body(frame))? {
        AUTH_OK => AuthRequest::Ok,
        AUTH_CLEARTEXT_PASSWORD => AuthRequest::CleartextPassword,
        AUTH_MD5_PASSWORD => AuthRequest::Md5Password,
        AUTH_SASL => AuthRequest::Sasl,
        AUTH_SASL_CONTINUE => AuthRequest::SaslContinue,
        AUTH_SASL_FINAL => AuthRequest::SaslFinal,
        other => AuthRequest::Unsupported(other),
    })
}

/// Rewrites an AuthenticationSASL message without `SCRAM-SHA-256-PLUS`. Returns `None` when the
/// message is malformed.
pub fn sasl_without_channel_binding(frame: &[u8]) -> Option<BytesMut> {
    let mechanisms = body(frame).get(4..)?;
    let (&0, list) = mechanisms.split_last()? else {
        return None;
    };
    let mut out = BytesMut::with_capacity(frame.len());
    encode_message(&mut out, AUTHENTICATION, |b| {
        b.put_u32(AUTH_SASL);
        for mechanism in list.split(|&c| c == 0).filter(|m| !m.is_empty()) {
            if mechanism != SCRAM_PLUS.as_bytes() {
                b.put_slice(mechanism);
                b.put_u8(0);
            }
        }
        b.put_u8(0);
    });
    Some(out)
}

/// BackendKeyData: the process id and secret a client needs to cancel its query.
pub fn backend_key_data(frame: &[u8]) -> Option<(u32, Vec<u8>)> {
    let body = body(frame);
    let pid = read_u32(body)?;
    let secret = body.get(4..)?;
    (4..=256)
        .contains(&secret.len())
        .then(|| (pid, secret.to_vec()))
}

/// DataRow: its first column as text (`None` when malformed, NULL or not UTF-8).
pub fn data_row_first_text(frame: &[u8]) -> Option<String> {
    let body = body(frame);
    let columns = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    if columns < 1 {
        return None;
    }
    let len = usize::try_from(i32::from_be_bytes(body.get(2..6)?.try_into().ok()?)).ok()?;
    let value = body.get(6..6usize.checked_add(len)?)?;
    std::str::from_utf8(value).ok().map(str::to_owned)
}

/// ParameterStatus: a setting the server reports (server_version, TimeZone, ...).
pub fn parameter_status(frame: &[u8]) -> Option<(String, String)> {
    let mut strings = body(frame).split(|&b| b == 0);
    let name = std::str::from_utf8(strings.next()?).ok()?;
    let value = std::str::from_utf8(strings.next()?).ok()?;
    Some((name.to_owned(), value.to_owned()))
}

/// How a statement ended a transaction block, by its CommandComplete tag: `COMMIT` (and
/// `PREPARE TRANSACTION`, after which the session's settings stand as after a commit), or
/// `ROLLBACK` (also what a COMMIT of a failed block answers, and a ROLLBACK TO SAVEPOINT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEnd {
    Commit,
    Rollback,
    /// Any other statement.
    Other,
}

/// The block ending a CommandComplete reports; `None` for a malformed one.
pub fn command_block_end(frame: &[u8]) -> Option<BlockEnd> {
    let tag = body(frame).split(|&b| b == 0).next()?;
    Some(match tag {
        b"COMMIT" | b"PREPARE TRANSACTION" => BlockEnd::Commit,
        b"ROLLBACK" => BlockEnd::Rollback,
        _ => BlockEnd::Other,
    })
}

/// The command tags whose answer settles what holds a session at its version
/// (`router::prepared`): those of the statements that drop what a session prepared or declared
/// (`DEALLOCATE`, `CLOSE`, `DISCARD`), which confirm the release, and SQL `PREPARE`'s, which
/// confirms the statement was made.
pub const HOLD_TAGS: [&str; 7] = [
    "DEALLOCATE",
    "DEALLOCATE ALL",
    "CLOSE CURSOR",
    "CLOSE CURSOR ALL",
    "DISCARD ALL",
    "DISCARD TEMP",
    "PREPARE",
];

/// The tag of a CommandComplete that answers a statement in [`HOLD_TAGS`]; `None` for any
/// other.
pub fn hold_tag(frame: &[u8]) -> Option<&'static str> {
    let tag = body(frame).split(|&b| b == 0).next()?;
    HOLD_TAGS
        .iter()
        .copied()
        .find(|known| known.as_bytes() == tag)
}

/// Whether a CommandComplete's tag is `tag`.
pub fn command_tag_is(frame: &[u8], tag: &str) -> bool {
    body(frame).split(|&b| b == 0).next() == Some(tag.as_bytes())
}

/// The transaction status a ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionStatus {
    #[default]
    Idle,
    InTransaction,
    Failed,
}

pub fn ready_for_query(frame: &[u8]) -> Option<TransactionStatus> {
    match body(frame) {
        [b'I'] => Some(TransactionStatus::Idle),
        [b'T'] => Some(TransactionStatus::InTransaction),
        [b'E'] => Some(TransactionStatus::Failed),
        _ => None,
    }
}

/// The fields of an ErrorResponse or NoticeResponse that viewgate reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: String,
    /// The table an error is about (constraint violations name it), with its schema.
    pub schema: String,
    pub table: String,
    /// The constraint a violation is of (a foreign key's names the referencing table above).
    pub constraint: String,
    /// The column a violation is about (a NOT NULL violation's).
    pub column: String,
    /// The CONTEXT lines: which functions the error arose in.
    pub context: String,
    /// Where in the statement's text it is (empty: nowhere in particular).
    pub position: String,
}

pub fn error_fields(frame: &[u8]) -> Option<ErrorFields> {
    let mut fields = ErrorFields::default();
    let mut rest = body(frame);
    loop {
        let (&kind, after) = rest.split_first()?;
        if kind == 0 {
            return Some(fields);
        }
        let end = after.iter().position(|&b| b == 0)?;
        let value = String::from_utf8_lossy(&after[..end]).into_owned();
        match kind {
            FIELD_SEVERITY_NONLOCALIZED => fields.severity = value,
            FIELD_SEVERITY if fields.severity.is_empty() => fields.severity = value,
            FIELD_CODE => fields.code = value,
            FIELD_MESSAGE => fields.message = value,
            FIELD_DETAIL => fields.detail = value,
            FIELD_SCHEMA => fields.schema = value,
            FIELD_TABLE => fields.table = value,
            FIELD_CONSTRAINT => fields.constraint = value,
            FIELD_COLUMN => fields.column = value,
            FIELD_WHERE => fields.context = value,
            FIELD_POSITION => fields.position = value,
            _ => {}
        }
        rest = &after[end + 1..];
    }
}

/// An ErrorResponse with `frame`'s severity and SQLSTATE and `message`, and nothing else of
/// it (no detail, hint, context or position); `None` for a malformed frame.
pub fn with_only_message(frame: &[u8], message: &str) -> Option<BytesMut> {
    rebuilt(
        frame,
        |kind| {
            matches!(
                kind,
                FIELD_SEVERITY | FIELD_SEVERITY_NONLOCALIZED | FIELD_CODE
            )
        },
        &[(FIELD_MESSAGE, message)],
    )
}

/// The ErrorResponse `frame` with its message replaced by `message`, the other fields as they
/// were; `None` for a malformed frame.
pub fn with_message(frame: &[u8], message: &str) -> Option<BytesMut> {
    rebuilt(
        frame,
        |kind| kind != FIELD_MESSAGE,
        &[(FIELD_MESSAGE, message)],
    )
}

/// The ErrorResponse `frame` with each field of `replaced` (by its kind) in place of its own,
/// the other fields as they were; `None` for a malformed frame.
pub fn with_fields(frame: &[u8], replaced: &[(u8, &str)]) -> Option<BytesMut> {
    rebuilt(
        frame,
        |kind| replaced.iter().all(|(replacing, _)| *replacing != kind),
        replaced,
    )
}

/// The ErrorResponse `frame` without its position, the other fields as they were; `None` for
/// a malformed frame.
pub fn without_position(frame: &[u8]) -> Option<BytesMut> {
    rebuilt(frame, |kind| kind != FIELD_POSITION, &[])
}

/// The ErrorResponse `frame` with its detail field (if any) replaced by `detail`, the other
/// fields as they were; `None` for a malformed frame.
pub fn with_detail(frame: &[u8], detail: &str) -> Option<BytesMut> {
    rebuilt(
        frame,
        |kind| kind != FIELD_DETAIL,
        &[(FIELD_DETAIL, detail)],
    )
}

/// The ErrorResponse `frame` as a violation about `column`: SQLSTATE `code`, `message`,
/// `detail` and the column field in place of its own code, message, detail, column and
/// constraint; its severity, schema, table, context and source location stand. `None` for a
/// malformed frame.
pub fn as_column_violation(
    frame: &[u8],
    code: &str,
    message: &str,
    detail: &str,
    column: &str,
) -> Option<BytesMut> {
    rebuilt(
        frame,
        |kind| {
            !matches!(
                kind,
                FIELD_CODE | FIELD_MESSAGE | FIELD_DETAIL | FIELD_COLUMN | FIELD_CONSTRAINT
            )
        },
        &[
            (FIELD_CODE, code),
            (FIELD_MESSAGE, message),
            (FIELD_DETAIL, detail),
            (FIELD_COLUMN, column),
        ],
    )
}

/// The ErrorResponse or NoticeResponse `frame` with its context field (`W`) replaced by
/// `context` and its internal query and position (a statement a function was preparing, which
/// the context would have quoted) left out, the other fields as they were; `None` for a
/// malformed frame.
pub fn with_context(frame: &[u8], context: &str) -> Option<BytesMut> {
    rebuilt(
        frame,
        |kind| {
            !matches!(
                kind,
                FIELD_WHERE | FIELD_INTERNAL_QUERY | FIELD_INTERNAL_POSITION
            )
        },
        &[(FIELD_WHERE, context)],
    )
}

/// The ErrorResponse (or NoticeResponse) `frame` with the fields `keep` accepts, in their
/// order, then `added`.
fn rebuilt(frame: &[u8], keep: impl Fn(u8) -> bool, added: &[(u8, &str)]) -> Option<BytesMut> {
    let tag = *frame.first()?;
    let mut fields: Vec<(u8, &[u8])> = Vec::new();
    let mut rest = body(frame);
    loop {
        let (&kind, after) = rest.split_first()?;
        if kind == 0 {
            break;
        }
        let end = after.iter().position(|&b| b == 0)?;
        if keep(kind) {
            fields.push((kind, &after[..end]));
        }
        rest = &after[end + 1..];
    }
    let added_len: usize = added.iter().map(|(_, text)| text.len() + 2).sum();
    let mut out = BytesMut::with_capacity(frame.len() + added_len);
    encode_message(&mut out, tag, |b| {
        for (kind, value) in &fields {
            b.put_u8(*kind);
            b.put_slice(value);
            b.put_u8(0);
        }
        for (kind, text) in added {
            b.put_u8(*kind);
            b.put_slice(text.replace('\0', "").as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_message(&mut out, tag, |b| b.put_slice(body));
        out.to_vec()
    }

    #[test]
    fn strips_scram_plus_from_the_offer() {
        let offer = frame(b'R', b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let stripped = sasl_without_channel_binding(&offer).unwrap();
        assert_eq!(
            &stripped[..],
            &frame(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0")[..]
        );
        assert_eq!(auth_request(&stripped), Some(AuthRequest::Sasl));
    }

    #[test]
    fn malformed_bodies_decode_to_none() {
        assert_eq!(auth_request(&frame(b'R', b"\0\0")), None);
        assert_eq!(backend_key_data(&frame(b'K', b"\0\0\0\x01")), None);
        assert_eq!(ready_for_query(&frame(b'Z', b"X")), None);
        assert_eq!(error_fields(&frame(b'E', b"SERROR")), None);
        assert!(sasl_without_channel_binding(&frame(b'R', b"\0\0\0\x0aSCRAM")).is_none());
        assert_eq!(data_row_first_text(&frame(b'D', b"\0\x01\0\0\0\x09")), None);
        assert_eq!(
            data_row_first_text(&frame(b'D', b"\0\x01\xff\xff\xff\xff")),
            None
        );
        assert_eq!(data_row_first_text(&frame(b'D', b"\0\0")), None);
        assert_eq!(
            data_row_first_text(&frame(b'D', b"\0\x01\0\0\0\x06public")).as_deref(),
            Some("public")
        );
    }

    #[test]
    fn reads_error_fields() {
        let fields = error_fields(&frame(b'E', b"SFATAL\0VFATAL\0C57P01\0Mbye\0\0")).unwrap();
        assert_eq!(fields.code, "57P01");
        assert_eq!(fields.severity, "FATAL");
        assert_eq!(fields.message, "bye");
    }

    #[test]
    fn replaces_the_detail_and_keeps_every_other_field() {
        let original = frame(
            b'E',
            b"SERROR\0C23502\0Mnull value\0DFailing row contains (1, x)\0spublic\0tt\0\0",
        );
        let replaced = with_detail(&original, "hidden").unwrap();
        assert_eq!(
            &replaced[..],
            &frame(
                b'E',
                b"SERROR\0C23502\0Mnull value\0spublic\0tt\0Dhidden\0\0"
            )[..]
        );
        let fields = error_fields(&replaced).unwrap();
        assert_eq!(
            (fields.schema.as_str(), fields.table.as_str()),
            ("public", "t")
        );
        assert_eq!(with_detail(&frame(b'E', b"SERROR"), "x"), None);
    }

    #[test]
    fn a_check_violation_becomes_one_about_a_column() {
        let original = frame(
            b'E',
            b"SERROR\0C23514\0Mnew row violates check\0Drow\0spublic\0tt\0nt_c_not_null_v2\0WCOPY t, line 1\0\0",
        );
        let told = as_column_violation(&original, "23502", "null value", "hidden", "c").unwrap();
        assert_eq!(
            &told[..],
            &frame(
                b'E',
                b"SERROR\0spublic\0tt\0WCOPY t, line 1\0C23502\0Mnull value\0Dhidden\0cc\0\0"
            )[..]
        );
        let fields = error_fields(&told).unwrap();
        assert_eq!(
            (fields.column.as_str(), fields.constraint.as_str()),
            ("c", "")
        );
    }
}
