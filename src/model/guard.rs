//! A routing rule's canary guard settings (error rate, window, minimum requests) and their
//! validation. The guard that acts on them runs in the proxy (`telemetry::guard`).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::rule_error::RuleError;

/// The longest window a guard can judge: the proxies keep one slot per second for it
/// (`proxy::stats::window`), so a rule's longer window is clamped to it and a guarded
/// cutover's is refused.
pub const MAX_GUARD_WINDOW: Duration = Duration::from_secs(300);

/// Requests a guard needs in its window before a rate means anything, unless it says otherwise.
pub const DEFAULT_MIN_QUERIES: u32 = 20;

/// Canary guard settings, stored and shown here; the guard itself acts on them elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Guard {
    /// Error rate (0 < rate ≤ 1) of the canary version above which its weight drops to 0.
    pub error_rate: Option<f64>,
    #[serde(rename = "window_ms", serialize_with = "serialize_millis")]
    pub window: Option<Duration>,
    pub min_queries: Option<u32>,
}

fn serialize_millis<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.map(|d| d.as_millis() as u64).serialize(serializer)
}

impl Guard {
    pub fn is_set(&self) -> bool {
        self.error_rate.is_some() || self.window.is_some() || self.min_queries.is_some()
    }

    pub fn validate(&self) -> Result<(), RuleError> {
        if let Some(rate) = self.error_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(RuleError::Guard(format!(
                "the guard error rate is a fraction above 0 and at most 1 (e.g. 0.05), not {rate}"
            )));
        }
        if let Some(window) = self.window
            && (window.is_zero() || window.as_millis() > i32::MAX as u128)
        {
            return Err(RuleError::Guard(format!(
                "the guard window must be between 1ms and {}ms",
                i32::MAX
            )));
        }
        if let Some(min) = self.min_queries
            && min > i32::MAX as u32
        {
            return Err(RuleError::Guard(format!(
                "the guard's minimum queries must be at most {}",
                i32::MAX
            )));
        }
        Ok(())
    }

    pub fn window_ms(&self) -> Option<i32> {
        self.window
            .map(|d| i32::try_from(d.as_millis()).unwrap_or(i32::MAX))
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_set() {
            return f.write_str("-");
        }
        let mut parts = Vec::new();
        if let Some(rate) = self.error_rate {
            parts.push(format!("errors>{rate}"));
        }
        if let Some(window) = self.window {
            parts.push(format!(
                "window={}",
                humantime_serde::re::humantime::format_duration(window)
            ));
        }
        if let Some(min) = self.min_queries {
            parts.push(format!("min={min}"));
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_are_checked() {
        let guard = Guard {
            error_rate: Some(0.05),
            window: Some(Duration::from_secs(30)),
            min_queries: Some(20),
        };
        assert!(guard.validate().is_ok());
        assert_eq!(guard.to_string(), "errors>0.05 window=30s min=20");
        assert_eq!(Guard::default().to_string(), "-");
        let error = Guard {
            error_rate: Some(1.5),
            ..Guard::default()
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains("at most 1"), "{error}");
    }
}
