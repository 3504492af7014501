//! Bearer-token check for the admin API.
//!
//! The presented token is compared in constant time: both sides are hashed first (SHA-256),
//! so neither where the first differing byte is nor the expected token's length shows in how
//! long a refusal takes; the two digests are then compared with an XOR fold, no early exit.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::proxy::state::ProxyState;

/// The token admin requests must present, as the configuration in effect says (a reload may
/// have rotated it); `None` allows everyone (loopback-only setups). An empty token is none.
pub fn admin_token(state: &ProxyState) -> Option<String> {
    state
        .config
        .load()
        .admin_token
        .clone()
        .filter(|token| !token.is_empty())
}

pub async fn require_token(
    State(state): State<Arc<ProxyState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = admin_token(&state) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid admin token is required (Authorization: Bearer <admin_token>)\n",
        )
            .into_response(),
    }
}

/// Compares without an early exit, so timing reveals neither how much of a token matched nor
/// how long the expected one is: the digests have a fixed length whatever was presented.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(presented), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn only_the_exact_token_matches() {
        let expected = b"s3cret-token";
        assert!(constant_time_eq(b"s3cret-token", expected));
        for presented in [
            &b""[..],
            b"s3cret-toke",
            b"s3cret-tokenx",
            b"s3cret-tokeN",
            b"S3cret-token",
            b"s3cret-token\0",
        ] {
            assert!(!constant_time_eq(presented, expected), "{presented:?}");
        }
    }
}
