//! Where the upstream server is and how to reach it: TCP or Unix socket, with or without TLS.
//!
//! Parsed once from the `upstream` URL (libpq's URL form: `postgres://host:port`, with
//! `?host=/dir` for a Unix socket directory and `sslmode` / `sslrootcert` parameters), then
//! used for every session's connection and for forwarding cancel requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{Config, UpstreamTlsMode};
use crate::net::stream::UpstreamStream;
use crate::net::tls::{self, TlsError};
use crate::protocol::startup::{
    ACCEPT_ENCRYPTION, REFUSE_ENCRYPTION, SSL_REQUEST_CODE, encode_cancel_request,
};

const DEFAULT_PORT: u16 = 5432;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid upstream URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("could not connect to the upstream server at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("the upstream server at {0} does not support TLS, but TLS is required")]
    TlsRefused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddress {
    Tcp {
        host: String,
        port: u16,
    },
    /// The socket file itself: `{dir}/.s.PGSQL.{port}`.
    Unix(PathBuf),
}

impl std::fmt::Display for UpstreamAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            UpstreamAddress::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One upstream server and the way to connect to it.
pub struct UpstreamTarget {
    pub address: UpstreamAddress,
    /// The URL this target was read from, for reading its TLS files again.
    url: String,
    tls_mode: UpstreamTlsMode,
    /// The CA file `verify-full` trusts (read into `tls`); `None` in the other modes.
    root_cert: Option<PathBuf>,
    tls: Option<Arc<ClientConfig>>,
    connect_timeout: Duration,
}

impl UpstreamTarget {
    pub fn from_config(config: &Config) -> Result<Self, UpstreamError> {
        Self::from_url(&config.upstream, config)
    }

    /// A target from `url`, with TLS defaults and timeouts from `config` (an upstream switch
    /// names its new upstream this way).
    pub fn from_url(url: &str, config: &Config) -> Result<Self, UpstreamError> {
        let url = &url.to_owned();
        let invalid = |reason: &str| UpstreamError::InvalidUrl {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(invalid("the scheme must be postgres:// or postgresql://"));
        }
        let mut host = parsed.host_str().unwrap_or_default().to_owned();
        let mut port = parsed.port().unwrap_or(DEFAULT_PORT);
        let mut tls_mode = config.upstream_tls.mode;
        let mut root_cert = config.upstream_tls.root_cert.clone();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "host" => host = value.into_owned(),
                "port" => port = value.parse().map_err(|_| invalid("port is not a number"))?,
                "sslmode" => {
                    tls_mode = match value.as_ref() {
                        "disable" => UpstreamTlsMode::Disable,
                        "prefer" | "allow" => UpstreamTlsMode::Prefer,
                        "require" => UpstreamTlsMode::Require,
                        "verify-full" => UpstreamTlsMode::VerifyFull,
                        _ => {
                            return Err(invalid(
                                "sslmode must be disable, prefer, require or verify-full",
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                _ => {}
            }
        }
        // Percent-encoded host names (`%2Fvar%2Frun`) are how libpq URLs name socket dirs.
        let host = percent_decode(&host);
        let address = if host.starts_with('/') {
            UpstreamAddress::Unix(PathBuf::from(host).join(format!(".s.PGSQL.{port}")))
        } else if host.is_empty() {
            return Err(invalid("no host"));
        } else {
            UpstreamAddress::Tcp { host, port }
        };
        if matches!(address, UpstreamAddress::Unix(_)) {
            tls_mode = UpstreamTlsMode::Disable;
        }
        let root_cert = root_cert.filter(|_| tls_mode == UpstreamTlsMode::VerifyFull);
        Ok(UpstreamTarget {
            tls: tls::upstream_config(tls_mode, root_cert.as_deref())?,
            address,
            url: url.clone(),
            tls_mode,
            root_cert,
            connect_timeout: config.upstream_connect_timeout,
        })
    }

    /// The CA file new connections verify the upstream's certificate against, if any.
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The same upstream with its CA file read again (a rotated CA reaches new connections
    /// without a restart); sessions already connected keep theirs.
    pub fn reread(&self, config: &Config) -> Result<UpstreamTarget, UpstreamError> {
        Self::from_url(&self.url, config)
    }

    /// Opens a connection and negotiates TLS as the mode says. The caller sends the startup
    /// message.
    pub async fn connect(&self) -> Result<UpstreamStream, UpstreamError> {
        let connect = async {
            match &self.address {
                UpstreamAddress::Unix(path) => {
                    UnixStream::connect(path).await.map(UpstreamStream::Unix)
                }
                UpstreamAddress::Tcp { host, port } => {
                    let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                    tcp.set_nodelay(true)?;
                    self.negotiate_tls(tcp).await
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionAborted => {
                Err(UpstreamError::TlsRefused(self.address.to_string()))
            }
            Ok(Err(error)) => Err(self.connect_error(error.to_string())),
            Err(_) => {
                Err(self.connect_error(format!("timed out after {:?}", self.connect_timeout)))
            }
        }
    }

    fn connect_error(&self, reason: String) -> UpstreamError {
        UpstreamError::Connect {
            address: self.address.to_string(),
            reason,
        }
    }

    async fn negotiate_tls(&self, mut tcp: TcpStream) -> std::io::Result<UpstreamStream> {
        let Some(tls) = &self.tls else {
            return Ok(UpstreamStream::Tcp(tcp));
        };
        let mut request = BytesMut::with_capacity(8);
        request.put_i32(8);
        request.put_u32(SSL_REQUEST_CODE);
        tcp.write_all(&request).await?;
        match tcp.read_u8().await? {
            ACCEPT_ENCRYPTION => {}
            REFUSE_ENCRYPTION if self.tls_mode == UpstreamTlsMode::Prefer => {
                return Ok(UpstreamStream::Tcp(tcp));
            }
            _ => return Err(std::io::ErrorKind::ConnectionAborted.into()),
        }
        let host = match &self.address {
            UpstreamAddress::Tcp { host, .. } => host.clone(),
            UpstreamAddress::Unix(_) => "localhost".into(),
        };
        let name = ServerName::try_from(host)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await?;
        Ok(UpstreamStream::Tls(Box::new(stream)))
    }

    /// Sends a CancelRequest for an upstream backend. Postgres reads cancel requests before
    /// any authentication or TLS, so a plain connection always does.
    pub async fn send_cancel(&self, process_id: u32, secret: &[u8]) -> std::io::Result<()> {
        let request = encode_cancel_request(process_id, secret);
        let send = async {
            match &self.address {
                UpstreamAddress::Tcp { host, port } => {
                    let mut tcp = TcpStream::connect((host.as_str(), *port)).await?;
                    tcp.write_all(&request).await?;
                    // The server closes the connection once it has read the request.
                    let _ = tcp.read_u8().await;
                }
                UpstreamAddress::Unix(path) => {
                    let mut unix = UnixStream::connect(path).await?;
                    unix.write_all(&request).await?;
                    let _ = unix.read_u8().await;
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.connect_timeout, send)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<UpstreamTarget, UpstreamError> {
        let config = Config {
            upstream: url.into(),
            ..Config::default()
        };
        UpstreamTarget::from_config(&config)
    }

    #[test]
    fn parses_tcp_and_unix_urls() {
        assert_eq!(
            target("postgres://db.internal:6543/app").unwrap().address,
            UpstreamAddress::Tcp {
                host: "db.internal".into(),
                port: 6543
            }
        );
        assert_eq!(
            target("postgresql:///?host=/run/pg&port=5433")
                .unwrap()
                .address,
            UpstreamAddress::Unix("/run/pg/.s.PGSQL.5433".into())
        );
        assert_eq!(
            target("postgres://%2Frun%2Fpg").unwrap().address,
            UpstreamAddress::Unix("/run/pg/.s.PGSQL.5432".into())
        );
    }

    #[test]
    fn refuses_bad_urls_with_the_reason() {
        for (url, reason) in [
            ("mysql://x", "scheme"),
            ("postgres://x?sslmode=bogus", "sslmode"),
            ("postgres://x?sslmode=verify-full", "root_cert"),
        ] {
            let error = target(url).err().expect("must fail").to_string();
            assert!(error.contains(reason), "{url}: {error}");
        }
    }
}
