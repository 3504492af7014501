//! Durations on the command line (`30s`, `500ms`, `2m`): clap's value parser for every
//! argument that takes one, so each says the same thing when it does not read as one.

use std::time::Duration;

/// A duration argument that does not read as one.
#[derive(Debug, thiserror::Error)]
#[error("{0} (write e.g. 30s, 500ms, 2m)")]
pub struct DurationArgError(humantime_serde::re::humantime::DurationError);

/// clap's value parser for durations (`30s`, `500ms`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationArgError> {
    humantime_serde::re::humantime::parse_duration(text).map_err(DurationArgError)
}
