//! Proxy configuration.
//!
//! Sources are layered, each overriding the one before: built-in defaults, the TOML file given
//! with `--config`, `VIEWGATE_*` environment variables, then command-line flags. Layering happens
//! on a TOML table before deserialising, so every source is checked by the same schema and a
//! misspelt key is an error that names it instead of a setting silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::cancel_key::MAX_PEER_ID;
use crate::protocol::limits::MAX_MESSAGE_LEN;

/// Prefix of environment variables that override configuration keys. Nested keys use a double
/// underscore: `VIEWGATE_CLIENT_TLS__MODE=require` sets `client_tls.mode`.
pub const ENV_PREFIX: &str = "VIEWGATE_";
const ENV_NESTING: &str = "__";
/// Variables with the prefix that are not configuration keys: the CLI's own (`--config`,
/// the control commands' `--database`, which docs/operations.md exports for a whole shell)
/// and the tests' and logging's.
const ENV_NOT_CONFIG: &[&str] = &[
    "VIEWGATE_CONFIG",
    "VIEWGATE_DATABASE",
    "VIEWGATE_PG_BIN",
    "VIEWGATE_LOG",
];

/// More threads (`worker_threads`, `session_threads`) than this is a configuration mistake,
/// not a tuning.
const MAX_WORKER_THREADS: usize = 256;

/// How often the proxy reads again, by default, which relations are named like managed tables
/// and which are their partitions, children, parents and foreign keys
/// (`relation_refresh_interval`): how long such a change may go unnoticed where the catalog's
/// event trigger, which tells the proxies at once, could not be made (docs/rewriting.md).
pub const DEFAULT_RELATION_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Entries kept by default: far more distinct statements than a typical application sends.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Longest SQL text cached by default (bytes). Longer statements are generated ones (bulk
/// VALUES lists) that rarely repeat and would crowd out the rest.
pub const DEFAULT_MAX_SQL_BYTES: usize = 64 * 1024;

/// Size limits of the rewriter's cache (`rewriter::RewriteCache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// At most this many entries (0 disables caching).
    pub max_entries: usize,
    /// Statements longer than this (bytes) are rewritten every time.
    pub max_sql_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_sql_bytes: DEFAULT_MAX_SQL_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address clients connect to.
    pub listen: String,
    /// The Postgres server behind the proxy, as a URL: `postgres://host:port`. `sslmode` and
    /// `sslrootcert` query parameters override `[upstream_tls]`. A host that starts with `/` is
    /// a Unix socket directory.
    pub upstream: String,
    /// Client connections served at once; more are refused with SQLSTATE 53300.
    pub max_client_connections: usize,
    /// Largest message accepted from a client, in bytes.
    pub max_message_len: usize,
    /// How long a client may take from connecting to finishing authentication.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// How long connecting to the upstream may take.
    #[serde(with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// On SIGTERM/SIGINT, how long sessions may run on before they are closed with 57P01.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Threads serving sessions; 0 means one per CPU core. Where Postgres and clients share
    /// the machine, fewer threads spend less CPU per transaction (see docs/benchmarks.md).
    pub worker_threads: usize,
    /// Threads that serve client sessions, each with a single-threaded runtime; a session
    /// stays on one thread, so no worker hands work to another (see docs/benchmarks.md).
    /// 0: sessions run on the `worker_threads` runtime.
    pub session_threads: usize,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `viewgate=debug`.
    pub log_level: String,
    pub client_tls: ClientTlsConfig,
    pub upstream_tls: UpstreamTlsConfig,
    /// The database holding the viewgate catalog, as a URL with user and database
    /// (`postgres://viewgate@db:5432/app`). Unset: no versioning, a plain proxy.
    pub catalog: Option<String>,
    /// Where the shadow workers run clients' reads again, as a URL: the catalog's database
    /// under a role that may take each client's role and holds no rights of its own, so client
    /// code that `RESET ROLE`s inside a shadow read has none to use. Unset: the catalog URL.
    pub shadow_catalog: Option<String>,
    /// What to do with a statement that names a managed table but cannot be parsed safely.
    pub unparseable_policy: UnparseablePolicy,
    /// Rewritten statements kept, keyed by (version, SQL text); 0 disables the cache.
    pub rewrite_cache_entries: usize,
    /// How often relations named like managed tables, and the managed tables' partitions,
    /// children, parents and foreign keys, are read again from the catalog's database. The
    /// catalog's event trigger (made where a superuser ran `init`) announces such DDL at once;
    /// without it, a change goes unnoticed this long.
    #[serde(with = "humantime_serde")]
    pub relation_refresh_interval: Duration,
    /// Address of the admin HTTP API (/healthz, /readyz, /metrics); unset: no admin API.
    pub admin_listen: Option<String>,
    /// Bearer token the admin API requires (except /healthz and /readyz). Required unless
    /// `admin_listen` is a loopback address.
    pub admin_token: Option<String>,
    /// What identifies a client for a routing rule's weighted split: the same values always
    /// land on the same version while the weights stand.
    pub sticky_identity: Vec<StickyField>,
    /// A pgpass-format file (`host:port:database:user:password`) with the passwords viewgate
    /// uses when it moves live sessions to a new upstream (`viewgate cutover --upstream`).
    /// Unset: only upstreams that trust the proxy can be switched to.
    pub upstream_passfile: Option<PathBuf>,
    /// This replica's id among its peers (1 to 255), written into every cancel key it hands
    /// out, so a CancelRequest that lands on another replica is forwarded here. Unset: no
    /// peering (cancel keys are fully random and only this replica's are honoured).
    pub peer_id: Option<u32>,
    /// The other replicas behind the same load balancer, to which CancelRequests naming them
    /// are forwarded. Needs `peer_id`.
    pub peers: Vec<PeerConfig>,
}

