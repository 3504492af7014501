//! SIGHUP: what a running proxy reads again without a restart, as PgBouncer's reload does.
//! That is the client-side TLS certificate and key (a renewal every few weeks would otherwise
//! cost a restart, which ends every session); the upstream's password file is already read at
//! each login, and routing state follows the catalog by itself. Every other setting takes a
//! restart.

use std::sync::Arc;

use tokio::signal::unix::Signal;

use super::state::ProxyState;

/// Reloads at each SIGHUP `hangups` delivers, until the signal stream ends.
pub async fn reload_on_hangup(state: Arc<ProxyState>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        reload(&state);
    }
}

/// Reads the client certificate and key again; on an error the ones in use stay (and say why).
pub fn reload(state: &ProxyState) {
    let Some(certificate) = &state.client_certificate else {
        tracing::info!("reload: client TLS is off, nothing to read again");
        return;
    };
    match certificate.reload() {
        Ok(()) => tracing::info!(
            cert = %certificate.cert_path().display(),
            "reloaded the client TLS certificate and key; new connections get them"
        ),
        Err(error) => tracing::error!(
            %error,
            "reload: kept the client TLS certificate in use"
        ),
    }
}
