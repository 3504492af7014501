//! The client side of the admin API, for `viewgate pause|resume|cutover --upstream`: one
//! HTTP/1.1 request per connection (hyper), JSON in and out, bearer token if given.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Time allowed on top of the operation's own timeout for connecting and answering.
const REQUEST_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("invalid admin address {0:?}: expected http://host:port")]
    Address(String),
    #[error("cannot reach the admin API at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("the admin API at {address} did not answer within {seconds} s")]
    Timeout { address: String, seconds: u64 },
    #[error(
        "the admin API at {address} refused the token (401): pass --token or VIEWGATE_ADMIN_TOKEN"
    )]
    Unauthorized { address: String },
    #[error("{address}: {message}")]
    Failed {
        address: String,
        status: u16,
        message: String,
    },
}

/// One proxy's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// `host:port`
    authority: String,
    token: Option<String>,
}

impl AdminClient {
    /// `address` is `http://host:port` (the scheme may be left out).
    pub fn new(address: &str, token: Option<String>) -> Result<Self, AdminClientError> {
        let authority = address
            .strip_prefix("http://")
            .unwrap_or(address)
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            return Err(AdminClientError::Address(address.to_owned()));
        }
        Ok(AdminClient {
            authority: authority.to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    pub fn address(&self) -> &str {
        &self.authority
    }

    /// POSTs `body` to `path`; a JSON answer on 2xx, an error carrying the server's message
    /// otherwise. `timeout` is the operation's own; the request may take a margin longer.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, AdminClientError> {
        let limit = timeout + REQUEST_MARGIN;
        tokio::time::timeout(limit, self.request(Method::POST, path, body.to_string()))
            .await
            .map_err(|_| AdminClientError::Timeout {
                address: self.authority.clone(),
                seconds: limit.as_secs(),
            })?
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: String,
    ) -> Result<serde_json::Value, AdminClientError> {
        let unreachable = |reason: String| AdminClientError::Unreachable {
            address: self.authority.clone(),
            reason,
        };
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if status == 401 {
            return Err(AdminClientError::Unauthorized {
                address: self.authority.clone(),
            });
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::json!({
                "error": String::from_utf8_lossy(&bytes).trim().to_owned()
            })
        });
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let message = json
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("request failed")
            .to_owned();
        Err(AdminClientError::Failed {
            address: self.authority.clone(),
            status,
            message: format!("{message} (HTTP {status})"),
        })
    }
}