/// Another replica: its peer id and where its client port listens (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: u32,
    pub address: String,
}

/// One part of the client identity a split hashes (see `router::rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StickyField {
    User,
    Database,
    ApplicationName,
    ClientAddress,
}

/// The default split identity: one application instance on one host as one user.
pub const DEFAULT_STICKY_IDENTITY: [StickyField; 3] = [
    StickyField::User,
    StickyField::ApplicationName,
    StickyField::ClientAddress,
];

/// What happens to a statement naming a managed table that the rewriter cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnparseablePolicy {
    /// Refused with SQLSTATE 42601, naming the position and the reason.
    #[default]
    Reject,
    /// Forwarded as written (it then reaches the base table).
    Passthrough,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6432".into(),
            upstream: "postgres://127.0.0.1:5432".into(),
            max_client_connections: 1000,
            max_message_len: MAX_MESSAGE_LEN,
            startup_timeout: Duration::from_secs(15),
            upstream_connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            worker_threads: 0,
            session_threads: 0,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            client_tls: ClientTlsConfig::default(),
            upstream_tls: UpstreamTlsConfig::default(),
            catalog: None,
            shadow_catalog: None,
            unparseable_policy: UnparseablePolicy::Reject,
            rewrite_cache_entries: CacheConfig::default().max_entries,
            relation_refresh_interval: DEFAULT_RELATION_REFRESH_INTERVAL,
            admin_listen: None,
            admin_token: None,
            sticky_identity: DEFAULT_STICKY_IDENTITY.to_vec(),
            upstream_passfile: None,
            peer_id: None,
            peers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// TLS between clients and the proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    pub mode: ClientTlsMode,
    /// PEM certificate chain presented to clients.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// SSLRequest is answered 'N'.
    #[default]
    Disable,
    /// TLS if the client asks for it.
    Allow,
    /// Clients that do not use TLS are refused.
    Require,
}

/// TLS between the proxy and the upstream, with libpq's `sslmode` meanings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsConfig {
    pub mode: UpstreamTlsMode,
    /// PEM file of the CA certificates trusted for `verify-full`.
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    Disable,
    /// TLS when the server offers it, without certificate checks (libpq's default).
    #[default]
    Prefer,
    /// TLS always, without certificate checks.
    Require,
    /// TLS always; the chain must lead to `root_cert` and name the upstream host.
    VerifyFull,
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
}

/// Where a serving proxy's configuration came from, kept so that a reload (SIGHUP,
/// `POST /reload`) builds it again from the same layers: the file read anew, the process's
/// environment and the same flags.
#[derive(Debug, Default, Clone)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    /// The configuration as the layers give it now.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.file.as_deref(), std::env::vars(), &self.overrides)
    }
}

