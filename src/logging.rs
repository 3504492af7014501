//! Log output through `tracing`: human-readable text or one JSON object per line.
//!
//! A serving proxy never writes a log line from a session's thread: lines go to a bounded
//! queue that a background thread drains to stderr, and when whoever reads stderr stalls
//! (a full pipe, a slow journald, `viewgate serve | less` left paused), lines are dropped
//! and counted instead of stalling every session behind a blocked `write(2)`.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `VIEWGATE_LOG`, when set, overrides the configured filter (like `RUST_LOG`).
pub const LOG_ENV: &str = "VIEWGATE_LOG";

/// Log lines a serving proxy queues for stderr before it drops new ones.
pub const QUEUED_LOG_LINES_AT_MOST: usize = 65_536;

/// Installs the global subscriber writing straight to stderr, for short commands whose
/// output a person reads; later calls are ignored (tests start many proxies).
pub fn init(format: LogFormat, level: &str) {
    install(format, level, std::io::stderr);
}

/// Keeps a serving proxy's log writer running; dropping it writes out what is queued and
/// says how many lines were dropped, if any.
#[must_use = "dropping the guard stops the log writer"]
pub struct ServingLogs {
    dropped_lines: tracing_appender::non_blocking::ErrorCounter,
    writer: Option<WorkerGuard>,
}

/// Installs the global subscriber for `viewgate serve`: stderr through a bounded queue (see
/// the module's doc).
pub fn init_serving(format: LogFormat, level: &str) -> ServingLogs {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LOG_LINES_AT_MOST)
        .lossy(true)
        .thread_name("viewgate-log")
        .finish(std::io::stderr());
    let dropped_lines = writer.error_counter();
    install(format, level, writer);
    ServingLogs {
        dropped_lines,
        writer: Some(guard),
    }
}

impl ServingLogs {
    /// Lines dropped so far because stderr was not read fast enough.
    pub fn dropped_lines(&self) -> usize {
        self.dropped_lines.dropped_lines()
    }
}

impl Drop for ServingLogs {
    fn drop(&mut self) {
        let dropped = self.dropped_lines();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "log lines were dropped because stderr was not read fast enough"
            );
        }
        // Flushes the queue (the warning above included) before the process ends.
        drop(self.writer.take());
    }
}

fn install<W>(format: LogFormat, level: &str, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
