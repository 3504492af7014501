//! Reads whole messages one at a time, for the startup and authentication exchange.
//!
//! The session loop streams; this reader does not, which is right where messages are few,
//! small and must be understood whole before anything is forwarded. Bytes read past the last
//! message are kept and handed over to the session loop.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame::{FrameError, FrameScanner, Step};

/// How much a read asks for at a time.
const READ_CHUNK: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct MessageReader {
    buffer: BytesMut,
    scanner: FrameScanner,
}

impl MessageReader {
    pub fn new(max_message_len: usize) -> Self {
        MessageReader {
            buffer: BytesMut::with_capacity(READ_CHUNK),
            scanner: FrameScanner::new(max_message_len),
        }
    }

    /// The next whole message, header included.
    pub async fn next<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<BytesMut, ReadError> {
        loop {
            let missing = match self.scanner.step(&self.buffer, |_| true)? {
                Step::Message { frame, .. } => {
                    let len = frame.len();
                    return Ok(self.buffer.split_to(len));
                }
                Step::Incomplete { frame_len } => frame_len - self.buffer.len(),
                Step::Passthrough(_) | Step::Header { .. } => {
                    unreachable!("every tag is wanted whole")
                }
            };
            // Grow with what arrives, not with what the length field claims.
            self.buffer.reserve(missing.min(READ_CHUNK));
            if stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Whatever was read beyond the messages returned so far.
    pub fn into_leftover(self) -> BytesMut {
        self.buffer
    }
}
