//! Postgres → proxy framing after startup: the frame scanner with the session's own interests
//! over arbitrary bytes cut into arbitrary reads, and every backend decoder on each message it
//! hands over whole. Checks that no byte is forwarded twice or lost before an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use viewgate::protocol::backend;
use viewgate::protocol::frame::{FrameScanner, Step};

/// The largest message the scanner accepts here: small, so the limit path is reached too.
const MAX_MESSAGE_LEN: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let mut scanner = FrameScanner::new(MAX_MESSAGE_LEN);
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0usize;
    for chunk in stream.chunks(cut) {
        pending.extend_from_slice(chunk);
        let mut position = 0;
        loop {
            match scanner.step_with(&pending[position..], backend::session_interest) {
                Ok(Step::Passthrough(n)) => {
                    assert!(n > 0 && position + n <= pending.len());
                    position += n;
                }
                Ok(Step::Header { frame_len, .. }) => scanner.pass(frame_len),
                Ok(Step::Message { tag: _, frame }) => {
                    let _ = backend::auth_request(frame);
                    let _ = backend::sasl_without_channel_binding(frame);
                    let _ = backend::backend_key_data(frame);
                    let _ = backend::parameter_status(frame);
                    let _ = backend::ready_for_query(frame);
                    let _ = backend::error_fields(frame);
                    position += frame.len();
                }
                Ok(Step::Incomplete { frame_len }) => {
                    assert!(frame_len >= 1);
                    break;
                }
                Err(_) => return,
            }
        }
        consumed += position;
        pending.drain(..position);
    }
    assert_eq!(consumed + pending.len(), stream.len());
});
