//! Client → proxy framing after startup: the frame scanner with the session's own interests
//! over arbitrary bytes cut into arbitrary reads, and every frontend decoder on each message it
//! hands over whole. Checks that no byte is forwarded twice or lost before an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use viewgate::protocol::frame::{FrameScanner, Step};
use viewgate::protocol::frontend;

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
            match scanner.step_with(&pending[position..], frontend::session_interest) {
                Ok(Step::Passthrough(n)) => {
                    assert!(n > 0 && position + n <= pending.len());
                    position += n;
                }
                Ok(Step::Header { frame_len, .. }) => scanner.pass(frame_len),
                Ok(Step::Message { tag, frame }) => {
                    let _ = frontend::statement_text(tag, frame);
                    let _ = frontend::parse_name(frame);
                    let _ = frontend::closed_statement(frame);
                    let _ = frontend::scram_channel_binding_flag(frame);
                    if let Some(replaced) = frontend::with_statement(tag, frame, "SELECT 1") {
                        assert_eq!(replaced[0], tag);
                    }
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
