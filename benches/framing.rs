//! Cost of the session loop's framing: `FrameScanner::step` over realistic buffers.
//!
//! Every byte viewgate forwards is walked by a [`FrameScanner`], so its cost per message is a
//! floor under the proxy's CPU per transaction. Three buffers:
//!
//! - `server_response`: what Postgres sends for a 100-row SELECT (RowDescription, 100 DataRows
//!   shaped like `pgbench_accounts`, CommandComplete, ReadyForQuery), scanned in one piece with
//!   the tags the session inspects upstream ('Z', 'E', 'S');
//! - `server_response_segments`: the same bytes arriving in 1448-byte pieces (one TCP segment
//!   each), so DataRows straddle reads and the scanner resumes mid-message;
//! - `client_extended_batch`: Parse/Bind/Describe/Execute/Sync for one parameterised query,
//!   with the session's client-side interest (Parse whole, the others by their header).
//!
//! Throughput is reported in messages: criterion's "time" divided by the element count is the
//! cost per message. Run with `cargo bench --bench framing`.

use std::hint::black_box;

/// The binary's allocator (`src/main.rs`), so the benches measure what the proxy runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use viewgate::protocol::backend;
use viewgate::protocol::frame::{FrameScanner, Interest, Step};
use viewgate::protocol::frontend;

/// Rows in the simulated result set.
const ROWS: usize = 100;
/// Payload of one TCP segment on a 1500-byte MTU link with timestamps.
const SEGMENT_LEN: usize = 1448;
/// No message in these buffers comes near it; it only has to be large.
const MAX_MESSAGE_LEN: usize = 1 << 30;

fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// RowDescription + `ROWS` DataRows (aid, bid, abalance, filler) + CommandComplete + ReadyForQuery.
fn server_response() -> (Vec<u8>, usize) {
    let columns: [(&str, u32, i16, i32); 4] = [
        ("aid", 23, 4, -1),
        ("bid", 23, 4, -1),
        ("abalance", 23, 4, -1),
        ("filler", 1042, -1, 88),
    ];
    let mut out = Vec::new();
    let mut body = Vec::new();
    body.extend_from_slice(&(columns.len() as i16).to_be_bytes());
    for (number, (name, type_oid, type_len, type_modifier)) in columns.iter().enumerate() {
        cstr(&mut body, name);
        body.extend_from_slice(&16_384u32.to_be_bytes()); // table OID
        body.extend_from_slice(&(number as i16 + 1).to_be_bytes());
        body.extend_from_slice(&type_oid.to_be_bytes());
        body.extend_from_slice(&type_len.to_be_bytes());
        body.extend_from_slice(&type_modifier.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    message(&mut out, b'T', &body);
    for row in 0..ROWS {
        let filler = format!("{:84}", "");
        let values = [
            (row + 1).to_string(),
            "1".to_owned(),
            ((row * 37) % 5000).to_string(),
            filler,
        ];
        let mut body = Vec::new();
        body.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for value in &values {
            body.extend_from_slice(&(value.len() as i32).to_be_bytes());
            body.extend_from_slice(value.as_bytes());
        }
        message(&mut out, b'D', &body);
    }
    message(&mut out, b'C', format!("SELECT {ROWS}\0").as_bytes());
    message(&mut out, backend::READY_FOR_QUERY, b"I");
    (out, ROWS + 3)
}

/// Parse + Bind + Describe (portal) + Execute + Sync, as `pgbench -M extended` sends them.
fn client_extended_batch() -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut body = Vec::new();
    cstr(&mut body, "");
    cstr(
        &mut body,
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    );
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&23u32.to_be_bytes());
    message(&mut out, frontend::PARSE, &body);

    let mut body = Vec::new();
    cstr(&mut body, ""); // portal
    cstr(&mut body, ""); // statement
    body.extend_from_slice(&0i16.to_be_bytes()); // parameter formats: all text
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&6i32.to_be_bytes());
    body.extend_from_slice(b"123456");
    body.extend_from_slice(&0i16.to_be_bytes()); // result formats: all text
    message(&mut out, b'B', &body);
    message(&mut out, b'D', b"P\0");
    message(&mut out, b'E', b"\0\0\0\0\0");
    message(&mut out, frontend::SYNC, b"");
    (out, 5)
}

/// Walks `buf` the way the session loop does, looking at each inspected message's tag; returns
/// the number of steps and how many bytes were consumed (forwardable).
fn scan(scanner: &mut FrameScanner, buf: &[u8], interest: fn(u8) -> Interest) -> (usize, usize) {
    let mut position = 0;
    let mut steps = 0;
    loop {
        match scanner.step_with(&buf[position..], interest) {
            Ok(Step::Passthrough(n)) => position += n,
            // As in the session: the gate lets it pass.
            Ok(Step::Header { tag, frame_len }) => {
                black_box(tag);
                scanner.pass(frame_len);
            }
            Ok(Step::Message { tag, frame }) => {
                black_box(tag);
                position += frame.len();
            }
            Ok(Step::Incomplete { .. }) => return (steps, position),
            Err(error) => panic!("benchmark buffer is malformed: {error}"),
        }
        steps += 1;
    }
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");

    let (response, response_messages) = server_response();
    group.throughput(Throughput::Elements(response_messages as u64));
    group.bench_function("server_response", |b| {
        let mut scanner = FrameScanner::new(MAX_MESSAGE_LEN);
        b.iter(|| {
            scan(
                &mut scanner,
                black_box(&response),
                backend::session_interest,
            )
        })
    });

    group.bench_function("server_response_segments", |b| {
        let mut scanner = FrameScanner::new(MAX_MESSAGE_LEN);
        b.iter(|| {
            // As in the session: bytes arrive one segment at a time; what was not consumed
            // (an incomplete inspected message) stays in the window for the next read.
            let (mut consumed, mut received, mut steps) = (0, 0, 0);
            while received < response.len() {
                received = (received + SEGMENT_LEN).min(response.len());
                let window = black_box(&response[consumed..received]);
                let (window_steps, window_consumed) =
                    scan(&mut scanner, window, backend::session_interest);
                steps += window_steps;
                consumed += window_consumed;
            }
            assert_eq!(consumed, response.len());
            steps
        })
    });

    let (batch, batch_messages) = client_extended_batch();
    group.throughput(Throughput::Elements(batch_messages as u64));
    group.bench_function("client_extended_batch", |b| {
        let mut scanner = FrameScanner::new(MAX_MESSAGE_LEN);
        b.iter(|| scan(&mut scanner, black_box(&batch), frontend::session_interest))
    });

    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
