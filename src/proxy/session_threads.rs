//! Session threads: OS threads that each run a single-threaded tokio runtime, with client
//! sessions spread over them round-robin. A session stays on its thread for its whole life.
//!
//! Why: on the multi-threaded runtime the worker that polls the I/O driver wakes a parked
//! worker (a futex call and a context switch) to run the sessions that became ready; on a
//! small host shared with Postgres and the clients those hand-offs are most of what viewgate
//! spends per transaction above PgBouncer (docs/benchmarks.md, "Where the time goes"). With a
//! thread per core and each session pinned to one, a thread parks only in its own `epoll_wait`,
//! as PgBouncer's processes do. Accepting stays on the main runtime (connections are rare);
//! only serving moves. Off (`session_threads = 0`) unless configured.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio_util::sync::CancellationToken;

/// A started set of session threads.
pub struct SessionThreads {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl SessionThreads {
    /// Starts `count` threads (at least one), each running its own runtime until [`stop`].
    ///
    /// [`stop`]: SessionThreads::stop
    pub fn start(count: usize) -> std::io::Result<SessionThreads> {
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for n in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let stopped = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("viewgate-session-{n}"))
                .spawn(move || runtime.block_on(stopped.cancelled_owned()));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    stop.cancel();
                    return Err(error);
                }
            }
        }
        Ok(SessionThreads {
            handles,
            threads,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// Runs `future` on the next thread in turn.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        if let Some(handle) = self.handles.get(n) {
            handle.spawn(future);
        }
    }

    /// Stops every thread; tasks still running on them are dropped (their sockets close).
    pub async fn stop(self) {
        self.stop.cancel();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spreads_tasks_over_its_threads_and_stops() {
        let threads = SessionThreads::start(2).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            let tx = tx.clone();
            threads.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
        }
        drop(tx);
        let mut names = Vec::new();
        while let Some(name) = rx.recv().await {
            names.push(name.unwrap_or_default());
        }
        names.sort();
        assert_eq!(
            names,
            [
                "viewgate-session-0",
                "viewgate-session-0",
                "viewgate-session-1",
                "viewgate-session-1"
            ]
        );
        threads.stop().await;
    }
}
