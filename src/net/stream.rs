//! One stream type per side, so the session is written once for plain and TLS connections.
//!
//! Enums rather than boxed trait objects: dispatch is a predictable branch on the hot path.
//! Each stream splits into borrowed read and write halves so that a session can read from one
//! side while a write to the other is blocked; TCP and Unix halves are free, TLS halves share
//! the TLS state through tokio's split lock.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;
type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client's connection to the proxy.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<ServerTls>),
}

/// The proxy's connection to the upstream server.
pub enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<ClientTls>),
}

pub enum ClientReader<'a> {
    Plain(tcp::ReadHalf<'a>),
    Tls(ReadHalf<&'a mut ServerTls>),
}

pub enum ClientWriter<'a> {
    Plain(tcp::WriteHalf<'a>),
    Tls(WriteHalf<&'a mut ServerTls>),
}

pub enum UpstreamReader<'a> {
    Tcp(tcp::ReadHalf<'a>),
    Unix(unix::ReadHalf<'a>),
    Tls(ReadHalf<&'a mut ClientTls>),
}

pub enum UpstreamWriter<'a> {
    Tcp(tcp::WriteHalf<'a>),
    Unix(unix::WriteHalf<'a>),
    Tls(WriteHalf<&'a mut ClientTls>),
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    pub fn split(&mut self) -> (ClientReader<'_>, ClientWriter<'_>) {
        match self {
            ClientStream::Plain(s) => {
                let (r, w) = s.split();
                (ClientReader::Plain(r), ClientWriter::Plain(w))
            }
            ClientStream::Tls(s) => {
                let (r, w) = tokio::io::split(&mut **s);
                (ClientReader::Tls(r), ClientWriter::Tls(w))
            }
        }
    }
}

impl UpstreamStream {
    pub fn split(&mut self) -> (UpstreamReader<'_>, UpstreamWriter<'_>) {
        match self {
            UpstreamStream::Tcp(s) => {
                let (r, w) = s.split();
                (UpstreamReader::Tcp(r), UpstreamWriter::Tcp(w))
            }
            UpstreamStream::Unix(s) => {
                let (r, w) = s.split();
                (UpstreamReader::Unix(r), UpstreamWriter::Unix(w))
            }
            UpstreamStream::Tls(s) => {
                let (r, w) = tokio::io::split(&mut **s);
                (UpstreamReader::Tls(r), UpstreamWriter::Tls(w))
            }
        }
    }
}

macro_rules! delegate_read {
    ($type:ident $(<$lt:lifetime>)? { $($variant:ident),+ }) => {
        impl $(<$lt>)? AsyncRead for $type $(<$lt>)? {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($type::$variant(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }
    };
}

macro_rules! delegate_write {
    ($type:ident $(<$lt:lifetime>)? { $($variant:ident),+ }) => {
        impl $(<$lt>)? AsyncWrite for $type $(<$lt>)? {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($type::$variant(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($type::$variant(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($type::$variant(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_read!(ClientStream { Plain, Tls });
delegate_write!(ClientStream { Plain, Tls });
delegate_read!(UpstreamStream { Tcp, Unix, Tls });
delegate_write!(UpstreamStream { Tcp, Unix, Tls });
delegate_read!(ClientReader<'a> { Plain, Tls });
delegate_write!(ClientWriter<'a> { Plain, Tls });
delegate_read!(UpstreamReader<'a> { Tcp, Unix, Tls });
delegate_write!(UpstreamWriter<'a> { Tcp, Unix, Tls });
