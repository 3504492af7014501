//! One direction of a session: read from one side, scan for message boundaries, write to the
//! other side.
//!
//! A session runs two pumps concurrently in its task, so a write that blocks in one direction
//! never stops the other from reading. That matters for pipelining: when a client sends more
//! than the socket buffers hold, Postgres stops reading queries until its results are read;
//! a proxy that stopped reading results while it waited to write queries would deadlock.
//! Bytes are forwarded from the read buffer in place, one write per read.
//!
//! A pump can be stopped from outside (`stop`) only where the stream is clean: while it waits
//! to read, with no message partly forwarded (and, for the upstream side, nothing buffered),
//! or while it holds a message at the pause gate. Never during a write. That is what lets a
//! session end its pumps at a transaction boundary, swap its upstream connection and start
//! them again (`session/relay.rs`) without losing or splitting a message.

use std::future::Future;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::pause::PauseGate;
use crate::protocol::frame::{FrameError, FrameScanner, HEADER_LEN, Interest, Step};

/// Free space kept in a read buffer: what one read can take.
const READ_CHUNK: usize = 16 * 1024;
/// A buffer that grew past this for one large message is replaced once empty, so an idle
/// session does not keep its peak.
pub const SHRINK_ABOVE: usize = 256 * 1024;

/// What the pump's caller decides about a wanted message.
pub enum Inspection {
    Continue,
    /// Send this message instead (a rewritten Query or Parse).
    Replace(BytesMut),
    /// Forward this message, then stop the pump (the client sent Terminate).
    Stop,
    /// The message is malformed; stop before forwarding it.
    Invalid(&'static str),
    /// The pause gate is closed: keep this message unforwarded in the buffer, stop reading,
    /// and offer it again once the gate opens.
    Hold,
}

/// Why a pump stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// The reading side closed or failed.
    ReaderClosed,
    /// The writing side failed.
    WriterFailed,
    Protocol(FrameError),
    Invalid(&'static str),
    Stopped,
    /// `stop` resolved at a clean point; the direction can be pumped again later.
    Interrupted,
}

/// A direction's buffer and framing state; outlives the pump so the session can tell, after
/// the pump is dropped, whether the stream stands between two messages.
pub struct Direction {
    buffer: BytesMut,
    /// Output assembled when a message is replaced; otherwise bytes go out from `buffer`.
    spliced: BytesMut,
    frames: FrameScanner,
    /// A write was started and may not have completed (the pump was dropped during it).
    writing: bool,
    /// Whether a stop may leave unforwarded bytes in the buffer: yes for client input (it is
    /// forwarded later, maybe to another upstream), no for upstream output (it belongs to the
    /// connection it came from).
    keeps_input_on_stop: bool,
    /// When the message at the front of the buffer began waiting at the pause gate.
    held_since: Option<Instant>,
}

impl Direction {
    /// `leftover` is what was read past the end of startup; `client_side` is true for the
    /// direction that reads from the client.
    pub fn new(leftover: BytesMut, max_message_len: usize, client_side: bool) -> Self {
        Direction {
            buffer: leftover,
            spliced: BytesMut::new(),
            frames: FrameScanner::new(max_message_len),
            writing: false,
            keeps_input_on_stop: client_side,
            held_since: None,
        }
    }

    /// Nothing from the reading side is buffered (or partly forwarded).
    pub fn is_drained(&self) -> bool {
        self.buffer.is_empty() && !self.frames.mid_message()
    }

    /// Where a stop may end the pump (see the module comment).
    fn stoppable(&self) -> bool {
        !self.writing
            && !self.frames.mid_message()
            && (self.keeps_input_on_stop || self.buffer.is_empty())
    }

    /// True when the receiving side has been sent whole messages only, so the proxy may add
    /// one of its own (a FATAL error) without corrupting the stream.
    pub fn at_message_boundary(&self) -> bool {
        !self.writing && !self.frames.mid_message()
    }

