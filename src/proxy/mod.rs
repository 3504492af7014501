//! The data plane: a message-level Postgres proxy.
//!
//! listener (accept, limits) → handshake (TLS, startup) → auth (relayed) → session (message
//! loop) → upstream. Messages are forwarded as the bytes they arrived as; only the few the proxy
//! acts on are decoded (see `protocol`).

pub mod auth;
pub mod cancel;
pub mod error;
pub mod handshake;
pub mod ledger;
pub mod listener;
pub mod pump;
pub mod session;
pub mod state;
pub mod upstream;

pub use listener::{ListenError, Proxy};
