//! Byte streams to clients and to the upstream: plain TCP, TLS over TCP, or a Unix socket; TLS
//! for viewgate's own tokio-postgres connections (the catalog) and how their errors read;
//! connection strings without passwords; and the HTTP client of the admin API.

pub mod admin_client;
pub mod client_certificate;
pub mod conninfo;
pub mod postgres_error;
pub mod postgres_tls;
pub mod stream;
pub mod tls;
