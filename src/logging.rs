//! Log output through `tracing`: human-readable text or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `VIEWGATE_LOG`, when set, overrides the configured filter (like `RUST_LOG`).
pub const LOG_ENV: &str = "VIEWGATE_LOG";

/// Installs the global subscriber; later calls are ignored (tests start many proxies).
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
