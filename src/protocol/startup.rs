//! Startup-phase packets: untagged, length-prefixed, told apart by a 32-bit code.
//!
//! A client's first packet is a StartupMessage, or one of the special requests (SSLRequest,
//! GSSENCRequest, CancelRequest) that share its framing. Every length is bounded before
//! anything is allocated, and every field is checked, because this is the first thing an
//! unauthenticated peer sends us.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::limits::{STARTUP_PACKET_MAX_LEN, STARTUP_PACKET_MIN_LEN};
use super::sqlstate::SqlState;

/// Answer to SSLRequest and GSSENCRequest: go ahead with the handshake.
pub const ACCEPT_ENCRYPTION: u8 = b'S';
/// Answer to SSLRequest and GSSENCRequest: continue unencrypted.
pub const REFUSE_ENCRYPTION: u8 = b'N';
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Protocol 3.0, the version viewgate speaks on both sides.
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// Startup parameters with this prefix are protocol extensions, not settings.
const PROTOCOL_EXTENSION_PREFIX: &str = "_pq_.";

/// A startup-phase failure, with what the client should be told.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{message}")]
    Refused { code: SqlState, message: String },
    #[error("client connection failed during startup: {0}")]
    Io(#[from] std::io::Error),
}

impl StartupError {
    fn refused(code: SqlState, message: impl Into<String>) -> Self {
        StartupError::Refused {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    /// The key is 4 bytes in protocol 3.0 and up to 256 in 3.2.
    Cancel {
        process_id: u32,
        secret: Vec<u8>,
    },
    Startup(StartupMessage),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// The version the client asked for (major << 16 | minor).
    pub protocol: u32,
    /// Parameters in the client's order, protocol extensions (`_pq_.*`) removed.
    pub params: Vec<(String, String)>,
    /// Protocol extensions the client asked for; viewgate supports none.
    pub extensions: Vec<String>,
}

impl StartupMessage {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn user(&self) -> &str {
        self.param("user").unwrap_or_default()
    }

    /// The database, which defaults to the user name as in Postgres.
    pub fn database(&self) -> &str {
        self.param("database").unwrap_or(self.user())
    }

    /// True when viewgate must answer with NegotiateProtocolVersion: the client asked for a
    /// newer minor version or for protocol extensions.
    pub fn needs_negotiation(&self) -> bool {
        self.protocol != PROTOCOL_3_0 || !self.extensions.is_empty()
    }

    /// This startup with the run-time setting `name` (a parameter, or a word of `options`,
    /// in any case) replaced by `value`, or left out for `None`: the proxy, not the client,
    /// decides what some settings start at upstream.
    pub fn with_setting(&self, name: &str, value: Option<&str>) -> StartupMessage {
        let names_it = |assignment: &str| {
            assignment
                .split_once('=')
                .is_some_and(|(key, _)| key.replace('-', "_").eq_ignore_ascii_case(name))
        };
        let mut params = Vec::with_capacity(self.params.len() + 1);
        for (key, old) in &self.params {
            if key.eq_ignore_ascii_case(name) {
                continue;
            }
            if key != "options" {
                params.push((key.clone(), old.clone()));
                continue;
            }
            let words = split_options(old);
            let mut kept = Vec::with_capacity(words.len());
            let mut words = words.into_iter();
            while let Some(word) = words.next() {
                if word == "-c" {
                    let assignment = words.next().unwrap_or_default();
                    if !names_it(&assignment) {
                        kept.extend(["-c".to_owned(), assignment]);
                    }
                } else if !word
                    .strip_prefix("--")
                    .or_else(|| word.strip_prefix("-c"))
                    .is_some_and(names_it)
                {
                    kept.push(word);
                }
            }
            if !kept.is_empty() {
                let escaped: Vec<String> = kept.iter().map(|word| escape_option(word)).collect();
                params.push((key.clone(), escaped.join(" ")));
            }
        }
        if let Some(value) = value {
            params.push((name.to_owned(), value.to_owned()));
        }
        StartupMessage {
            protocol: self.protocol,
            params,
            extensions: self.extensions.clone(),
        }
    }

    /// The StartupMessage sent upstream: protocol 3.0 and the client's parameters.
    pub fn encode_for_upstream(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(256);
        out.put_i32(0);
        out.put_u32(PROTOCOL_3_0);
        for (key, value) in &self.params {
            put_cstr(&mut out, key);
            put_cstr(&mut out, value);
        }
        out.put_u8(0);
        let length = out.len() as i32;
        out[..4].copy_from_slice(&length.to_be_bytes());
        out
    }
}

/// The value a startup packet gives the run-time setting `name` (case-insensitive): its own
/// parameter (Postgres applies those after `options`), else the last `-c name=value` /
/// `--name=value` inside `options`, read as Postgres reads them: words split at unescaped
/// whitespace, a backslash taking the next character literally, and `-` in a setting's name
/// meaning `_` (`-c search-path=…` sets `search_path`).
pub fn startup_setting(params: &[(String, String)], name: &str) -> Option<String> {
    if let Some((_, value)) = params
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
    {
        return Some(value.clone());
    }
    let (_, options) = params.iter().find(|(key, _)| key == "options")?;
    let words = split_options(options);
    let mut words = words.iter().map(String::as_str);
    let mut found = None;
    while let Some(word) = words.next() {
        let assignment = if word == "-c" {
            words.next().unwrap_or_default()
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest
        } else if let Some(rest) = word.strip_prefix("--") {
            rest
        } else {
            continue;
        };
        if let Some((key, value)) = assignment.split_once('=')
            && key.replace('-', "_").eq_ignore_ascii_case(name)
        {
            found = Some(value.to_owned());
        }
    }
    found
}

/// Parameters that are not run-time settings.
const NON_SETTING_PARAMETERS: [&str; 4] = ["user", "database", "options", "replication"];

/// Refuses a packet whose settings the proxy would read otherwise than Postgres: an `options`
/// word other than `-c name=value`, `-cname=value` or `--name=value` (Postgres reads the
/// rest as server switches, `-ec x=y` as `-e` and `-c x=y`), or a setting given twice, as a
/// parameter, in `options`, or both (Postgres applies them in an order; one name, one value
/// spares the proxy from following it).
fn check_settings(params: &[(String, String)]) -> Result<(), StartupError> {
    let mut names: Vec<String> = params
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| !NON_SETTING_PARAMETERS.contains(key))
        .map(str::to_ascii_lowercase)
        .collect();
    if let Some((_, options)) = params.iter().find(|(key, _)| key == "options") {
        let words = split_options(options);
        let mut words = words.iter().map(String::as_str);
        while let Some(word) = words.next() {
            let assignment = match word {
                "-c" => words.next(),
                _ => word.strip_prefix("--").or_else(|| word.strip_prefix("-c")),
            };
            let Some((name, _)) = assignment.and_then(|a| a.split_once('=')) else {
                return Err(StartupError::refused(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!(
                        "viewgate reads only \"-c name=value\" and \"--name=value\" in the startup option \"options\", not \"{word}\""
                    ),
                ));
            };
            names.push(name.replace('-', "_").to_ascii_lowercase());
        }
    }
    names.sort_unstable();
    match names.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(StartupError::refused(
            SqlState::PROTOCOL_VIOLATION,
            format!("startup setting \"{}\" is given more than once", pair[0]),
        )),
        None => Ok(()),
    }
}

