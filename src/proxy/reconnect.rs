//! Moving one session to another upstream: capture its state on the old connection, open and
//! log in a new one, and replay the state there. Used by the two-phase switch (`switch/`)
//! while the session stands at a transaction boundary with its pumps stopped.
//!
//! Session state is *asked of the old server* rather than reconstructed from the statements
//! the client sent: `pg_settings` rows whose source is `session` are exactly the settings the
//! client changed with SET, RESET or `set_config(..., false)` and that are still in effect
//! (a SET that failed, or was rolled back with its transaction, is not there), and
//! `pg_prepared_statements` lists every named prepared statement that exists now, with the
//! text the server parsed (already rewritten for the session's version) and its parameter
//! types. The query runs as a named statement of the proxy's own in the extended protocol,
//! so it leaves the client's unnamed statement alone, and the old connection stays usable if
//! the switch is aborted.
//!
//! Replay on the new connection: the client's StartupMessage (the login, `upstream_auth.rs`),
//! then `set_config(name, value, false)` for each setting (client_encoding first, role and
//! session_authorization last, so the rest is set with the original privileges), then a Parse
//! for each protocol-level prepared statement and the original `PREPARE` statement for
//! SQL-level ones (cut out of its query string when that held several statements: the last
//! `PREPARE` of its name there). An error in the settings fails the move, and the caller
//! aborts the whole switch; a statement that cannot be prepared on the new server (one over a
//! temporary table, which is not carried over) is left behind, and its client hears 26000 when
//! it uses it.
//!
//! Postgres records a statement's text, not the `standard_conforming_strings` it was read
//! under. In a session that has it off, a statement viewgate forwarded only because it read as
//! with the setting on (it has a backslash and names a managed table: the session refuses such
//! text while the setting is not known to be on) is prepared again with the setting on for the
//! moment, so the new server reads it as the old one did, not as a reference to the base table
//! that the setting's new value would make of it.
//!
//! Not carried over (documented in docs/CLIENT_SESSION.md): temporary tables, session advisory
//! locks, LISTEN registrations, WITH HOLD cursors, the unnamed prepared statement, and
//! sequence state (`currval`).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;

use super::upstream::{UpstreamError, UpstreamTarget};
use super::upstream_auth::{self, Credentials, LoggedIn, LoginError};
use crate::model::catalog_substitutes;
use crate::net::stream::UpstreamStream;
use crate::protocol::backend::{self, TransactionStatus};
use crate::protocol::frame::{HEADER_LEN, encode_message};
use crate::protocol::frontend;
use crate::protocol::limits::UPSTREAM_MESSAGE_MAX_LEN;
use crate::protocol::reader::{MessageReader, ReadError};
use crate::protocol::startup::StartupMessage;
use crate::rewriter::splice::TextIndex;
use crate::rewriter::statements;

/// The proxy's own statement on the old connection; a name no driver generates.
const STATE_STATEMENT: &str = "__viewgate_session_state";
/// Session settings and prepared statements, one row each: kind, name, value, parameter OIDs.
/// standard_conforming_strings whatever set it: a role's default can have it off, and the
/// statements read with it on must be told apart from those read with it off.
const STATE_SQL: &str = "SELECT 's', name, pg_catalog.current_setting(name), NULL \
     FROM pg_catalog.pg_settings \
     WHERE (source = 'session' OR name = 'standard_conforming_strings') \
     AND name NOT IN ('transaction_isolation', 'transaction_read_only', 'transaction_deferrable') \
     UNION ALL \
     SELECT CASE WHEN from_sql THEN 'q' ELSE 'p' END, name, statement, \
     parameter_types::pg_catalog.oid[]::pg_catalog.text \
     FROM pg_catalog.pg_prepared_statements WHERE name <> '__viewgate_session_state'";
const SET_CONFIG_SQL: &[u8] = b"SELECT pg_catalog.set_config($1, $2, false)";
/// The setting that decides how a backslash in a `'…'` literal reads.
const STANDARD_CONFORMING_STRINGS: &[u8] =
    catalog_substitutes::STANDARD_CONFORMING_STRINGS.as_bytes();
