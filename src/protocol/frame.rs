//! Message framing: splitting a byte stream into Postgres protocol messages.
//!
//! After startup, every message is a 1-byte tag and a big-endian i32 length that counts itself
//! but not the tag. The proxy forwards most messages without looking inside them, so
//! [`FrameScanner`] walks a read buffer and says, stretch by stretch, whether the bytes pass
//! through untouched or form a complete message the caller asked to inspect. A message that
//! passes through may be forwarded in pieces as it arrives: a 1 GiB DataRow streams through a
//! buffer of a few kilobytes.

/// Tag byte plus the i32 length.
pub const HEADER_LEN: usize = 5;
/// The smallest valid length field: the length counts its own four bytes.
const MIN_LENGTH_FIELD: i32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid length {length} in message of type {tag:?}")]
    InvalidLength { tag: char, length: i32 },
    #[error("message of type {tag:?} is {length} bytes long, over the limit of {limit}")]
    TooLong {
        tag: char,
        length: usize,
        limit: usize,
    },
}

/// How much of a message of some type the caller wants to see before it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Nothing: it passes through, in pieces if it arrives in pieces.
    Skip,
    /// The whole message, buffered until complete.
    Whole,
    /// Its header only (tag and length): enough to decide whether it may pass, without
    /// buffering a body that may be large (a Bind carrying a 100 MB parameter).
    Header,
    /// The whole message when it is at most this many bytes long (header included), else its
    /// header only: small messages are read, large ones still stream.
    WholeUpTo(usize),
}

/// One step through a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// The next `n` bytes pass through unchanged: whole uninteresting messages or a piece of one.
    Passthrough(usize),
    /// A complete message the caller wants to see, header included.
    Message { tag: u8, frame: &'a [u8] },
    /// The header of a message the caller wants to glance at. Nothing is consumed: the caller
    /// either lets it through with [`FrameScanner::pass`] or leaves it where it is.
    Header { tag: u8, frame_len: usize },
    /// The buffer ends inside a header or inside a wanted message. `frame_len` is how many bytes
    /// the pending message needs in all (header included), so the caller can reserve them.
    Incomplete { frame_len: usize },
}

/// Walks the messages of one direction of a connection. It remembers how much of a
/// passed-through message is still to come, so it can resume across reads.
#[derive(Debug)]
pub struct FrameScanner {
    passthrough_left: usize,
    max_frame_len: usize,
}

impl FrameScanner {
    /// `max_message_len` bounds the length field (as Postgres does, 1 GiB - 1 by default).
    pub fn new(max_message_len: usize) -> Self {
        FrameScanner {
            passthrough_left: 0,
            max_frame_len: max_message_len,
        }
    }

    /// True while a passed-through message has been forwarded only in part; nothing may be
    /// injected into the stream until it completes.
    pub fn mid_message(&self) -> bool {
        self.passthrough_left > 0
    }

    /// Classifies the start of `buf`. `wanted` picks the message tags the caller inspects
    /// whole; the rest pass through.
    pub fn step<'a>(
        &mut self,
        buf: &'a [u8],
        wanted: impl Fn(u8) -> bool,
    ) -> Result<Step<'a>, FrameError> {
        self.step_with(buf, |tag| {
            if wanted(tag) {
                Interest::Whole
            } else {
                Interest::Skip
            }
        })
    }

    /// Lets the message whose [`Step::Header`] was just returned pass through.
    pub fn pass(&mut self, frame_len: usize) {
        self.passthrough_left = frame_len;
    }

    /// Classifies the start of `buf`, with `interest` saying per message type how much the
    /// caller wants to see.
    pub fn step_with<'a>(
        &mut self,
        buf: &'a [u8],
        interest: impl Fn(u8) -> Interest,
    ) -> Result<Step<'a>, FrameError> {
        if self.passthrough_left > 0 {
            if buf.is_empty() {
                return Ok(Step::Incomplete {
                    frame_len: self.passthrough_left,
                });
            }
            let n = self.passthrough_left.min(buf.len());
            self.passthrough_left -= n;
            return Ok(Step::Passthrough(n));
        }
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(Step::Incomplete {
                frame_len: HEADER_LEN,
            });
        };
        let tag = header[0];
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if length < MIN_LENGTH_FIELD {
            return Err(FrameError::InvalidLength {
                tag: char::from(tag),
                length,
            });
        }
        let length = length as usize;
        if length > self.max_frame_len {
            return Err(FrameError::TooLong {
                tag: char::from(tag),
                length,
                limit: self.max_frame_len,
            });
        }
        let frame_len = 1 + length;
        match interest(tag) {
            Interest::WholeUpTo(limit) if frame_len > limit => {
                return Ok(Step::Header { tag, frame_len });
            }
            Interest::Whole | Interest::WholeUpTo(_) => {
                return Ok(match buf.get(..frame_len) {
                    Some(frame) => Step::Message { tag, frame },
                    None => Step::Incomplete { frame_len },
                });
            }
            Interest::Header => return Ok(Step::Header { tag, frame_len }),
            Interest::Skip => {}
        }
        let n = frame_len.min(buf.len());
        self.passthrough_left = frame_len - n;
        Ok(Step::Passthrough(n))
    }
}

/// Builds a message with `tag` whose body is written by `body`, filling in the length.
/// Whether `frame` (a tag, a length and what was read of the body) is the whole message,
/// not its header alone (a message the pumps only glance at).
pub fn is_whole(frame: &[u8]) -> bool {
    frame
        .get(1..HEADER_LEN)
        .and_then(|length| length.try_into().ok())
        .is_some_and(|length: [u8; 4]| u32::from_be_bytes(length) as usize + 1 == frame.len())
}

