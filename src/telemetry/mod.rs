//! What the proxy observes about itself: per-version and per-rule counters, the heartbeat that
//! publishes them to the catalog, and the canary guard that acts on them.
//!
//! The data plane only increments counters here; everything that reads them (admin API,
//! heartbeat, guard) runs off the hot path.

pub mod guard;
pub mod heartbeat;
pub mod histogram;
pub mod stats;
pub mod window;

pub use stats::{Attribution, SessionAccount, Telemetry};