    /// Moves bytes from `reader` to `writer` until one side ends, `inspect` stops it, or
    /// `stop` resolves at a clean point. `gate` is what a held message waits for.
    pub async fn pump<R, W>(
        &mut self,
        mut reader: R,
        mut writer: W,
        interest: fn(u8) -> Interest,
        mut inspect: impl FnMut(u8, &[u8]) -> Inspection,
        gate: &PauseGate,
        stop: impl Future<Output = ()>,
    ) -> PumpEnd
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        tokio::pin!(stop);
        loop {
            if !self.buffer.is_empty() {
                let scanned = scan(
                    &mut self.frames,
                    &self.buffer,
                    &mut self.spliced,
                    interest,
                    &mut inspect,
                );
                let (len, verdict, spliced) = match scanned {
                    Ok(scanned) => scanned,
                    Err(error) => return PumpEnd::Protocol(error),
                };
                // A message replaced by nothing (the answer to the proxy's own statement)
                // leaves `spliced` empty but still spliced.
                let output = if spliced {
                    &self.spliced[..]
                } else {
                    &self.buffer[..len]
                };
                if !output.is_empty() {
                    self.writing = true;
                    if write(&mut writer, output).await.is_err() {
                        return PumpEnd::WriterFailed;
                    }
                    self.writing = false;
                }
                release(&mut self.spliced);
                self.buffer.advance(len);
                // After a hold the scan starts at the held message: consuming anything means
                // it went through.
                if len > 0
                    && let Some(since) = self.held_since.take()
                {
                    gate.hold_ended(since);
                }
                match verdict {
                    Inspection::Continue | Inspection::Replace(_) => {}
                    Inspection::Stop => return PumpEnd::Stopped,
                    Inspection::Invalid(reason) => return PumpEnd::Invalid(reason),
                    Inspection::Hold => {
                        if self.held_since.is_none() {
                            let now = Instant::now();
                            self.held_since = Some(now);
                            gate.hold_started(now);
                        }
                        tokio::select! {
                            biased;
                            _ = &mut stop => return PumpEnd::Interrupted,
                            _ = gate.opened() => {}
                        }
                        continue;
                    }
                }
            }
            reserve(&mut self.buffer);
            let stoppable = self.stoppable();
            let read = tokio::select! {
                biased;
                read = reader.read_buf(&mut self.buffer) => read,
                _ = &mut stop, if stoppable => return PumpEnd::Interrupted,
            };
            match read {
                Ok(n) if n > 0 => {}
                _ => return PumpEnd::ReaderClosed,
            }
        }
    }
}

/// Scans complete messages (and pieces of passed-through ones) at the start of `buffer`,
/// calling `inspect` for each wanted message. Returns how many bytes were consumed and the
/// verdict that ended the scan (`Continue` when the buffer ran out), and whether `inspect`
/// replaced a message: then `spliced` holds everything to send for the consumed bytes (maybe
/// nothing); otherwise the consumed bytes go out as they are.
fn scan(
    frames: &mut FrameScanner,
    buffer: &[u8],
    spliced: &mut BytesMut,
    interest: fn(u8) -> Interest,
    inspect: &mut impl FnMut(u8, &[u8]) -> Inspection,
) -> Result<(usize, Inspection, bool), FrameError> {
    let mut position = 0;
    let mut replaced = false;
    // Bytes before this offset are already in `spliced`.
    let mut copied = 0;
    let verdict = loop {
        match frames.step_with(&buffer[position..], interest)? {
            Step::Passthrough(n) => position += n,
            // `inspect` sees the header only: the message may pass or wait, nothing else.
            Step::Header { tag, frame_len } => {
                let header = &buffer[position..position + HEADER_LEN];
                match inspect(tag, header) {
                    Inspection::Continue => frames.pass(frame_len),
                    Inspection::Hold => break Inspection::Hold,
                    invalid @ Inspection::Invalid(_) => break invalid,
                    Inspection::Replace(_) | Inspection::Stop => {
                        break Inspection::Invalid(
                            "a message seen by its header can only pass or wait",
                        );
                    }
                }
            }
            Step::Message { tag, frame } => match inspect(tag, frame) {
                Inspection::Continue => position += frame.len(),
                Inspection::Replace(replacement) => {
                    replaced = true;
                    spliced.extend_from_slice(&buffer[copied..position]);
                    spliced.extend_from_slice(&replacement);
                    position += frame.len();
                    copied = position;
                }
                Inspection::Stop => {
                    position += frame.len();
                    break Inspection::Stop;
                }
                invalid @ Inspection::Invalid(_) => break invalid,
                Inspection::Hold => break Inspection::Hold,
            },
            Step::Incomplete { .. } => break Inspection::Continue,
        }
    };
    if replaced {
        spliced.extend_from_slice(&buffer[copied..position]);
    }
    Ok((position, verdict, replaced))
}

/// Empties an output buffer, handing back memory a large rewritten message left behind.
fn release(buffer: &mut BytesMut) {
    if buffer.capacity() > SHRINK_ABOVE {
        *buffer = BytesMut::new();
    } else {
        buffer.clear();
    }
}

/// Keeps room for one more read; hands back memory a large message left behind.
fn reserve(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > SHRINK_ABOVE {
        *buffer = BytesMut::with_capacity(READ_CHUNK);
    }
    buffer.reserve(READ_CHUNK);
}

async fn write<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
