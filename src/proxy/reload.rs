//! Reload: what a running proxy reads again without a restart, as PgBouncer's RELOAD does,
//! asked by SIGHUP or by the admin API's `POST /reload` (for a container nobody can signal).
//! That is the configuration file, whose reloadable settings (`settings_reload`) apply to new
//! connections, sessions and admin requests from then on, and the TLS files: the certificate
//! and key shown to clients, and the CA file a `verify-full` upstream is checked against. A
//! renewal, a rotated admin token or a raised connection limit would otherwise cost a
//! restart, which ends every session. The upstream's password file is already read at each
//! login, and routing state follows the catalog by itself. Sessions already connected keep
//! what they were made with.

use std::sync::Arc;

use serde::Serialize;
use tokio::signal::unix::Signal;

use super::peers::Peers;
use super::settings_reload::{MergeError, SettingsReload, merge};
use super::state::ProxyState;
use crate::config::Config;
use crate::logging::{self, LevelChange};

/// What one reload did with each file it reads, for the log, the admin API's answer and
/// `viewgate reload`.
#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub settings: SettingsReload,
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
        let settings = match &self.settings {
            SettingsReload::Kept { file, error } => {
                Some(format!("settings: kept every one in use, {file}: {error}"))
            }
            _ => None,
        };
        let failures: Vec<String> = settings
            .into_iter()
            .chain(
                [
                    ("client TLS", &self.client_tls),
                    ("upstream TLS", &self.upstream_tls),
                ]
                .into_iter()
                .filter_map(|(what, reload)| match reload {
                    FileReload::Kept { file, error } => {
                        Some(format!("{what}: kept the one in use, {file}: {error}"))
                    }
                    _ => None,
                }),
            )
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

/// Reads the configuration and the TLS files again; what cannot be read leaves what is in
/// use (and says why).
pub fn reload(state: &ProxyState) -> ReloadReport {
    let settings = reload_settings(state);
    let report = ReloadReport {
        settings,
        client_tls: reload_client_certificate(state),
        upstream_tls: reload_upstream_target(state),
    };
    match &report.settings {
        SettingsReload::NoFile => {
            tracing::info!("reload: no configuration file, settings unchanged")
        }
        SettingsReload::Read {
            file,
            applied,
            need_restart,
        } => {
            tracing::info!(config = %file, ?applied, "reload: settings read; applied the changed ones that reload");
            if !need_restart.is_empty() {
                tracing::warn!(
                    config = %file,
                    ?need_restart,
                    "reload: these settings changed but take a restart; the running values stay"
                );
            }
        }
        SettingsReload::Kept { file, error } => tracing::error!(
            config = %file,
            %error,
            "reload: kept every setting in use"
        ),
    }
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

/// Builds the upstream target again: its CA file read anew, and the connect timeout a reload
/// may have changed. Reports on the CA file, the one thing in it that can fail to read.
fn reload_upstream_target(state: &ProxyState) -> FileReload {
    let config = state.config.load_full();
    loop {
        let current = state.upstream.load_full();
        let root_cert = current.root_cert().map(|file| file.display().to_string());
        let fresh = match current.reread(&config) {
            Ok(fresh) => Arc::new(fresh),
            Err(error) => {
                return FileReload::Kept {
                    file: root_cert.unwrap_or_else(|| current.address.to_string()),
                    error: error.to_string(),
                };
            }
        };
        // Swapped only if no upstream switch committed meanwhile: the switch's target is
        // newer (and freshly read), and must not be replaced by the old upstream.
        let previous = state.upstream.compare_and_swap(&current, fresh);
        if Arc::ptr_eq(&previous, &current) {
            return match root_cert {
                Some(file) => FileReload::Reloaded { file },
                None => FileReload::NotConfigured,
            };
        }
    }
}

/// Reads the configuration's layers again and puts the reloadable settings that changed in
/// effect; an unreadable or invalid file leaves every setting as it is.
fn reload_settings(state: &ProxyState) -> SettingsReload {
    let Some(source) = state.config_source.get() else {
        return SettingsReload::NoFile;
    };
    let Some(file) = &source.file else {
        return SettingsReload::NoFile;
    };
    let file = file.display().to_string();
    let running = state.config.load_full();
    let merged = source
        .load()
        .map_err(MergeError::from)
        .and_then(|fresh| merge(&running, &fresh));
    let merged = match merged {
        Ok(merged) => merged,
        Err(error) => {
            return SettingsReload::Kept {
                file,
                error: error.to_string(),
            };
        }
    };
    put_in_effect(state, &running, &merged.config);
    state.config.store(Arc::new(merged.config));
    SettingsReload::Read {
        file,
        applied: merged.applied,
        need_restart: merged.need_restart,
    }
}

/// What a changed setting needs besides the new configuration, which every other reloadable
/// setting is read from where it is used.
fn put_in_effect(state: &ProxyState, running: &Config, new: &Config) {
    state.client_slots.set_limit(new.max_client_connections);
    if running.peers != new.peers {
        state.peers.store(Arc::new(Peers::from_config(new)));
    }
    if running.log_level != new.log_level {
        match logging::set_level(&new.log_level) {
            Ok(LevelChange::Applied) | Ok(LevelChange::NotInstalled) => {}
            Ok(LevelChange::OverriddenByEnvironment) => tracing::warn!(
                log_level = %new.log_level,
                "reload: VIEWGATE_LOG is set and overrides log_level, as it did at start"
            ),
            Err(error) => tracing::error!(%error, "reload: kept the log filter in use"),
        }
    }
}
