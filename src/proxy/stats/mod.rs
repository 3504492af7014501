//! What the data plane counts as it serves: per-version and per-rule counters, latency
//! histograms and the error windows the canary guard reads, and the cards that say who the
//! live sessions are. Sessions only increment them; readers (admin API, heartbeat, guard) run
//! off the hot path.

pub mod counters;
pub mod histogram;
pub mod session_cards;
pub mod window;

pub use counters::{Attribution, SessionAccount, Telemetry};
pub use session_cards::{Introduction, SessionCard};