pub fn encode_message(out: &mut bytes::BytesMut, tag: u8, body: impl FnOnce(&mut bytes::BytesMut)) {
    use bytes::BufMut;
    let start = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    body(out);
    let length = (out.len() - start - 1) as i32;
    out[start + 1..start + HEADER_LEN].copy_from_slice(&length.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_up_to_reads_small_messages_and_glances_at_large_ones() {
        let interest = |_| Interest::WholeUpTo(10);
        let small = frame(b'B', &[1u8; 5]);
        let mut scanner = FrameScanner::new(1 << 20);
        assert_eq!(
            scanner.step_with(&small[..7], interest).unwrap(),
            Step::Incomplete { frame_len: 10 }
        );
        assert_eq!(
            scanner.step_with(&small, interest).unwrap(),
            Step::Message {
                tag: b'B',
                frame: &small[..]
            }
        );
        let large = frame(b'B', &[1u8; 6]);
        assert_eq!(
            scanner.step_with(&large[..6], interest).unwrap(),
            Step::Header {
                tag: b'B',
                frame_len: 11
            }
        );
    }

    #[test]
    fn a_header_glance_consumes_nothing_until_the_caller_passes_the_message() {
        let mut buf = frame(b'B', &[7u8; 100]);
        buf.extend(frame(b'S', b""));
        let mut scanner = FrameScanner::new(1 << 20);
        let interest = |t| {
            if t == b'B' {
                Interest::Header
            } else {
                Interest::Whole
            }
        };
        // Only the first 20 bytes of the Bind have arrived: the glance needs just the header.
        assert_eq!(
            scanner.step_with(&buf[..20], interest).unwrap(),
            Step::Header {
                tag: b'B',
                frame_len: 105
            }
        );
        assert!(!scanner.mid_message(), "a glance alone starts nothing");
        scanner.pass(105);
        assert_eq!(
            scanner.step_with(&buf[..20], interest).unwrap(),
            Step::Passthrough(20)
        );
        assert!(scanner.mid_message());
        assert_eq!(
            scanner.step_with(&buf[20..], interest).unwrap(),
            Step::Passthrough(85)
        );
        assert_eq!(
            scanner.step_with(&buf[105..], interest).unwrap(),
            Step::Message {
                tag: b'S',
                frame: &buf[105..]
            }
        );
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn passes_uninteresting_messages_and_stops_at_wanted_ones() {
        let mut buf = frame(b'D', b"row");
        buf.extend(frame(b'Z', b"I"));
        let mut scanner = FrameScanner::new(1 << 20);
        let wanted = |t| t == b'Z';
        assert_eq!(scanner.step(&buf, wanted).unwrap(), Step::Passthrough(8));
        assert_eq!(
            scanner.step(&buf[8..], wanted).unwrap(),
            Step::Message {
                tag: b'Z',
                frame: &buf[8..]
            }
        );
    }

    #[test]
    fn streams_a_large_passthrough_message_in_pieces() {
        let buf = frame(b'D', &[7u8; 100]);
        let mut scanner = FrameScanner::new(1 << 20);
        assert_eq!(
            scanner.step(&buf[..10], |_| false).unwrap(),
            Step::Passthrough(10)
        );
        assert!(scanner.mid_message());
        assert_eq!(
            scanner.step(&[], |_| false).unwrap(),
            Step::Incomplete { frame_len: 95 }
        );
        assert_eq!(
            scanner.step(&buf[10..], |_| true).unwrap(),
            Step::Passthrough(95)
        );
        assert!(!scanner.mid_message());
    }

    #[test]
    fn wanted_messages_wait_until_complete() {
        let buf = frame(b'Q', b"select 1\0");
        let mut scanner = FrameScanner::new(1 << 20);
        assert_eq!(
            scanner.step(&buf[..7], |_| true).unwrap(),
            Step::Incomplete {
                frame_len: buf.len()
            }
        );
        assert_eq!(
            scanner.step(&buf[..3], |_| true).unwrap(),
            Step::Incomplete {
                frame_len: HEADER_LEN
            }
        );
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut scanner = FrameScanner::new(100);
        let negative = [b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            scanner.step(&negative, |_| true),
            Err(FrameError::InvalidLength { length: -1, .. })
        ));
        let too_small = [b'Q', 0, 0, 0, 3];
        assert!(scanner.step(&too_small, |_| true).is_err());
        let too_big = [b'Q', 0, 0, 1, 0];
        assert!(matches!(
            scanner.step(&too_big, |_| true),
            Err(FrameError::TooLong { length: 256, .. })
        ));
    }

    #[test]
    fn a_whole_message_is_told_from_its_header() {
        let mut message = bytes::BytesMut::new();
        encode_message(&mut message, b'B', |b| b.extend_from_slice(b"abc"));
        assert!(is_whole(&message));
        assert!(!is_whole(&message[..HEADER_LEN]));
        assert!(is_whole(&[b'S', 0, 0, 0, 4]));
        assert!(!is_whole(&[b'S', 0, 0]));
    }

    #[test]
    fn encode_message_fills_in_the_length() {
        let mut out = bytes::BytesMut::new();
        encode_message(&mut out, b'Z', |b| b.extend_from_slice(b"I"));
        assert_eq!(&out[..], &frame(b'Z', b"I")[..]);
    }
}
