//! Graceful shutdown in two stages, driven by SIGTERM/SIGINT or by a caller (tests, demo).
//!
//! Stage one stops accepting connections and lets sessions run on; stage two, after the
//! configured timeout, tells every remaining session to close with a proper 57P01 error.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Shutdown {
    stop_accepting: CancellationToken,
    close_sessions: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stage one: no new connections.
    pub fn begin(&self) {
        self.stop_accepting.cancel();
    }

    /// Stage two: sessions close now.
    pub fn close_sessions(&self) {
        self.stop_accepting.cancel();
        self.close_sessions.cancel();
    }

    pub fn is_begun(&self) -> bool {
        self.stop_accepting.is_cancelled()
    }

    pub async fn begun(&self) {
        self.stop_accepting.cancelled().await
    }

    pub async fn sessions_closing(&self) {
        self.close_sessions.cancelled().await
    }
}

/// SIGTERM and SIGINT, caught from the moment `install` returns. Install before opening the
/// listener: a signal that arrives earlier would take the default action and kill the process
/// without a graceful shutdown.
pub struct TerminationSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl TerminationSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(TerminationSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next SIGTERM or SIGINT; returns the signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
