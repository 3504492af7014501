//! Which settings a running proxy takes from a reloaded configuration, and which wait for a
//! restart. PgBouncer's RELOAD applies what it can and says what it cannot; so does this. A
//! setting is applied only when it is listed in [`RELOADABLE_SETTINGS`], each read where it
//! is used (a new connection, a new session, the next admin request, the next shutdown): a
//! setting added to the configuration later waits for a restart until someone makes it
//! reloadable on purpose. A changed setting that is not reloadable keeps its value in use and
//! is named, so the operator knows the file and the process differ.

use serde::Serialize;

use crate::config::{Config, ConfigError};

/// Top-level settings a reload applies. Every other one (the listen addresses, the upstream,
/// threads, TLS modes and file names, the catalog, the cache size, `peer_id`,
/// `relation_refresh_interval`, `log_format`) is read once at start.
pub const RELOADABLE_SETTINGS: &[&str] = &[
    "max_client_connections",
    "max_message_len",
    "startup_timeout",
    "upstream_connect_timeout",
    "shutdown_timeout",
    "log_level",
    "unparseable_policy",
    "sticky_identity",
    "admin_token",
    "upstream_passfile",
    "peers",
];

/// The setting whose removal waits for a restart: without it an admin API listening beyond
/// loopback would be open to anyone, which only the bind at start can check.
const ADMIN_TOKEN: &str = "admin_token";

/// What a reload makes of the configuration it read.
#[derive(Debug)]
pub struct MergedSettings {
    /// The configuration now in effect: the new values of reloadable settings, the running
    /// values of the rest.
    pub config: Config,
    /// Reloadable settings whose value changed, now in effect.
    pub applied: Vec<String>,
    /// Settings whose value changed in the file (or environment) but that keep their running
    /// value until a restart.
    pub need_restart: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot compare the configurations: {0}")]
    Serialize(#[from] toml::ser::Error),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Takes from `fresh` the reloadable settings that differ from `running`'s, and keeps the
/// running value of every other one.
pub fn merge(running: &Config, fresh: &Config) -> Result<MergedSettings, MergeError> {
    let running_table = toml::Table::try_from(running)?;
    let mut merged = toml::Table::try_from(fresh)?;
    let mut keys: Vec<String> = running_table.keys().chain(merged.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let (mut applied, mut need_restart) = (Vec::new(), Vec::new());
    for key in keys {
        let before = running_table.get(&key);
        if before == merged.get(&key) {
            continue;
        }
        if applies_on_reload(&key, merged.get(&key)) {
            applied.push(key);
            continue;
        }
        match before {
            Some(value) => merged.insert(key.clone(), value.clone()),
            None => merged.remove(&key),
        };
        need_restart.push(key);
    }
    let config: Config = merged.try_into().map_err(|error: toml::de::Error| {
        ConfigError::Invalid(format!("(merged for the reload) {error}"))
    })?;
    Ok(MergedSettings {
        config,
        applied,
        need_restart,
    })
}

fn applies_on_reload(key: &str, new_value: Option<&toml::Value>) -> bool {
    if key == ADMIN_TOKEN {
        let removed = new_value
            .and_then(toml::Value::as_str)
            .is_none_or(str::is_empty);
        return !removed;
    }
    RELOADABLE_SETTINGS.contains(&key)
}

/// The settings part of a reload's report.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SettingsReload {
    /// The proxy was started without a configuration file: the environment and the flags it
    /// was started with do not change while it runs.
    NoFile,
    /// Read; `applied` are in effect, `need_restart` changed but keep their running value.
    Read {
        file: String,
        applied: Vec<String>,
        need_restart: Vec<String>,
    },
    /// The file could not be read or is not a valid configuration: every setting in use stays.
    Kept { file: String, error: String },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn with(edit: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config::default();
        edit(&mut config);
        config
    }

    #[test]
    fn reloadable_settings_apply_and_the_rest_keep_their_running_value() {
        let running = with(|c| {
            c.max_client_connections = 10;
            c.catalog = Some("postgres://a@db/app".into());
        });
        let fresh = with(|c| {
            c.max_client_connections = 20;
            c.shutdown_timeout = Duration::from_secs(3);
            c.listen = "127.0.0.1:7000".into();
            c.worker_threads = 7;
            c.catalog = None;
        });
        let merged = merge(&running, &fresh).unwrap();
        assert_eq!(
            merged.applied,
            ["max_client_connections", "shutdown_timeout"]
        );
        assert_eq!(merged.need_restart, ["catalog", "listen", "worker_threads"]);
        assert_eq!(merged.config.max_client_connections, 20);
        assert_eq!(merged.config.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(merged.config.listen, running.listen);
        assert_eq!(merged.config.worker_threads, running.worker_threads);
        assert_eq!(merged.config.catalog, running.catalog);
    }

    #[test]
    fn an_unchanged_configuration_applies_nothing() {
        let running = with(|c| c.admin_token = Some("t".into()));
        let merged = merge(&running, &running.clone()).unwrap();
        assert!(merged.applied.is_empty() && merged.need_restart.is_empty());
    }

    #[test]
    fn a_new_admin_token_applies_but_removing_it_waits_for_a_restart() {
        let running = with(|c| c.admin_token = Some("old".into()));
        let rotated = merge(&running, &with(|c| c.admin_token = Some("new".into()))).unwrap();
        assert_eq!(rotated.applied, [ADMIN_TOKEN]);
        assert_eq!(rotated.config.admin_token.as_deref(), Some("new"));
        for removed in [None, Some(String::new())] {
            let merged = merge(&running, &with(|c| c.admin_token = removed.clone())).unwrap();
            assert_eq!(merged.need_restart, [ADMIN_TOKEN], "{removed:?}");
            assert_eq!(merged.config.admin_token.as_deref(), Some("old"));
        }
        let first = merge(&Config::default(), &running).unwrap();
        assert_eq!(first.applied, [ADMIN_TOKEN], "a token where there was none");
    }

    #[test]
    fn nested_settings_compare_whole() {
        let running = Config::default();
        let fresh = with(|c| c.client_tls.cert = Some("/etc/other.crt".into()));
        let merged = merge(&running, &fresh).unwrap();
        assert_eq!(merged.need_restart, ["client_tls"]);
        assert_eq!(merged.config.client_tls.cert, None);
    }
}
