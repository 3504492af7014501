//! Retrying DDL that lost a lock race: exponential backoff with jitter on SQLSTATE 55P03.
//!
//! DDL needs strong locks on busy tables; waiting for them without bound would queue every
//! client query behind us. So each attempt waits at most `lock_timeout`, and between attempts
//! we back off exponentially, jittered so that several waiting appliers do not retry in step.

use std::time::Duration;

use rand::Rng;

use super::error::ControlError;

/// Backoff before the second attempt; doubles each time.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest backoff between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Doublings past this are capped anyway; bounding them keeps the shift from overflowing.
const MAX_DOUBLINGS: u32 = 16;

/// How long to wait before attempt `attempt + 1` (1-based `attempt` just failed): a random
/// point in the upper half of the exponential delay.
pub fn backoff_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(MAX_DOUBLINGS);
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_CAP);
    let half = ceiling / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

/// An error that may be a lock timeout worth another attempt.
pub trait LockRetryError: Sized {
    /// The timeout's description when this is a lock timeout (55P03); `None` otherwise.
    fn lock_timeout(&self) -> Option<String>;
    /// The error reported after the last attempt lost its lock race too.
    fn gave_up(attempts: u32, lock_timeout: Duration, last: String) -> Self;
}

impl LockRetryError for ControlError {
    fn lock_timeout(&self) -> Option<String> {
        match self {
            ControlError::LockNotAvailable { context, message } => {
                Some(format!("{context}: {message}"))
            }
            _ => None,
        }
    }

    fn gave_up(attempts: u32, lock_timeout: Duration, last: String) -> Self {
        ControlError::LockTimeout {
            attempts,
            lock_timeout_ms: lock_timeout.as_millis(),
            message: last,
        }
    }
}

/// Result of an operation run under [`with_lock_retries`]: its value and how many attempts it
/// took, or the error and the attempts spent.
pub struct Attempted<T, E = ControlError> {
    pub result: Result<T, E>,
    pub attempts: u32,
}

/// Runs `operation` until it succeeds, fails with anything but a lock timeout, or has been tried
/// `max_attempts` times; a final lock timeout becomes [`LockRetryError::gave_up`].
pub async fn with_lock_retries<T, E: LockRetryError>(
    max_attempts: u32,
    lock_timeout: Duration,
    mut operation: impl AsyncFnMut() -> Result<T, E>,
) -> Attempted<T, E> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match operation().await {
            Err(error) if error.lock_timeout().is_some() => {
                let message = error.lock_timeout().unwrap_or_default();
                if attempt >= max_attempts {
                    return Attempted {
                        result: Err(E::gave_up(attempt, lock_timeout, message)),
                        attempts: attempt,
                    };
                }
                let delay = backoff_delay(attempt);
                tracing::warn!(attempt, ?delay, %message, "lock not available; retrying");
                tokio::time::sleep(delay).await;
            }
            result => {
                return Attempted {
                    result,
                    attempts: attempt,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_is_capped() {
        for attempt in 1..=20 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1u32 << (attempt - 1).min(MAX_DOUBLINGS))
                .min(BACKOFF_CAP);
            let delay = backoff_delay(attempt);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempt}: {delay:?}"
            );
        }
    }

    #[tokio::test]
    async fn lock_timeouts_are_retried_until_the_attempts_run_out() {
        let mut calls = 0;
        let attempted = with_lock_retries(2, Duration::from_millis(10), async || {
            calls += 1;
            Err::<(), _>(ControlError::LockNotAvailable {
                context: "ddl".into(),
                message: "canceling statement due to lock timeout".into(),
            })
        })
        .await;
        assert_eq!(attempted.attempts, 2);
        assert_eq!(calls, 2);
        assert!(matches!(
            attempted.result,
            Err(ControlError::LockTimeout { attempts: 2, .. })
        ));
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let attempted = with_lock_retries(5, Duration::from_millis(10), async || {
            Err::<(), _>(ControlError::ApplyInProgress)
        })
        .await;
        assert_eq!(attempted.attempts, 1);
        assert!(matches!(
            attempted.result,
            Err(ControlError::ApplyInProgress)
        ));
    }
}
