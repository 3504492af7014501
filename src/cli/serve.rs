//! A bound proxy put to work with the tasks that watch it: the canary guard, and the heartbeat
//! when the proxy should show in `viewgate status`. The proxy itself (`proxy::Proxy`) only
//! serves sessions; these ops tasks are started here, at the edge, so that the data plane never
//! imports them. `viewgate serve`, `viewgate demo` and the in-process test proxies start
//! proxies through [`run`].

use crate::proxy::Proxy;
use crate::telemetry::guard;
use crate::telemetry::heartbeat::{self, ProxyIdentity};

/// Serves until shutdown with the canary guard (when a catalog is configured) and, given an
/// identity, the heartbeat; returns once the heartbeat has removed this proxy's row.
pub async fn run(proxy: Proxy, identity: Option<ProxyIdentity>) {
    let state = proxy.state().clone();
    let heartbeat = identity.map(|identity| tokio::spawn(heartbeat::run(state.clone(), identity)));
    if state.catalog.is_some() {
        tokio::spawn(guard::run(state));
    }
    proxy.run().await;
    // It removes this proxy's row from the catalog on its way out.
    if let Some(heartbeat) = heartbeat {
        let _ = heartbeat.await;
    }
}
