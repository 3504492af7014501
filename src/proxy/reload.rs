//! Reload: what a running proxy reads again without a restart, as PgBouncer's RELOAD does,
//! asked by SIGHUP or by the admin API's `POST /reload` (for a container nobody can signal).
//! That is the TLS files: the certificate and key shown to clients, and the CA file a
//! `verify-full` upstream is checked against. A renewal or a CA rotation would otherwise
//! cost a restart, which ends every session. The upstream's password file is already read at
//! each login, and routing state follows the catalog by itself; every other setting takes a
//! restart. Sessions already connected keep what they were made with.

use std::sync::Arc;

use serde::Serialize;
use tokio::signal::unix::Signal;

use super::state::ProxyState;

/// What one reload did with each file it reads, for the log, the admin API's answer and
/// `viewgate reload`.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub client_tls: FileReload,
    pub upstream_tls: FileReload,
}

/// What became of one TLS file.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FileReload {
    /// Nothing to read: client TLS is off, or the upstream's certificate is not verified.
    NotConfigured,
    /// Read and in use for new connections.
    Reloaded { file: String },
    /// Could not be read or does not fit: the one in use stays.
    Kept { file: String, error: String },
}

impl ReloadReport {
    /// Why a file was kept, for each that was; `None` when everything read.
    pub fn failure(&self) -> Option<String> {
        let failures: Vec<String> = [
            ("client TLS", &self.client_tls),
            ("upstream TLS", &self.upstream_tls),
        ]
        .into_iter()
        .filter_map(|(what, reload)| match reload {
            FileReload::Kept { file, error } => {
                Some(format!("{what}: kept the one in use, {file}: {error}"))
            }
            _ => None,
        })
        .collect();
        (!failures.is_empty()).then(|| failures.join("; "))
    }
}

/// Reloads at each SIGHUP `hangups` delivers, until the signal stream ends.
pub async fn reload_on_hangup(state: Arc<ProxyState>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        reload(&state);
    }
}

/// Reads the TLS files again; one that cannot be read leaves the one in use (and says why).
pub fn reload(state: &ProxyState) -> ReloadReport {
    let report = ReloadReport {
        client_tls: reload_client_certificate(state),
        upstream_tls: reload_upstream_root(state),
    };
    match &report.client_tls {
        FileReload::NotConfigured => tracing::info!("reload: client TLS is off"),
        FileReload::Reloaded { file } => tracing::info!(
            cert = %file,
            "reloaded the client TLS certificate and key; new connections get them"
        ),
        FileReload::Kept { file, error } => tracing::error!(
            cert = %file,
            %error,
            "reload: kept the client TLS certificate in use"
        ),
    }
    match &report.upstream_tls {
        FileReload::NotConfigured => {}
        FileReload::Reloaded { file } => tracing::info!(
            root_cert = %file,
            "reloaded the upstream's CA certificates; new upstream connections verify against them"
        ),
        FileReload::Kept { file, error } => tracing::error!(
            root_cert = %file,
            %error,
            "reload: kept the upstream CA certificates in use"
        ),
    }
    report
}

fn reload_client_certificate(state: &ProxyState) -> FileReload {
    let Some(certificate) = &state.client_certificate else {
        return FileReload::NotConfigured;
    };
    let file = certificate.cert_path().display().to_string();
    match certificate.reload() {
        Ok(()) => FileReload::Reloaded { file },
        Err(error) => FileReload::Kept {
            file,
            error: error.to_string(),
        },
    }
}

fn reload_upstream_root(state: &ProxyState) -> FileReload {
    loop {
        let current = state.upstream.load_full();
        let Some(root_cert) = current.root_cert() else {
            return FileReload::NotConfigured;
        };
        let file = root_cert.display().to_string();
        let fresh = match current.reread(&state.config) {
            Ok(fresh) => Arc::new(fresh),
            Err(error) => {
                return FileReload::Kept {
                    file,
                    error: error.to_string(),
                };
            }
        };
        // Swapped only if no upstream switch committed meanwhile: the switch's target is
        // newer (and freshly read), and must not be replaced by the old upstream.
        let previous = state.upstream.compare_and_swap(&current, fresh);
        if Arc::ptr_eq(&previous, &current) {
            return FileReload::Reloaded { file };
        }
    }
}
