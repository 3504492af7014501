//! A raw protocol client for tests that must send what no driver would: malformed lengths,
//! truncated messages, unknown versions. Blocking std sockets with a read timeout, so a hang is
//! a test failure rather than a stuck test.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long any read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// The code a CancelRequest carries where a startup packet has its protocol version.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

pub fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("proxy accepts the connection");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A startup packet with `version` and `params`.
pub fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (key, value) in params {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// A tagged message.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// Reads one message; `None` when the peer closed the connection.
pub fn read_message(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("reading from the proxy failed (a hang?): {e}"),
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; length - 4];
    stream.read_exact(&mut body).expect("message body");
    Some((header[0], body))
}

/// The fields of an ErrorResponse body.
#[derive(Debug, Default)]
pub struct ErrorReport {
    pub severity: String,
    pub code: String,
    pub message: String,
}

pub fn parse_error(body: &[u8]) -> ErrorReport {
    let mut report = ErrorReport::default();
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'V' => report.severity = value,
            b'C' => report.code = value,
            b'M' => report.message = value,
            _ => {}
        }
    }
    report
}

/// Reads until an ErrorResponse and returns it; panics if the connection ends first.
pub fn expect_error(stream: &mut TcpStream) -> ErrorReport {
    loop {
        match read_message(stream) {
            Some((b'E', body)) => return parse_error(&body),
            Some(_) => continue,
            None => panic!("connection closed without an ErrorResponse"),
        }
    }
}

/// True when the peer has closed the connection (reads return EOF or reset).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        // A signal that lands in the wait ends a read with a timeout early, even under
        // SA_RESTART; that says nothing about the connection.
        return match stream.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        };
    }
}

/// Connects, starts a trust-auth session as `user` and reads up to the first ReadyForQuery.
/// Returns the messages seen on the way (tags).
pub fn start_session(address: SocketAddr, user: &str) -> (TcpStream, Vec<u8>) {
    let (stream, messages) = startup_messages(address, user);
    (stream, messages.into_iter().map(|(tag, _)| tag).collect())
}

/// Connects, starts a trust-auth session as `user` and reads up to the first ReadyForQuery;
/// returns the stream and the cancel key it was told (process id, secret).
pub fn start_session_with_key(address: SocketAddr, user: &str) -> (TcpStream, u32, u32) {
    let (stream, messages) = startup_messages(address, user);
    let (_, body) = messages
        .iter()
        .find(|(tag, _)| *tag == b'K')
        .expect("BackendKeyData");
    let word = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
    (stream, word(0), word(4))
}

/// Starts a trust-auth session as `user` and returns every message up to and including the
/// first ReadyForQuery; a startup ErrorResponse fails the test.
fn startup_messages(address: SocketAddr, user: &str) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    let mut stream = connect(address);
    stream
        .write_all(&startup_packet(
            PROTOCOL_3_0,
            &[("user", user), ("database", "postgres")],
        ))
        .unwrap();
    let mut messages = Vec::new();
    loop {
        let (tag, body) = read_message(&mut stream).expect("session starts");
        if tag == b'E' {
            panic!("startup failed: {:?}", parse_error(&body));
        }
        messages.push((tag, body));
        if tag == b'Z' {
            return (stream, messages);
        }
    }
}

/// A CancelRequest packet for `process_id` with `secret` (4 bytes in protocol 3.0; protocol
/// 3.2 allows up to 256).
pub fn cancel_request(process_id: u32, secret: &[u8]) -> Vec<u8> {
    let mut packet = ((12 + secret.len()) as u32).to_be_bytes().to_vec();
    packet.extend(CANCEL_REQUEST_CODE.to_be_bytes());
    packet.extend(process_id.to_be_bytes());
    packet.extend(secret);
    packet
}

/// Sends a CancelRequest on its own connection and checks the proxy closes it, as Postgres
/// does (a cancel is never answered).
pub fn send_cancel(address: SocketAddr, process_id: u32, secret: &[u8]) {
    assert!(
        cancel_is_closed(address, process_id, secret),
        "the proxy closes a cancel connection"
    );
}

/// Sends a CancelRequest on its own connection; whether the proxy closed it within
/// [`READ_TIMEOUT`].
pub fn cancel_is_closed(address: SocketAddr, process_id: u32, secret: &[u8]) -> bool {
    let mut connection = connect(address);
    connection
        .write_all(&cancel_request(process_id, secret))
        .unwrap();
    is_closed(&mut connection)
}

/// Sends `SELECT pg_sleep(seconds)`, calls `during` 300 ms later (while it sleeps), and
/// returns the SQLSTATE the statement ended with, if any, and how long it took.
pub fn sleep_outcome(
    stream: &mut TcpStream,
    seconds: f64,
    during: impl FnOnce(),
) -> (Option<String>, Duration) {
    let started = std::time::Instant::now();
    stream
        .write_all(&query(&format!("SELECT pg_sleep({seconds})")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    during();
    let mut code = None;
    loop {
        let (tag, body) = read_message(stream).expect("the statement is answered");
        match tag {
            b'E' => code = Some(parse_error(&body).code),
            b'Z' => return (code, started.elapsed()),
            _ => {}
        }
    }
}

/// Connects and sends a startup packet with exactly `params`; reads up to the first
/// ReadyForQuery (`Ok`) or ErrorResponse (`Err`).
pub fn start_session_with(
    address: SocketAddr,
    params: &[(&str, &str)],
) -> Result<TcpStream, ErrorReport> {
    let mut stream = connect(address);
    stream
        .write_all(&startup_packet(PROTOCOL_3_0, params))
        .unwrap();
    loop {
        match read_message(&mut stream).expect("an answer to the startup packet") {
            (b'Z', _) => return Ok(stream),
            (b'E', body) => return Err(parse_error(&body)),
            _ => {}
        }
    }
}

/// Sends a simple query and collects messages up to ReadyForQuery: (tag, body) pairs.
pub fn simple_query(stream: &mut TcpStream, sql: &str) -> Vec<(u8, Vec<u8>)> {
    stream.write_all(&query(sql)).unwrap();
    let mut messages = Vec::new();
    loop {
        let message = read_message(stream).expect("query answered");
        let done = message.0 == b'Z';
        messages.push(message);
        if done {
            return messages;
        }
    }
}

/// The first column of each DataRow in `messages`, as text.
pub fn first_column(messages: &[(u8, Vec<u8>)]) -> Vec<String> {
    messages
        .iter()
        .filter(|(tag, _)| *tag == b'D')
        .map(|(_, body)| {
            let length = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
            if length < 0 {
                "NULL".into()
            } else {
                String::from_utf8_lossy(&body[6..6 + length as usize]).into_owned()
            }
        })
        .collect()
}
