//! The protocol's length bounds, each defined once: how long a packet or message may be,
//! by who sends it and how viewgate reads it. Every reader and scanner takes its bound from here
//! (client messages through `config.max_message_len`, whose default and ceiling this is).

/// Postgres's own bound on a message: 1 GiB minus one byte. The default and the ceiling of
/// `max_message_len`, the bound on client messages.
pub const MAX_MESSAGE_LEN: usize = (1 << 30) - 1;

/// Upstream messages after login: any length the length field can say. The session's pumps
/// stream them (only small ones are read whole), and a session moving to another upstream
/// reads its replies whole (a prepared statement's text can be as long as a client message).
/// The upstream is trusted; this bound only keeps a corrupt length field from being obeyed.
pub const UPSTREAM_MESSAGE_MAX_LEN: usize = i32::MAX as usize;

/// One upstream message during startup and login (authentication requests, parameters, the
/// backend key); the server sends only short ones here.
pub const LOGIN_MESSAGE_MAX_LEN: usize = 1 << 20;

/// Postgres's own bound on a startup packet.
pub const STARTUP_PACKET_MAX_LEN: usize = 10_000;

/// Length field plus the code: the smallest possible startup packet.
pub const STARTUP_PACKET_MIN_LEN: usize = 8;

/// A Bind up to this long (header included) is read whole by the session, so a shadow run can
/// copy its parameters; a longer one streams through seen by its header only (and is not
/// shadowed).
pub const INSPECTED_BIND_MAX_LEN: usize = 64 * 1024;
