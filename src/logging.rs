//! Log output through `tracing`: human-readable text or one JSON object per line.
//!
//! A serving proxy never writes a log line from a session's thread: lines go to a bounded
//! queue that a background thread drains to stderr, and when whoever reads stderr stalls
//! (a full pipe, a slow journald, `viewgate serve | less` left paused), lines are dropped
//! and counted instead of stalling every session behind a blocked `write(2)`.

use std::sync::OnceLock;

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

/// Replaces the serving proxy's filter (a reload's `log_level`); set once the global
/// subscriber is installed.
type FilterReload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static FILTER_RELOAD: OnceLock<FilterReload> = OnceLock::new();

/// What became of a reloaded `log_level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelChange {
    /// In effect for the lines logged from now on.
    Applied,
    /// `VIEWGATE_LOG` is set, and overrides the configured filter as it did at start.
    OverriddenByEnvironment,
    /// No subscriber of this process takes a new filter (an in-process test's proxy).
    NotInstalled,
}

/// Makes `level` the filter of the lines logged from now on.
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    if std::env::var_os(LOG_ENV).is_some() {
        return Ok(LevelChange::OverriddenByEnvironment);
    }
    let Some(reload) = FILTER_RELOAD.get() else {
        return Ok(LevelChange::NotInstalled);
    };
    let filter = EnvFilter::try_new(level).map_err(|error| error.to_string())?;
    reload(filter).map(|()| LevelChange::Applied)
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
    // Each format is its own subscriber type, hence its own handle type: kept behind a
    // closure. Installed only by the first call (tests start many proxies).
    let reload = match format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().ok().map(|()| filter_reload(handle))
        }
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().ok().map(|()| filter_reload(handle))
        }
    };
    if let Some(reload) = reload {
        let _ = FILTER_RELOAD.set(reload);
    }
}

fn filter_reload<S: 'static>(
    handle: tracing_subscriber::reload::Handle<EnvFilter, S>,
) -> FilterReload
where
    tracing_subscriber::reload::Handle<EnvFilter, S>: Send + Sync,
{
    Box::new(move |filter| handle.reload(filter).map_err(|error| error.to_string()))
}