impl Config {
    /// Builds the configuration from all layers. `env` is passed in (rather than read here) so
    /// that tests do not depend on the process environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            table = text.parse().map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source,
            })?;
        }
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX)
                && !ENV_NOT_CONFIG.contains(&name.as_str())
            {
                let path: Vec<String> = key
                    .split(ENV_NESTING)
                    .map(|part| part.to_ascii_lowercase())
                    .collect();
                set_path(&mut table, &path, env_value(&value))
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        let flags = [
            ("listen", &overrides.listen),
            ("upstream", &overrides.upstream),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                table.insert(key.into(), toml::Value::String(value.clone()));
            }
        }
        // Re-parsing the merged table as text (rather than converting the value) makes the
        // deserialiser's errors quote the offending line, so they name the key.
        let merged = toml::to_string(&table).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let config: Config = toml::from_str(&merged).map_err(|e| {
            ConfigError::Invalid(format!("(file, environment and flags merged) {e}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_client_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_client_connections must be at least 1".into(),
            ));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "worker_threads must be at most {MAX_WORKER_THREADS} (0: one per CPU core)"
            )));
        }
        if self.session_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "session_threads must be at most {MAX_WORKER_THREADS} (0: none, sessions run on the worker threads)"
            )));
        }
        if !(1024..=MAX_MESSAGE_LEN).contains(&self.max_message_len) {
            return Err(ConfigError::Invalid(format!(
                "max_message_len must be between 1024 and {MAX_MESSAGE_LEN}"
            )));
        }
        if self.relation_refresh_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "relation_refresh_interval must be longer than 0 (e.g. \"5s\")".into(),
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(ConfigError::Invalid(format!(
                "log_level {:?} is not a filter ({error}); e.g. \"info\" or \"viewgate=debug\"",
                self.log_level
            )));
        }
        if self.sticky_identity.is_empty() {
            return Err(ConfigError::Invalid(
                "sticky_identity needs at least one of \"user\", \"database\", \"application_name\", \"client_address\"".into(),
            ));
        }
        for (i, field) in self.sticky_identity.iter().enumerate() {
            if self.sticky_identity[..i].contains(field) {
                return Err(ConfigError::Invalid(format!(
                    "sticky_identity lists {field:?} twice"
                )));
            }
        }
        if self.client_tls.mode != ClientTlsMode::Disable
            && (self.client_tls.cert.is_none() || self.client_tls.key.is_none())
        {
            return Err(ConfigError::Invalid(
                "client_tls.mode allow/require needs client_tls.cert and client_tls.key".into(),
            ));
        }
        self.validate_peers()
    }

    /// Peer ids fit the cancel key, are unique and are not this replica's own; addresses are
    /// `host:port`.
    fn validate_peers(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let in_range = |id: u32| (1..=MAX_PEER_ID).contains(&id);
        if let Some(own) = self.peer_id
            && !in_range(own)
        {
            return invalid(format!(
                "peer_id {own} is out of range: it must be between 1 and {MAX_PEER_ID}"
            ));
        }
        if !self.peers.is_empty() && self.peer_id.is_none() {
            return invalid("peers needs peer_id: this replica's own id among them".into());
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if !in_range(peer.id) {
                return invalid(format!(
                    "peers: id {} is out of range: it must be between 1 and {MAX_PEER_ID}",
                    peer.id
                ));
            }
            if Some(peer.id) == self.peer_id {
                return invalid(format!(
                    "peers: id {} is this replica's own peer_id; list only the other replicas",
                    peer.id
                ));
            }
            if self.peers[..i].iter().any(|other| other.id == peer.id) {
                return invalid(format!("peers: id {} is listed twice", peer.id));
            }
            if !is_host_port(&peer.address) {
                return invalid(format!(
                    "peers: the address of peer {} is {:?}; it must be host:port",
                    peer.id, peer.address
                ));
            }
        }
        Ok(())
    }
}

/// `host:port` (an IPv6 host in brackets), with a port from 1 to 65535.
fn is_host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    !host.is_empty()
        && !host.contains(['[', ']', '/', ' '])
        && port.parse::<u16>().is_ok_and(|port| port != 0)
}

