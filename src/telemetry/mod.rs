//! What the proxy does with what it observes about itself: the heartbeat that publishes its
//! counters (`proxy::stats`) to the catalog, the canary guard that acts on them, and the guard
//! of a guarded default cutover, which judges every proxy's counts together; and the shadow
//! workers that run sampled reads again at another version and compare.

pub mod cutover_guard;
pub mod guard;
pub mod heartbeat;
pub mod shadow;