/// Type OIDs below this are built in and equal on every cluster; others are left for the new
/// server to infer (a user-defined type has another OID there).
const FIRST_NORMAL_OBJECT_ID: u32 = 16_384;
const TEXT_OID: u32 = 25;

#[derive(Debug, thiserror::Error)]
pub enum ReconnectError {
    #[error("reading the session's state on the old upstream failed: {0}")]
    Capture(String),
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error("replaying the session's state on the new upstream failed: {0}")]
    Replay(String),
    #[error(
        "prepared statement {0:?} was created by a multi-statement query and cannot be replayed"
    )]
    UnreplayablePrepare(String),
}

/// A row of the state query that is not what the query returns.
#[derive(Debug, thiserror::Error)]
enum BadRow {
    #[error("a malformed row")]
    Malformed,
    #[error("a row of the wrong shape")]
    Shape,
    #[error("a row of an unknown kind")]
    UnknownKind,
}

/// Where sessions move to, shared by all sessions of one switch.
pub struct SwitchPlan {
    pub target: Arc<UpstreamTarget>,
    pub credentials: Credentials,
}

/// A new upstream connection, logged in and carrying the session's state.
pub struct Reconnected {
    pub stream: UpstreamStream,
    pub login: LoggedIn,
    /// The startup packet the new backend was started with: the session's from now on.
    pub startup: StartupMessage,
}

impl Reconnected {
    /// Ends the new connection politely (the switch was aborted).
    pub async fn discard(mut self) {
        let _ = self.stream.write_all(&frontend::TERMINATE_MESSAGE).await;
        let _ = self.stream.shutdown().await;
    }
}

