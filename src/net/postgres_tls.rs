//! viewgate's own connections to Postgres (the catalog: CLI commands, the proxy's watcher,
//! heartbeat, canary guard) with libpq's `sslmode`, over rustls.
//!
//! tokio-postgres parses libpq connection strings but knows only `sslmode=disable|prefer|
//! require` and no `sslrootcert`, and brings no TLS of its own. [`PostgresTarget::parse`] reads
//! those two parameters itself (URL and keyword/value forms), hands the rest to tokio-postgres,
//! and pairs the result with a [`RustlsConnect`] built from `net::tls`'s client configurations:
//!
//! | sslmode | TLS | certificate check |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` (default) | when the server offers it | none |
//! | `require` | always | none; like libpq, `verify-ca` when `sslrootcert` is given |
//! | `verify-ca` | always | chain leads to `sslrootcert` |
//! | `verify-full` | always | chain leads to `sslrootcert`, and names the host |
//!
//! There is no system root store in the build, so the verifying modes need `sslrootcert` (a
//! PEM file; libpq's `sslrootcert=system` is refused with a message). As in libpq, `sslmode` is
//! ignored when every host is a Unix socket directory.
//!
//! SCRAM channel binding: the stream reports none (`ChannelBinding::none()`), so tokio-postgres
//! uses plain SCRAM-SHA-256 under its default `channel_binding=prefer`, and a URL saying
//! `channel_binding=require` fails to connect. TLS itself still protects the exchange; binding
//! would only add protection in the modes that do not check the certificate.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::{CertificateError, ClientConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Connection, Socket};

use super::tls::{self, TlsError};
use crate::config::UpstreamTlsMode;

/// libpq's `sslrootcert` value for "the system's roots", which this build does not have.
const SYSTEM_ROOTS: &str = "system";

/// A connection's driver, to be polled (usually spawned) for the [`Client`] to work.
pub type PostgresConnection = Connection<Socket, RustlsStream>;

#[derive(Debug, thiserror::Error)]
pub enum PostgresTlsError {
    #[error("invalid connection string: {0}")]
    Syntax(String),
    #[error("sslmode must be disable, allow, prefer, require, verify-ca or verify-full, not {0:?}")]
    SslMode(String),
    #[error(
        "sslmode={0} checks the server's certificate and needs sslrootcert=/path/to/ca.pem (the CA certificates to trust)"
    )]
    MissingRootCert(&'static str),
    #[error(
        "sslrootcert=system is not supported: viewgate has no system root store; name a PEM file of the CA certificates to trust"
    )]
    SystemRoots,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// libpq's `sslmode`, as the catalog connections honour it (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, PostgresTlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plain first, then TLS; "TLS when offered" is the nearest
            // tokio-postgres can do, and never less private.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(PostgresTlsError::SslMode(other.to_owned())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A parsed connection string: tokio-postgres's settings plus the TLS that goes with them.
#[derive(Clone)]
pub struct PostgresTarget {
    config: tokio_postgres::Config,
    tls: RustlsConnect,
}

impl PostgresTarget {
    /// Parses a libpq URL (`postgres://…?sslmode=verify-full&sslrootcert=ca.pem`) or
    /// keyword/value string, and reads `sslrootcert` now so a bad file is reported at once.
    pub fn parse(conninfo: &str) -> Result<Self, PostgresTlsError> {
        let (rest, parameters) = split_tls_parameters(conninfo)?;
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|error| PostgresTlsError::Syntax(error.to_string()))?;
        let root_cert = parameters.sslrootcert.map(PathBuf::from);
        let mut mode = match &parameters.sslmode {
            Some(value) => SslMode::parse(value)?,
            None => SslMode::Prefer,
        };
        if mode == SslMode::Require && root_cert.is_some() {
            // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
            mode = SslMode::VerifyCa;
        }
        let hosts = config.get_hosts();
        if !hosts.is_empty() && hosts.iter().all(|host| matches!(host, Host::Unix(_))) {
            // Postgres never offers TLS on a Unix socket; libpq ignores sslmode there.
            mode = SslMode::Disable;
        }
        let client_config = match mode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => {
                tls::upstream_config(UpstreamTlsMode::Require, None)?
            }
            SslMode::VerifyCa => Some(tls::verify_ca_config(trusted_roots(
                mode,
                root_cert.as_deref(),
            )?)?),
            SslMode::VerifyFull => tls::upstream_config(
                UpstreamTlsMode::VerifyFull,
                Some(trusted_roots(mode, root_cert.as_deref())?),
            )?,
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(PostgresTarget {
            config,
            tls: RustlsConnect {
                config: client_config.map(|config| tls::with_postgres_alpn(&config)),
                mode,
                root_cert,
            },
        })
    }

    /// The settings tokio-postgres connects with (the TLS mode already applied).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// For settings the caller adds, such as a default `application_name`.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    /// The effective mode (after the `require` + `sslrootcert` and Unix socket rules).
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    pub async fn connect(&self) -> Result<(Client, PostgresConnection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// Advice for a failed connection that the server's own message does not give.
    pub fn hint(&self, error: &tokio_postgres::Error) -> Option<&'static str> {
        let refused_plain = error.as_db_error().is_some_and(|db| {
            db.code() == &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && db.message().contains("no encryption")
        });
        (refused_plain && self.tls.mode == SslMode::Disable).then_some(
            "the server accepts only TLS connections from here: use sslmode=require, or verify-full with sslrootcert=",
        )
    }
}

