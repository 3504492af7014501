//! Byte streams to clients and to the upstream: plain TCP, TLS over TCP, or a Unix socket.

pub mod stream;
pub mod tls;