/// What a session has that a new connection must be given.
#[derive(Debug, Default, PartialEq)]
struct SessionState {
    settings: Vec<(Vec<u8>, Vec<u8>)>,
    /// Protocol-level statements: name, text, parameter type OIDs.
    statements: Vec<(Vec<u8>, Vec<u8>, Vec<u32>)>,
    /// SQL-level `PREPARE` texts.
    prepares: Vec<(Vec<u8>, Vec<u8>)>,
    /// Statements and `PREPARE`s (as above) to prepare again with
    /// `standard_conforming_strings` on, in a session that has it off.
    conforming_statements: Vec<(Vec<u8>, Vec<u8>, Vec<u32>)>,
    conforming_prepares: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Captures the session's state on `old`, opens a connection per `plan` and replays it there.
/// Messages the old server sends on its own meanwhile (notifications, notices) are appended to
/// `to_client`. `read_as_conforming` says which statement texts the session forwarded only as
/// read with `standard_conforming_strings` on (see the module comment).
pub async fn prepare(
    old: &mut UpstreamStream,
    to_client: &mut BytesMut,
    startup: StartupMessage,
    plan: &SwitchPlan,
    read_as_conforming: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<Reconnected, ReconnectError> {
    let state = capture(old, to_client).await?;
    let mut stream = plan.target.connect().await?;
    let mut login =
        upstream_auth::login(&mut stream, &plan.target, &startup, &plan.credentials).await?;
    // The server says nothing after its first ReadyForQuery until asked.
    if !login.leftover.is_empty() {
        return Err(ReconnectError::Replay(
            "unexpected data after the login".into(),
        ));
    }
    let mut reader = MessageReader::new(UPSTREAM_MESSAGE_MAX_LEN);
    let state = state.conforming_where(read_as_conforming);
    replay(&mut stream, &mut reader, &state, &mut login.parameters).await?;
    login.leftover = reader.into_leftover();
    Ok(Reconnected {
        stream,
        login,
        startup,
    })
}

async fn capture(
    old: &mut UpstreamStream,
    to_client: &mut BytesMut,
) -> Result<SessionState, ReconnectError> {
    let mut out = BytesMut::new();
    parse(
        &mut out,
        STATE_STATEMENT.as_bytes(),
        STATE_SQL.as_bytes(),
        &[],
    );
    bind(&mut out, STATE_STATEMENT.as_bytes(), &[]);
    execute(&mut out);
    encode_message(&mut out, frontend::CLOSE, |b| {
        b.put_u8(frontend::STATEMENT);
        put_cstr(b, STATE_STATEMENT.as_bytes());
    });
    sync(&mut out);
    write(old, &out)
        .await
        .map_err(|e| ReconnectError::Capture(e.to_string()))?;
    let mut reader = MessageReader::new(UPSTREAM_MESSAGE_MAX_LEN);
    let mut state = SessionState::default();
    let mut failure = None;
    loop {
        let frame = reader
            .next(old)
            .await
            .map_err(|e| ReconnectError::Capture(read_error(e)))?;
        match frame[0] {
            backend::DATA_ROW => {
                if let Err(reason) = state.add_row(&frame) {
                    failure.get_or_insert(reason.to_string());
                }
            }
            backend::PARSE_COMPLETE
            | backend::BIND_COMPLETE
            | backend::CLOSE_COMPLETE
            | backend::COMMAND_COMPLETE => {}
            backend::ERROR_RESPONSE => {
                failure.get_or_insert(error_text(&frame));
            }
            backend::READY_FOR_QUERY => {
                if backend::ready_for_query(&frame) != Some(TransactionStatus::Idle) {
                    failure.get_or_insert("the session is not idle".into());
                }
                break;
            }
            // Notifications, notices and parameter reports belong to the client.
            _ => to_client.extend_from_slice(&frame),
        }
    }
    // Nothing else is in flight at a boundary, so nothing can have been read past the
    // ReadyForQuery; if something was, the stream is not what we think it is.
    if !reader.into_leftover().is_empty() {
        failure.get_or_insert("unexpected data after the state query".into());
    }
    match failure {
        Some(reason) => Err(ReconnectError::Capture(reason)),
        None => {
            state.order_settings();
            Ok(state)
        }
    }
}

impl SessionState {
    /// Whether the session has `standard_conforming_strings` off.
    fn strings_off(&self) -> bool {
        self.settings
            .iter()
            .any(|(name, value)| name == STANDARD_CONFORMING_STRINGS && value != b"on")
    }

    /// Sets apart, in a session that has `standard_conforming_strings` off, the statements
    /// the session forwarded only as read with it on (`read_as_conforming`).
    fn conforming_where(mut self, read_as_conforming: &dyn Fn(&[u8]) -> bool) -> Self {
        if !self.strings_off() {
            return self;
        }
        let (conforming, others) = std::mem::take(&mut self.statements)
            .into_iter()
            .partition(|(_, text, _)| read_as_conforming(text));
        self.conforming_statements = conforming;
        self.statements = others;
        let (conforming, others) = std::mem::take(&mut self.prepares)
            .into_iter()
            .partition(|(_, text)| read_as_conforming(text));
        self.conforming_prepares = conforming;
        self.prepares = others;
        self
    }

    fn add_row(&mut self, frame: &[u8]) -> Result<(), BadRow> {
        let fields = data_row(frame).ok_or(BadRow::Malformed)?;
        let [Some(kind), Some(name), Some(value), types] = fields.as_slice() else {
            return Err(BadRow::Shape);
        };
        match kind.as_slice() {
            b"s" => self.settings.push((name.clone(), value.clone())),
            b"p" => {
                let types = types.as_deref().map(parse_oid_array).unwrap_or_default();
                self.statements.push((name.clone(), value.clone(), types));
            }
            b"q" => self.prepares.push((name.clone(), value.clone())),
            _ => return Err(BadRow::UnknownKind),
        }
        Ok(())
    }

    /// client_encoding first (later values arrive in it), role and session_authorization
    /// last (the rest is set with the login's privileges).
    fn order_settings(&mut self) {
        let rank = |name: &[u8]| match name {
            b"client_encoding" => 0,
            b"role" | b"session_authorization" => 2,
            _ => 1,
        };
        self.settings.sort_by_key(|(name, _)| rank(name));
        // session_authorization resets role, so role goes after it.
        self.settings
            .sort_by_key(|(name, _)| name.as_slice() == b"role");
    }
}

async fn replay(
    stream: &mut UpstreamStream,
    reader: &mut MessageReader,
    state: &SessionState,
    parameters: &mut Vec<(String, String)>,
) -> Result<(), ReconnectError> {
    let mut out = BytesMut::new();
    let (on, off) = (b"on".to_vec(), b"off".to_vec());
    let strings = STANDARD_CONFORMING_STRINGS.to_vec();
    let conforming = !state.conforming_statements.is_empty();
    if !state.settings.is_empty() {
        parse(&mut out, b"", SET_CONFIG_SQL, &[TEXT_OID, TEXT_OID]);
        for (name, value) in &state.settings {
            bind(&mut out, b"", &[name, value]);
            execute(&mut out);
        }
    }
    // The settings are in: `standard_conforming_strings` on just for the statements read so.
    if conforming {
        bind(&mut out, b"", &[&strings, &on]);
        execute(&mut out);
        for (name, text, types) in &state.conforming_statements {
            parse_statement(&mut out, name, text, types);
        }
        bind(&mut out, b"", &[&strings, &off]);
        execute(&mut out);
    }
    sync(&mut out);
    // What each ReadyForQuery to come answers, in order: an error in a required part fails
    // the move; a statement that cannot be prepared on the new upstream (it reads a temporary
    // table, which is not carried over) is left behind, as the unnamed statement is, and the
    // client hears 26000 when it uses it: one session's statement does not stop the switch
    // for every session (the nineteenth red-team pass).
    let mut parts = vec![Part::Required];
    for (name, text, types) in &state.statements {
        parse_statement(&mut out, name, text, types);
        sync(&mut out);
        parts.push(Part::Statement(name.clone()));
    }
    if !state.conforming_prepares.is_empty() {
        encode_message(&mut out, frontend::QUERY, |b| {
            put_cstr(b, b"SET standard_conforming_strings = on")
        });
        parts.push(Part::Required);
        for (name, text) in &state.conforming_prepares {
            prepare_query(&mut out, name, text)?;
            parts.push(Part::Required);
        }
        encode_message(&mut out, frontend::QUERY, |b| {
            put_cstr(b, b"SET standard_conforming_strings = off")
        });
        parts.push(Part::Required);
    }
    let mut left_behind = Vec::new();
    for (name, text) in &state.prepares {
        match prepare_query(&mut out, name, text) {
            Ok(()) => parts.push(Part::Statement(name.clone())),
            Err(_) => left_behind.push(String::from_utf8_lossy(name).into_owned()),
        }
    }
    write(stream, &out)
        .await
        .map_err(|e| ReconnectError::Replay(e.to_string()))?;
    let mut failure = None;
    let mut answered = 0;
    while answered < parts.len() {
        let frame = reader
            .next(stream)
            .await
            .map_err(|e| ReconnectError::Replay(read_error(e)))?;
        match frame[0] {
            backend::ERROR_RESPONSE => match &parts[answered] {
                Part::Required => {
                    failure.get_or_insert(error_text(&frame));
                }
                Part::Statement(name) => left_behind.push(format!(
                    "{} ({})",
                    String::from_utf8_lossy(name),
                    error_text(&frame)
                )),
            },
            backend::PARAMETER_STATUS => {
                if let Some((name, value)) = backend::parameter_status(&frame) {
                    match parameters.iter_mut().find(|(known, _)| *known == name) {
                        Some(entry) => entry.1 = value,
                        None => parameters.push((name, value)),
                    }
                }
            }
            backend::READY_FOR_QUERY => answered += 1,
            _ => {}
        }
    }
    if let Some(reason) = failure {
        return Err(ReconnectError::Replay(reason));
    }
    if !left_behind.is_empty() {
        tracing::warn!(
            ?left_behind,
            "prepared statements left behind on the old upstream: they could not be prepared on the new one"
        );
    }
    Ok(())
}

/// What one ReadyForQuery of the replay answers.
enum Part {
    /// Settings and what must come with them: an error fails the move.
    Required,
    /// One prepared statement, by name: an error leaves it behind.
    Statement(Vec<u8>),
}

/// A Parse of a protocol-level statement, with its built-in parameter types (others are left
/// for the new server to infer).
fn parse_statement(out: &mut BytesMut, name: &[u8], text: &[u8], types: &[u32]) {
    let types: Vec<u32> = types
        .iter()
        .map(|&oid| if oid < FIRST_NORMAL_OBJECT_ID { oid } else { 0 })
        .collect();
    parse(out, name, text, &types);
}

/// A Query running a SQL-level `PREPARE` again (cut out of a multi-statement query string).
fn prepare_query(out: &mut BytesMut, name: &[u8], text: &[u8]) -> Result<(), ReconnectError> {
    let statement = if is_single_statement(text) {
        text.to_vec()
    } else {
        prepare_statement_of(text, name).ok_or_else(|| {
            ReconnectError::UnreplayablePrepare(String::from_utf8_lossy(name).into_owned())
        })?
    };
    encode_message(out, frontend::QUERY, |b| put_cstr(b, &statement));
    Ok(())
}

/// A PREPARE text holding one statement (a trailing semicolon allowed). Quotes are not
/// parsed: a semicolon anywhere else makes the text count as several statements, which errs
/// on the side of refusing the move.
fn is_single_statement(text: &[u8]) -> bool {
    let trimmed = text
        .iter()
        .rposition(|&b| !(b.is_ascii_whitespace() || b == b';'))
        .map_or(&text[..0], |end| &text[..=end]);
    !trimmed.contains(&b';')
}

/// The last `PREPARE name ...` statement of a multi-statement query string (Postgres records
/// the whole string a statement was prepared in; an earlier `PREPARE` of the name was
/// deallocated before the last ran). Names fold as Postgres folds them: ASCII only. Found with the rewriter's tokenizer, so
/// semicolons in strings, comments and dollar quotes do not split it.
fn prepare_statement_of(text: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    use sqlparser::tokenizer::Token;
    let text = std::str::from_utf8(text).ok()?;
    let name = std::str::from_utf8(name).ok()?;
    let index = TextIndex::new(text);
    statements::split(text, &index)
        .ok()?
        .into_iter()
        // The last: an earlier one of the same name was deallocated before it ran.
        .rev()
        .find(|statement| {
            let mut words = statement
                .tokens
                .iter()
                .filter_map(|token| match &token.token {
                    Token::Word(word) => Some(word),
                    _ => None,
                });
            let first = words.next();
            let second = words.next();
            matches!((first, second), (Some(keyword), Some(word))
            if keyword.value.eq_ignore_ascii_case("prepare")
                && match word.quote_style {
                    Some(_) => word.value == name,
                    None => word.value.to_ascii_lowercase() == name,
                })
        })
        .map(|statement| text[statement.range].as_bytes().to_vec())
}

fn parse(out: &mut BytesMut, name: &[u8], sql: &[u8], types: &[u32]) {
    encode_message(out, frontend::PARSE, |b| {
        put_cstr(b, name);
        put_cstr(b, sql);
        b.put_u16(types.len() as u16);
        for oid in types {
            b.put_u32(*oid);
        }
    });
}

/// Binds the unnamed portal to `statement` with text parameters and text results.
fn bind(out: &mut BytesMut, statement: &[u8], params: &[&Vec<u8>]) {
    encode_message(out, frontend::BIND, |b| {
        b.put_u8(0);
        put_cstr(b, statement);
        b.put_u16(0);
        b.put_u16(params.len() as u16);
        for param in params {
            b.put_i32(param.len() as i32);
            b.put_slice(param);
        }
        b.put_u16(0);
    });
}

fn execute(out: &mut BytesMut) {
    encode_message(out, frontend::EXECUTE, |b| {
        b.put_u8(0);
        b.put_i32(0);
    });
}

fn sync(out: &mut BytesMut) {
    encode_message(out, frontend::SYNC, |_| {});
}

fn put_cstr(out: &mut BytesMut, bytes: &[u8]) {
    out.put_slice(bytes);
    out.put_u8(0);
}

/// The fields of a DataRow (`None` for SQL NULL); `None` when malformed.
fn data_row(frame: &[u8]) -> Option<Vec<Option<Vec<u8>>>> {
    let body = frame.get(HEADER_LEN..)?;
    let count = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = &body[2..];
    let mut fields = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        if len < 0 {
            fields.push(None);
        } else {
            let len = len as usize;
            fields.push(Some(rest.get(..len)?.to_vec()));
            rest = &rest[len..];
        }
    }
    Some(fields)
}

/// `{23,25}` → [23, 25].
fn parse_oid_array(text: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(text)
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|oid| oid.trim().parse().ok())
        .collect()
}