/// tokio-postgres's error with its causes: its own `Display` says only "error performing TLS
/// handshake" or "error connecting to server" and leaves the reason to `source()`.
pub fn error_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn trusted_roots(mode: SslMode, root_cert: Option<&Path>) -> Result<&Path, PostgresTlsError> {
    match root_cert {
        None => Err(PostgresTlsError::MissingRootCert(mode.as_str())),
        Some(path) if path == Path::new(SYSTEM_ROOTS) => Err(PostgresTlsError::SystemRoots),
        Some(path) => Ok(path),
    }
}

/// The TLS parameters viewgate reads itself, removed from what tokio-postgres sees.
#[derive(Default)]
struct TlsParameters {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParameters {
    /// Takes `key`'s value if it is one of ours; false leaves the pair for tokio-postgres.
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            _ => return false,
        }
        true
    }
}

fn split_tls_parameters(conninfo: &str) -> Result<(String, TlsParameters), PostgresTlsError> {
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        split_url(conninfo)
    } else {
        split_keyword_value(conninfo)
    }
}

/// URL form: the query's pairs are `&`-separated and percent-encoded. Everything but our pairs
/// is kept byte for byte (multi-host URLs are not valid for the `url` crate, so no round trip).
fn split_url(url: &str) -> Result<(String, TlsParameters), PostgresTlsError> {
    let mut parameters = TlsParameters::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), parameters));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !parameters.take(&percent_decode(key)?, percent_decode(value)?) {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, parameters))
}

fn percent_decode(text: &str) -> Result<String, PostgresTlsError> {
    let invalid = || PostgresTlsError::Syntax(format!("invalid percent-encoding in {text:?}"));
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2).ok_or_else(invalid)?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// Keyword/value form (`host=db sslmode='verify-full'`), tokenized as libpq does: `key = value`
/// with optional spaces around `=`, values single-quoted or up to the next space, `\` escaping.
fn split_keyword_value(conninfo: &str) -> Result<(String, TlsParameters), PostgresTlsError> {
    let mut parameters = TlsParameters::default();
    let mut kept = Vec::new();
    let mut rest = conninfo.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_equals = rest[key_end..]
            .trim_start()
            .strip_prefix('=')
            .filter(|_| !key.is_empty())
            .ok_or_else(|| PostgresTlsError::Syntax(format!("expected key=value at {rest:?}")))?
            .trim_start();
        let (value, used) = read_value(after_equals)?;
        let pair_len = rest.len() - after_equals.len() + used;
        if !parameters.take(key, value) {
            kept.push(&rest[..pair_len]);
        }
        rest = rest[pair_len..].trim_start();
    }
    Ok((kept.join(" "), parameters))
}

/// A value at the start of `text` and how many bytes it took.
fn read_value(text: &str) -> Result<(String, usize), PostgresTlsError> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    if text.starts_with('\'') {
        chars.next();
        while let Some((index, c)) = chars.next() {
            match c {
                '\'' => return Ok((value, index + 1)),
                '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
                c => value.push(c),
            }
        }
        return Err(PostgresTlsError::Syntax(format!(
            "unterminated quoted value in {text:?}"
        )));
    }
    while let Some((index, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => return Ok((value, index)),
            '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
            c => value.push(c),
        }
    }
    Ok((value, text.len()))
}

/// tokio-postgres's hook for TLS: one [`RustlsConnector`] per host it tries.
#[derive(Clone)]
pub struct RustlsConnect {
    /// `None` with `sslmode=disable`, when tokio-postgres never asks for a handshake.
    config: Option<Arc<ClientConfig>>,
    mode: SslMode,
    /// For messages about a rejected certificate.
    root_cert: Option<PathBuf>,
}

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnector;
    type Error = HandshakeError;

    /// Called for every host before connecting, also for Unix sockets (with `""`), so a name
    /// that is no TLS server name is reported only if a handshake is actually attempted.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, HandshakeError> {
        let name = match ServerName::try_from(domain.to_owned()) {
            Ok(name) => Ok(name),
            // Without a host name check any name will do; an IP address sends no SNI.
            Err(_) if self.mode != SslMode::VerifyFull => {
                Ok(ServerName::from(std::net::IpAddr::from([0, 0, 0, 0])))
            }
            Err(_) => Err(HandshakeError::ServerName(domain.to_owned())),
        };
        Ok(RustlsConnector {
            connect: self.clone(),
            name,
        })
    }
}

