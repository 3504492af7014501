//! A bound proxy put to work with the tasks that watch it: the canary and cutover guards, the
//! shadow workers, and the heartbeat
//! when the proxy should show in `viewgate status`. The proxy itself (`proxy::Proxy`) only
//! serves sessions; these ops tasks are started here, at the edge, so that the data plane never
//! imports them. `viewgate serve`, `viewgate demo` and the in-process test proxies start
//! proxies through [`run`].

use crate::proxy::Proxy;
use crate::telemetry::heartbeat::{self, ProxyIdentity};
use crate::telemetry::{cutover_guard, guard, shadow};

/// Serves until shutdown with the canary and cutover guards (when a catalog is configured)
/// and, given an identity, the heartbeat; returns once the heartbeat has removed this proxy's
/// row.
pub async fn run(proxy: Proxy, identity: Option<ProxyIdentity>) {
    let state = proxy.state().clone();
    // The cutover guard names this proxy's counts like the heartbeat names its row; without an
    // identity (in-process proxies) the listen address is unique enough.
    let proxy_id = match (&identity, proxy.local_addr()) {
        (Some(identity), _) => identity.proxy_id.clone(),
        (None, Ok(address)) => address.to_string(),
        (None, Err(_)) => format!("pid {}", std::process::id()),
    };
    let heartbeat = identity.map(|identity| tokio::spawn(heartbeat::run(state.clone(), identity)));
    if state.catalog.is_some() {
        tokio::spawn(guard::run(state.clone()));
        tokio::spawn(cutover_guard::run(state.clone(), proxy_id.clone()));
        shadow::spawn(state, proxy_id);
    }
    proxy.run().await;
    // It removes this proxy's row from the catalog on its way out.
    if let Some(heartbeat) = heartbeat {
        let _ = heartbeat.await;
    }
}
