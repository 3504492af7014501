//! Property tests: whatever bytes a peer sends, the protocol layer answers with a value or an
//! error, never a panic, and framing never loses or invents bytes.

use proptest::prelude::*;
use viewgate::protocol::backend;
use viewgate::protocol::frame::{FrameScanner, HEADER_LEN, Interest, Step};
use viewgate::protocol::startup::parse_startup_packet;

/// Every kind of interest, spread over the tags.
fn three_ways(tag: u8) -> Interest {
    match tag % 3 {
        0 => Interest::Whole,
        1 => Interest::Header,
        _ => Interest::Skip,
    }
}

/// Messages built from arbitrary tags and bodies, with correct lengths.
fn well_formed_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..300)),
        0..20,
    )
    .prop_map(|messages| {
        let mut out = Vec::new();
        for (tag, body) in messages {
            out.push(tag);
            out.extend(((body.len() + 4) as u32).to_be_bytes());
            out.extend(body);
        }
        out
    })
}

proptest! {
    #[test]
    fn startup_parsing_never_panics(body in prop::collection::vec(any::<u8>(), 4..600)) {
        let _ = parse_startup_packet(&body);
    }

    #[test]
    fn backend_decoders_never_panic(tag in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut frame = vec![tag];
        frame.extend(((body.len() + 4) as u32).to_be_bytes());
        frame.extend(&body);
        let _ = backend::auth_request(&frame);
        let _ = backend::sasl_without_channel_binding(&frame);
        let _ = backend::backend_key_data(&frame);
        let _ = backend::parameter_status(&frame);
        let _ = backend::ready_for_query(&frame);
        let _ = backend::error_fields(&frame);
        // Frames shorter than a header too.
        let _ = backend::error_fields(&body);
    }

    #[test]
    fn scanner_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000), cut in 1usize..64) {
        let mut scanner = FrameScanner::new(1 << 16);
        for chunk in bytes.chunks(cut) {
            let mut position = 0;
            loop {
                match scanner.step_with(&chunk[position..], three_ways) {
                    Ok(Step::Passthrough(n)) => { prop_assert!(n > 0); position += n }
                    Ok(Step::Header { frame_len, .. }) => scanner.pass(frame_len),
                    Ok(Step::Message { frame, .. }) => position += frame.len(),
                    Ok(Step::Incomplete { frame_len }) => { prop_assert!(frame_len >= 1); break }
                    Err(_) => return Ok(()),
                }
            }
        }
    }

    /// However a well-formed stream is cut into reads, the scanner forwards every byte exactly
    /// once, hands each wanted message over whole and shows each glanced one by its header.
    #[test]
    fn scanner_forwards_every_byte_once_across_any_read_boundaries(
        stream in well_formed_stream(),
        cuts in prop::collection::vec(1usize..500, 1..40),
    ) {
        let wanted = |tag: u8| tag.is_ascii_uppercase();
        let interest = |tag: u8| match tag {
            t if wanted(t) => Interest::Whole,
            t if t.is_ascii_lowercase() => Interest::Header,
            _ => Interest::Skip,
        };
        let mut glanced = 0;
        let mut scanner = FrameScanner::new(1 << 16);
        let mut pending: Vec<u8> = Vec::new();
        let mut forwarded: Vec<u8> = Vec::new();
        let mut wanted_seen = 0;
        let mut offset = 0;
        let mut cut = cuts.iter().cycle();
        while offset < stream.len() {
            let end = (offset + cut.next().unwrap()).min(stream.len());
            pending.extend_from_slice(&stream[offset..end]);
            offset = end;
            let mut position = 0;
            loop {
                match scanner.step_with(&pending[position..], interest).unwrap() {
                    Step::Passthrough(n) => position += n,
                    Step::Header { tag, frame_len } => {
                        prop_assert!(tag.is_ascii_lowercase());
                        prop_assert!(frame_len >= HEADER_LEN);
                        glanced += 1;
                        scanner.pass(frame_len);
                    }
                    Step::Message { tag, frame } => {
                        prop_assert!(wanted(tag));
                        prop_assert!(frame.len() >= HEADER_LEN);
                        wanted_seen += 1;
                        position += frame.len();
                    }
                    Step::Incomplete { .. } => break,
                }
            }
            forwarded.extend_from_slice(&pending[..position]);
            pending.drain(..position);
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(&forwarded, &stream);
        let (expected_wanted, expected_glanced) = {
            let (mut whole, mut headers) = (0, 0);
            let mut at = 0;
            while at < stream.len() {
                let length = u32::from_be_bytes(stream[at + 1..at + 5].try_into().unwrap()) as usize;
                match interest(stream[at]) {
                    Interest::Whole => whole += 1,
                    Interest::WholeUpTo(limit) if length < limit => whole += 1,
                    Interest::Header | Interest::WholeUpTo(_) => headers += 1,
                    Interest::Skip => {}
                }
                at += 1 + length;
            }
            (whole, headers)
        };
        prop_assert_eq!(wanted_seen, expected_wanted);
        prop_assert_eq!(glanced, expected_glanced);
    }
}