/// The handshake with one host.
pub struct RustlsConnector {
    connect: RustlsConnect,
    /// The name to check, or why there is none (reported if a handshake is attempted).
    name: Result<ServerName<'static>, HandshakeError>,
}

impl TlsConnect<Socket> for RustlsConnector {
    type Stream = RustlsStream;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, HandshakeError>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let RustlsConnector { connect, name } = self;
            let config = connect.config.clone().ok_or(HandshakeError::Disabled)?;
            let name = name?;
            tokio_rustls::TlsConnector::from(config)
                .connect(name, socket)
                .await
                .map(|stream| RustlsStream(Box::new(stream)))
                .map_err(|error| connect.explain(error))
        })
    }
}

impl RustlsConnect {
    /// A rejected certificate becomes a message saying which check failed and what to change.
    fn explain(&self, error: std::io::Error) -> HandshakeError {
        let rejected = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|inner| match inner {
                rustls::Error::InvalidCertificate(reason) => Some(reason.clone()),
                _ => None,
            });
        let Some(reason) = rejected else {
            return HandshakeError::Io(error);
        };
        let root = self
            .root_cert
            .as_deref()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        let hint = match &reason {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "connect by a host name the certificate lists, or use sslmode=verify-ca to check only the CA".to_owned()
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                "it is outside its validity period".to_owned()
            }
            _ => format!("it is not signed by a CA in sslrootcert={root}"),
        };
        HandshakeError::Certificate {
            mode: self.mode.as_str(),
            reason: reason.to_string(),
            hint,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the server's certificate was rejected under sslmode={mode}: {reason}; {hint}")]
    Certificate {
        mode: &'static str,
        reason: String,
        hint: String,
    },
    #[error("{0:?} is not a host name TLS can check (sslmode=verify-full)")]
    ServerName(String),
    #[error("TLS was asked for with sslmode=disable")]
    Disabled,
    #[error(transparent)]
    Io(std::io::Error),
}

/// A TLS session with Postgres; reports no channel binding (see the module doc).
pub struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(conninfo: &str) -> (String, Option<String>, Option<String>) {
        let (rest, parameters) = split_tls_parameters(conninfo).unwrap();
        (rest, parameters.sslmode, parameters.sslrootcert)
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        assert_eq!(
            split(
                "postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem"
            ),
            (
                "postgres://u@h:5/db?application_name=x".into(),
                Some("verify-full".into()),
                Some("/tmp/ca.pem".into())
            )
        );
        assert_eq!(
            split("postgresql://a:1,b:2/db?sslmode=require"),
            (
                "postgresql://a:1,b:2/db".into(),
                Some("require".into()),
                None
            )
        );
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".into(), None, None)
        );
    }

    #[test]
    fn keyword_values_are_tokenized_like_libpq() {
        assert_eq!(
            split("host=h  sslmode = verify-ca dbname='my db' sslrootcert='/a b/it\\'s.pem'"),
            (
                "host=h dbname='my db'".into(),
                Some("verify-ca".into()),
                Some("/a b/it's.pem".into())
            )
        );
        assert!(split_tls_parameters("host=h sslmode").is_err());
        assert!(split_tls_parameters("host='h").is_err());
    }

    #[test]
    fn modes_map_to_what_tokio_postgres_knows() {
        let target = PostgresTarget::parse("postgres://h/db").unwrap();
        assert_eq!(target.ssl_mode(), SslMode::Prefer);
        assert_eq!(
            target.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        let target = PostgresTarget::parse("host=h dbname=db sslmode=disable").unwrap();
        assert_eq!(
            target.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        // Unix sockets never use TLS, whatever the mode says.
        let target = PostgresTarget::parse("host=/tmp dbname=db sslmode=verify-full").unwrap();
        assert_eq!(target.ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn verifying_modes_need_a_root_file() {
        for mode in ["verify-ca", "verify-full"] {
            let error = PostgresTarget::parse(&format!("postgres://h/db?sslmode={mode}"))
                .err()
                .unwrap();
            assert!(error.to_string().contains("sslrootcert="), "{error}");
        }
        let error = PostgresTarget::parse("postgres://h/db?sslmode=verify-full&sslrootcert=system")
            .err()
            .unwrap();
        assert!(matches!(error, PostgresTlsError::SystemRoots), "{error}");
        let error = PostgresTarget::parse(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("/nonexistent.pem"), "{error}");
        let error = PostgresTarget::parse("postgres://h/db?sslmode=verify-everything")
            .err()
            .unwrap();
        assert!(error.to_string().contains("verify-everything"), "{error}");
    }
}