fn error_text(frame: &[u8]) -> String {
    backend::error_fields(frame)
        .map(|fields| format!("{} (SQLSTATE {})", fields.message, fields.code))
        .unwrap_or_else(|| "an unreadable error".into())
}

fn read_error(error: ReadError) -> String {
    error.to_string()
}

async fn write(stream: &mut UpstreamStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_replayed_encoding_first_and_role_last() {
        let mut state = SessionState::default();
        for name in [
            "role",
            "search_path",
            "session_authorization",
            "client_encoding",
        ] {
            state.settings.push((name.into(), b"x".to_vec()));
        }
        state.order_settings();
        let order: Vec<&[u8]> = state.settings.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            order,
            [
                b"client_encoding".as_slice(),
                b"search_path",
                b"session_authorization",
                b"role"
            ]
        );
    }

    #[test]
    fn statements_read_as_conforming_are_set_apart_only_while_strings_are_off() {
        let backslash = |text: &[u8]| text.contains(&b'\\');
        let state = |value: &[u8]| SessionState {
            settings: vec![(STANDARD_CONFORMING_STRINGS.to_vec(), value.to_vec())],
            statements: vec![
                (b"a".to_vec(), b"SELECT 'x\\'".to_vec(), Vec::new()),
                (b"b".to_vec(), b"SELECT 1".to_vec(), Vec::new()),
            ],
            prepares: vec![(b"c".to_vec(), b"PREPARE c AS SELECT 'x\\'".to_vec())],
            ..SessionState::default()
        };
        let on = state(b"on").conforming_where(&backslash);
        assert!(on.conforming_statements.is_empty() && on.conforming_prepares.is_empty());
        let off = state(b"off").conforming_where(&backslash);
        let names = |list: &[(Vec<u8>, Vec<u8>, Vec<u32>)]| -> Vec<Vec<u8>> {
            list.iter().map(|(name, _, _)| name.clone()).collect()
        };
        assert_eq!(names(&off.conforming_statements), [b"a".to_vec()]);
        assert_eq!(names(&off.statements), [b"b".to_vec()]);
        assert_eq!(off.conforming_prepares.len(), 1);
        assert!(off.prepares.is_empty());
    }

    #[test]
    fn oid_arrays_and_single_statements() {
        assert_eq!(parse_oid_array(b"{23,25}"), [23, 25]);
        assert_eq!(parse_oid_array(b"{}"), Vec::<u32>::new());
        assert!(is_single_statement(b"PREPARE a AS SELECT 1;  "));
        assert!(!is_single_statement(b"PREPARE a AS SELECT 1; SELECT 2"));
        let text = b"SET x = 'a;b'; PREPARE \"Q\" AS SELECT ';'; prepare q2(int) AS SELECT $1";
        assert_eq!(
            prepare_statement_of(text, b"Q").unwrap(),
            b"PREPARE \"Q\" AS SELECT ';'"
        );
        assert_eq!(
            prepare_statement_of(text, b"q2").unwrap(),
            b"prepare q2(int) AS SELECT $1"
        );
        assert_eq!(prepare_statement_of(text, b"q3"), None);
    }
}
