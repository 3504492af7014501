//! The data plane: a message-level Postgres proxy.
//!
//! listener (accept, limits) → handshake (TLS, startup) → auth (relayed) → session (message
//! loop) → upstream. `login_search_path` asks the upstream for the session's search_path after
//! login when the router needs it. Messages are forwarded as the bytes they arrived as; only the few the proxy
//! acts on are decoded (see `protocol`).
//!
//! `session/` is a session in its parts (setup, transaction boundaries, the pump loop, the move
//! to another upstream); `switch/` pauses sessions and moves them to another upstream; `stats/`
//! holds the counters sessions increment; `session_threads` optionally pins sessions to
//! single-threaded runtimes; `shadow_tap` copies sampled reads for shadow runs, with what each
//! session remembers for them in `shadow_session` (and `router::search_path`). The canary guard and
//! heartbeat that read those counters are started by the edge (`cli::serve`), not here.

pub mod auth;
pub mod cancel;
pub mod client_slots;
pub mod error;
pub mod handshake;
pub mod ledger;
pub mod listener;
pub mod login_search_path;
pub mod passfile;
pub mod pause;
pub mod peers;
pub mod pump;
pub mod reconnect;
pub mod reload;
pub mod session;
pub mod session_threads;
pub mod settings_reload;
pub mod shadow_session;
pub mod shadow_tap;
pub mod state;
pub mod stats;
pub mod switch;
pub mod upstream;
pub mod upstream_auth;

pub use listener::{ListenError, Proxy};