/// An environment value is read as a TOML value when it is one (`100`, `true`), else a string.
fn env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match probe.parse::<toml::Table>() {
        Ok(mut table) => table.remove("v").unwrap_or_else(|| raw.into()),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// A `VIEWGATE_*` variable whose name makes no configuration key.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("empty key")]
    Empty,
    #[error("`{0}` is not a section")]
    NotASection(String),
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), KeyError> {
    let (last, parents) = path.split_last().ok_or(KeyError::Empty)?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| KeyError::NotASection(part.clone()))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("viewgate.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nmax_client_connections = 5\nstartup_timeout = \"2s\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("VIEWGATE_MAX_CLIENT_CONNECTIONS", "7"),
                ("VIEWGATE_UPSTREAM_TLS__MODE", "require"),
                ("PATH", "/bin"),
                // The control commands' `--database`, exported for a whole shell
                // (docs/operations.md): not a key of this file (the thirty-first red-team
                // pass saw `serve` fail on it).
                ("VIEWGATE_DATABASE", "postgres://viewgate@db/app"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:7001".into()),
                upstream: None,
            },
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:7001");
        assert_eq!(config.max_client_connections, 7);
        assert_eq!(config.startup_timeout, Duration::from_secs(2));
        assert_eq!(config.upstream_tls.mode, UpstreamTlsMode::Require);
    }

    /// deploy/viewgate.toml documents every key with its default; keep the two in step.
    #[test]
    fn the_example_config_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/viewgate.toml");
        let example = Config::load(Some(&path), Vec::new(), &Overrides::default()).unwrap();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&example).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let error =
            Config::load(None, env(&[("VIEWGATE_LISTN", "x")]), &Overrides::default()).unwrap_err();
        assert!(error.to_string().contains("listn"), "{error}");
    }

    #[test]
    fn sticky_identity_is_checked() {
        let config = Config::load(
            None,
            env(&[("VIEWGATE_STICKY_IDENTITY", r#"["database", "user"]"#)]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.sticky_identity,
            [StickyField::Database, StickyField::User]
        );
        for (value, expected) in [
            ("[]", "at least one"),
            (r#"["user", "user"]"#, "twice"),
            (r#"["host"]"#, "unknown variant"),
        ] {
            let error = Config::load(
                None,
                env(&[("VIEWGATE_STICKY_IDENTITY", value)]),
                &Overrides::default(),
            )
            .unwrap_err();
            assert!(error.to_string().contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn peers_are_read_and_checked() {
        let config = Config::load(
            None,
            env(&[
                ("VIEWGATE_PEER_ID", "1"),
                (
                    "VIEWGATE_PEERS",
                    r#"[{id = 2, address = "10.0.0.2:6432"}, {id = 255, address = "[::1]:7000"}]"#,
                ),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.peer_id, Some(1));
        assert_eq!(
            config.peers,
            [
                PeerConfig {
                    id: 2,
                    address: "10.0.0.2:6432".into()
                },
                PeerConfig {
                    id: 255,
                    address: "[::1]:7000".into()
                }
            ]
        );
        let peer = |id: u32, address: &str| format!(r#"{{id = {id}, address = "{address}"}}"#);
        let ok = peer(2, "b:6432");
        for (own, peers, expected) in [
            (Some("0"), String::new(), "peer_id 0 is out of range"),
            (Some("256"), String::new(), "peer_id 256 is out of range"),
            (None, ok.clone(), "peers needs peer_id"),
            (Some("1"), peer(0, "b:1"), "id 0 is out of range"),
            (Some("1"), peer(300, "b:1"), "id 300 is out of range"),
            (Some("1"), peer(1, "a:1"), "id 1 is this replica's own"),
            (
                Some("1"),
                format!("{ok}, {}", peer(2, "c:1")),
                "id 2 is listed twice",
            ),
            (Some("1"), peer(2, "b"), "must be host:port"),
            (Some("1"), peer(2, "b:0"), "must be host:port"),
            (Some("1"), peer(2, ":6432"), "must be host:port"),
            (Some("1"), peer(2, "b:65536"), "must be host:port"),
        ] {
            let mut pairs = vec![("VIEWGATE_PEERS", format!("[{peers}]"))];
            if let Some(own) = own {
                pairs.push(("VIEWGATE_PEER_ID", own.to_owned()));
            }
            let pairs: Vec<(String, String)> =
                pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let error = Config::load(None, pairs, &Overrides::default()).unwrap_err();
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn tls_without_certificate_is_refused() {
        let error = Config::load(
            None,
            env(&[("VIEWGATE_CLIENT_TLS__MODE", "require")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("client_tls.cert"), "{error}");
    }
}
