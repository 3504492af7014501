//! What the proxy does with what it observes about itself: the heartbeat that publishes its
//! counters (`proxy::stats`) to the catalog, and the canary guard that acts on them.

pub mod guard;
pub mod heartbeat;
