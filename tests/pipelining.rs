//! Pipelining without deadlock: a client may send far more than socket buffers hold before it
//! reads any result, as long as it reads concurrently. Postgres then blocks writing results
//! and stops reading queries; a proxy that stops reading results while it waits to write
//! queries would deadlock where a direct connection does not.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::TestProxy;
use common::raw;

/// Enough output (about 40 MB of results for 16 MB of queries) to fill every socket buffer
/// on the way many times over.
const QUERIES: usize = 8_000;
const DEADLINE: Duration = Duration::from_secs(60);

/// Pipelines the batch to `address` from one thread while reading from another.
fn run_pipeline(address: std::net::SocketAddr) {
    let (stream, _) = raw::start_session(address, "postgres");
    let mut writer = stream.try_clone().unwrap();
    let mut reader = stream;
    // Each query is ~2 KB and returns ~5 KB.
    let filler = "y".repeat(2000);
    let query = raw::query(&format!("SELECT repeat('x', 5000) /* {filler} */"));
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        for _ in 0..QUERIES {
            writer.write_all(&query).unwrap();
        }
    });
    let mut ready = 0;
    let mut rows = 0;
    while ready < QUERIES {
        assert!(
            started.elapsed() < DEADLINE,
            "pipeline stalled after {ready} results"
        );
        match raw::read_message(&mut reader).expect("results keep coming") {
            (b'D', _) => rows += 1,
            (b'Z', _) => ready += 1,
            (b'E', body) => panic!("query failed: {:?}", raw::parse_error(&body)),
            _ => {}
        }
    }
    sender.join().unwrap();
    assert_eq!(rows, QUERIES);
}

#[test]
fn a_large_pipelined_batch_completes_when_the_client_reads_concurrently() {
    let proxy = TestProxy::start();
    // The control: Postgres itself copes with this client.
    run_pipeline(
        format!("127.0.0.1:{}", proxy.cluster.port())
            .parse()
            .unwrap(),
    );
    run_pipeline(proxy.address);
}