/// The startup packet's `options` split into words as Postgres's `pg_split_opts` does:
/// at whitespace, except where a backslash escapes it (the backslash itself dropped).
fn split_options(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.next_if(|&c| is_c_space(c)).is_some() {}
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|&c| !is_c_space(c)) {
            match c {
                '\\' => word.extend(chars.next()),
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

/// `word` as `split_options` reads it back: whitespace and backslashes escaped.
fn escape_option(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len());
    for c in word.chars() {
        if c == '\\' || is_c_space(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Whitespace as C's `isspace` has it, which `pg_split_opts` splits at: the vertical tab too,
/// which Rust's `is_ascii_whitespace` leaves out (a red-team pass hid a second setting
/// behind one).
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

/// A CancelRequest for `process_id` and `secret` (how a proxy forwards one, upstream or to a
/// peer).
pub fn encode_cancel_request(process_id: u32, secret: &[u8]) -> BytesMut {
    let mut request = BytesMut::with_capacity(12 + secret.len());
    request.put_i32((12 + secret.len()) as i32);
    request.put_u32(CANCEL_REQUEST_CODE);
    request.put_u32(process_id);
    request.put_slice(secret);
    request
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

/// Reads one startup-phase packet. The caller bounds the time it may take.
pub async fn read_startup_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<StartupPacket, StartupError> {
    let length = reader.read_i32().await? as i64;
    if !(STARTUP_PACKET_MIN_LEN as i64..=STARTUP_PACKET_MAX_LEN as i64).contains(&length) {
        return Err(StartupError::refused(
            SqlState::PROTOCOL_VIOLATION,
            format!(
                "invalid length of startup packet: {length} (must be {STARTUP_PACKET_MIN_LEN} to {STARTUP_PACKET_MAX_LEN})"
            ),
        ));
    }
    let mut body = vec![0u8; length as usize - 4];
    reader.read_exact(&mut body).await?;
    parse_startup_packet(&body)
}

/// Parses the packet body (everything after the length).
pub fn parse_startup_packet(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let (code, rest) = body.split_at(4);
    let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
    match code {
        SSL_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE if (8..=260).contains(&rest.len()) => Ok(StartupPacket::Cancel {
            process_id: u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            secret: rest[4..].to_vec(),
        }),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => Err(StartupError::refused(
            SqlState::PROTOCOL_VIOLATION,
            "invalid length of startup packet",
        )),
        _ if code >> 16 == 3 => parse_startup_message(code, rest).map(StartupPacket::Startup),
        _ => Err(StartupError::refused(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "unsupported frontend protocol {}.{}: viewgate supports 3.0",
                code >> 16,
                code & 0xffff
            ),
        )),
    }
}

fn parse_startup_message(protocol: u32, body: &[u8]) -> Result<StartupMessage, StartupError> {
    let layout_error = || {
        StartupError::refused(
            SqlState::PROTOCOL_VIOLATION,
            "invalid startup packet layout: expected terminator as last byte",
        )
    };
    let Some((&0, strings)) = body.split_last() else {
        return Err(layout_error());
    };
    let mut message = StartupMessage {
        protocol,
        params: Vec::new(),
        extensions: Vec::new(),
    };
    if !strings.is_empty() {
        // `strings` ends with the last value's terminator, so split yields a final empty piece.
        let mut pieces: Vec<&[u8]> = strings.split(|&b| b == 0).collect();
        if pieces.pop() != Some(&[][..]) || !pieces.len().is_multiple_of(2) {
            return Err(layout_error());
        }
        for pair in pieces.chunks_exact(2) {
            let key = utf8(pair[0])?;
            let value = utf8(pair[1])?;
            if key.is_empty() {
                return Err(layout_error());
            }
            if key.starts_with(PROTOCOL_EXTENSION_PREFIX) {
                message.extensions.push(key);
            } else if message
                .params
                .iter()
                .any(|(earlier, _)| earlier.eq_ignore_ascii_case(&key))
            {
                // Postgres applies each in turn, so the last one wins; a proxy that read any
                // other would version the session by a value Postgres does not use. Names
                // compare as setting names do: in any case.
                return Err(StartupError::refused(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("startup parameter \"{key}\" is given more than once"),
                ));
            } else {
                message.params.push((key, value));
            }
        }
    }
    check_settings(&message.params)?;
    if message.user().is_empty() {
        return Err(StartupError::refused(
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
        ));
    }
    Ok(message)
}

fn utf8(bytes: &[u8]) -> Result<String, StartupError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        StartupError::refused(
            SqlState::PROTOCOL_VIOLATION,
            "startup parameters must be valid UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_as_postgres_reads_them() {
        let setting = |options: &str| {
            startup_setting(&[("options".to_owned(), options.to_owned())], "search_path")
        };
        assert_eq!(setting("-c search-path=a").as_deref(), Some("a"));
        assert_eq!(setting("--search-path=a").as_deref(), Some("a"));
        assert_eq!(setting(r"-c search_path=a,\ b").as_deref(), Some("a, b"));
        assert_eq!(setting(r"-csearch_path=a\\b").as_deref(), Some(r"a\b"));
        assert_eq!(
            setting("-c x=1   -c SEARCH_PATH=a -c search_path=b").as_deref(),
            Some("b")
        );
        assert_eq!(setting("-c x=1"), None);
    }

    fn body(code: u32, strings: &[&str]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        for s in strings {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        v.push(0);
        v
    }

    #[test]
    fn parses_parameters_and_separates_extensions() {
        let packet = parse_startup_packet(&body(
            PROTOCOL_3_0 | 2,
            &["user", "alice", "database", "db", "_pq_.x", "1"],
        ))
        .unwrap();
        let StartupPacket::Startup(message) = packet else {
            panic!("not a startup message")
        };
        assert_eq!(message.user(), "alice");
        assert_eq!(message.database(), "db");
        assert_eq!(message.extensions, vec!["_pq_.x".to_string()]);
        assert!(message.needs_negotiation());
        let encoded = message.encode_for_upstream();
        assert_eq!(
            parse_startup_packet(&encoded[4..]).unwrap(),
            StartupPacket::Startup(StartupMessage {
                protocol: PROTOCOL_3_0,
                params: message.params.clone(),
                extensions: vec![],
            })
        );
    }

    #[test]
    fn reads_every_options_form_postgres_sets_a_setting_by() {
        let packet = body(
            PROTOCOL_3_0,
            &[
                "user",
                "a",
                "options",
                r"-c a=1 -cb=2 --c-d=3\ x -c  e=4",
                "f",
                "5",
            ],
        );
        let StartupPacket::Startup(message) = parse_startup_packet(&packet).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(
            startup_setting(&message.params, "c_d").as_deref(),
            Some("3 x")
        );
        assert_eq!(startup_setting(&message.params, "e").as_deref(), Some("4"));
        assert_eq!(startup_setting(&message.params, "f").as_deref(), Some("5"));
    }

    #[test]
    fn a_setting_is_replaced_wherever_the_client_gave_it() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let message = StartupMessage {
            protocol: PROTOCOL_3_0,
            params: params(&[
                ("user", "app"),
                ("VIEWGATE.VERSION", "v3"),
                (
                    "options",
                    r"-c viewgate.version=v3 -c search_path=a\ b --viewgate.version=v4 -cx=1",
                ),
            ]),
            extensions: vec![],
        };
        let replaced = message.with_setting("viewgate.version", Some("v1"));
        assert_eq!(
            startup_setting(&replaced.params, "viewgate.version").as_deref(),
            Some("v1")
        );
        assert_eq!(
            startup_setting(&replaced.params, "search_path").as_deref(),
            Some("a b")
        );
        assert_eq!(startup_setting(&replaced.params, "x").as_deref(), Some("1"));
        let options = replaced.param("options").unwrap();
        assert!(!options.contains("viewgate"), "{options}");
        let removed = message.with_setting("viewgate.version", None);
        assert_eq!(startup_setting(&removed.params, "viewgate.version"), None);
    }

    #[test]
    fn rejects_malformed_packets_with_the_right_sqlstate() {
        let app_options = |options| body(PROTOCOL_3_0, &["user", "app", "options", options]);
        let cases: Vec<(Vec<u8>, SqlState)> = vec![
            (body(PROTOCOL_3_0, &["user"]), SqlState::PROTOCOL_VIOLATION),
            (
                body(PROTOCOL_3_0, &["database", "x"]),
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ),
            (
                PROTOCOL_3_0
                    .to_be_bytes()
                    .iter()
                    .copied()
                    .chain(*b"user\0a")
                    .collect(),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                body(2 << 16, &["user", "a"]),
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            (
                body(
                    PROTOCOL_3_0,
                    &["user", "app", "database", "postgres", "database", "app"],
                ),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                body(PROTOCOL_3_0, &["user", "x", "user", "app"]),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                body(
                    PROTOCOL_3_0,
                    &["user", "app", "search_path", "a", "Search_Path", "b"],
                ),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                app_options("-c viewgate.version=v1 -ec viewgate.version=v3"),
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            (app_options("-c"), SqlState::FEATURE_NOT_SUPPORTED),
            (
                body(
                    PROTOCOL_3_0,
                    &[
                        "user",
                        "app",
                        "viewgate.version",
                        "v1",
                        "options",
                        "-c viewgate.version=v3",
                    ],
                ),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                app_options("--search-path=a -csearch_path=b"),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                app_options("-c viewgate.version=v1 -c\x0bviewgate.version=v3"),
                SqlState::PROTOCOL_VIOLATION,
            ),
            (
                SSL_REQUEST_CODE
                    .to_be_bytes()
                    .iter()
                    .copied()
                    .chain([1])
                    .collect(),
                SqlState::PROTOCOL_VIOLATION,
            ),
        ];
        for (packet, expected) in cases {
            match parse_startup_packet(&packet) {
                Err(StartupError::Refused { code, .. }) => assert_eq!(code, expected),
                other => panic!("{packet:?} gave {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn bounds_the_length_before_reading() {
        let mut input: &[u8] = &[0, 1, 0, 0];
        let error = read_startup_packet(&mut input).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("invalid length of startup packet")
        );
    }
}
