//! A TCP relay that injects network faults between two real endpoints (the proxy and
//! Postgres, or a client and the proxy): latency, a bandwidth cap, a stall (bytes stop flowing
//! but the sockets stay open, as on a half-open path), a stall or a reset after N bytes, a
//! reset of every open connection, and refusing new connections.
//!
//! Why a relay rather than a mock: the proxy and Postgres stay real, only the path between them
//! misbehaves, so what the tests see is what a client would see behind a bad network. Plain
//! threads (two per connection) keep it independent of the runtimes under test. Faults are
//! read on every chunk, so a change applies to open connections at once.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How often a blocked copy looks at the faults again (and at whether the relay stopped).
const POLL: Duration = Duration::from_millis(20);
/// The largest piece copied at once; the bandwidth cap and the byte counts work in these.
const CHUNK: usize = 16 * 1024;

/// The faults in effect; changed with [`FaultRelay::set`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added before each chunk is forwarded, both directions.
    pub latency: Duration,
    /// Bytes per second per direction and connection; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Nothing is read or forwarded while set; the sockets stay open (half-open path).
    pub stall: bool,
    /// Each connection stalls for good once this many bytes went towards the client.
    pub stall_after: Option<u64>,
    /// Each connection is reset once this many bytes went towards the client.
    pub reset_after: Option<u64>,
    /// New connections are accepted and reset at once (nothing listening behind the relay).
    pub refuse: bool,
}

struct Shared {
    target: SocketAddr,
    faults: Mutex<Faults>,
    stopped: AtomicBool,
    accepted: AtomicUsize,
    to_target: AtomicU64,
    to_client: AtomicU64,
    /// Both sockets of every connection, for resets; closed ones are pruned on reset.
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
}

/// A relay listening on a free loopback port and forwarding to `target`.
pub struct FaultRelay {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultRelay {
    pub fn start(target: SocketAddr) -> FaultRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay binds");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target,
            faults: Mutex::new(Faults::default()),
            stopped: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            to_target: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        thread::spawn(move || accept_loop(listener, accepting));
        FaultRelay { port, shared }
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Changes the faults in effect.
    pub fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.shared.faults.lock().unwrap());
    }

    /// Resets (RST, no FIN) every connection open now, both sides.
    pub fn reset_all(&self) {
        let open = std::mem::take(&mut *self.shared.open.lock().unwrap());
        for (client, target) in open {
            reset(&client);
            reset(&target);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded towards the target so far.
    pub fn bytes_to_target(&self) -> u64 {
        self.shared.to_target.load(Ordering::SeqCst)
    }

    /// Bytes forwarded towards clients so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address());
        self.reset_all();
    }
}

/// Closes with RST: SO_LINGER on with a zero timeout makes close() abort the connection.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor owned by `stream` and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.faults.lock().unwrap().refuse {
            reset(&client);
            continue;
        }
        let Ok(target) = TcpStream::connect(shared.target) else {
            reset(&client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = target.set_nodelay(true);
        shared
            .open
            .lock()
            .unwrap()
            .push((client.try_clone().unwrap(), target.try_clone().unwrap()));
        let (up_from, up_to) = (client.try_clone().unwrap(), target.try_clone().unwrap());
        let up_shared = shared.clone();
        thread::spawn(move || copy(up_from, up_to, &up_shared, false));
        let down_shared = shared.clone();
        thread::spawn(move || copy(target, client, &down_shared, true));
    }
}

/// Copies one direction until either side closes, applying the faults to each chunk.
fn copy(mut from: TcpStream, mut to: TcpStream, shared: &Shared, towards_client: bool) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = vec![0u8; CHUNK];
    let mut forwarded = 0u64;
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        let faults = shared.faults.lock().unwrap().clone();
        let stalled_for_good = towards_client && faults.stall_after.is_some_and(|n| forwarded >= n);
        if faults.stall || stalled_for_good {
            thread::sleep(POLL);
            continue;
        }
        // Never read past a byte limit, so the fault lands exactly where it was asked for.
        let limit = [faults.stall_after, faults.reset_after]
            .into_iter()
            .flatten()
            .filter(|_| towards_client)
            .map(|n| n.saturating_sub(forwarded) as usize)
            .min()
            .unwrap_or(CHUNK)
            .clamp(0, CHUNK);
        if towards_client && faults.reset_after.is_some_and(|n| forwarded >= n) {
            reset(&from);
            reset(&to);
            return;
        }
        if limit == 0 {
            continue;
        }
        let read = match from.read(&mut buffer[..limit]) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => break,
        };
        if !faults.latency.is_zero() {
            thread::sleep(faults.latency);
        }
        let started = Instant::now();
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
        if let Some(rate) = faults.bandwidth {
            let due = Duration::from_secs_f64(read as f64 / rate.max(1) as f64);
            if let Some(left) = due.checked_sub(started.elapsed()) {
                thread::sleep(left);
            }
        }
        forwarded += read as u64;
        let counter = if towards_client {
            &shared.to_client
        } else {
            &shared.to_target
        };
        counter.fetch_add(read as u64, Ordering::SeqCst);
    }
    // One side closed: pass the FIN on, as a plain TCP path would.
    let _ = to.shutdown(Shutdown::Write);
}
