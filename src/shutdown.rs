//! Graceful shutdown in two stages, driven by SIGTERM/SIGINT or by a caller (tests, demo).
//!
//! Stage one stops accepting connections and lets sessions run on; stage two, after the
//! configured timeout, tells every remaining session to close with a proper 57P01 error.

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

    pub async fn begun(&self) {
        self.stop_accepting.cancelled().await
    }

    pub async fn sessions_closing(&self) {
        self.close_sessions.cancelled().await
    }
}

/// Resolves when the process receives SIGTERM or SIGINT; returns the signal's name.
pub async fn termination_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
