//! A minimal HTTP/1.1 client for the admin API tests: one request per connection, so the
//! tests depend on no HTTP library and see exactly what the server sends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A GET; returns the status code and the body.
pub fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    request(port, "GET", path, token, None)
}

/// Whether the admin server on `port` says it is ready; false, not a panic, while nothing
/// listens there yet (a proxy starting on a loaded machine binds its admin port a moment
/// after its client port).
pub fn admin_ready(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/readyz", None).0 == 200
}

/// A POST of a JSON body; returns the status code and the body.
pub fn post_json(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    request(port, "POST", path, token, Some(body))
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = json
        .map(|json| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )
        })
        .unwrap_or_else(|| "\r\n".to_owned());
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Connection: close\r\n{body}"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
