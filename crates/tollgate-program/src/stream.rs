//! A served connection's byte stream: the client's socket ([`ClientIo`]), plain or under TLS, so
//! that one accept loop and one connection task serve both.
//!
//! Under TLS the first bytes of the HTTP exchange cannot be peeked at on the socket, as the plain
//! path does to tell HTTP/1 from HTTP/2 in time: they are read (within the same deadline) and
//! replayed to hyper from [`Stream::Tls`]'s `replay` buffer.

use crate::client_io::ClientIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The client's socket, with or without TLS.
pub(crate) enum Stream {
    Plain(ClientIo<TcpStream>),
    Tls {
        tls: Box<TlsStream<ClientIo<TcpStream>>>,
        /// Bytes already read from `tls`, handed out before any more is read.
        replay: Vec<u8>,
    },
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Stream::Tls { tls, replay } => {
                if replay.is_empty() {
                    return Pin::new(tls.as_mut()).poll_read(cx, buf);
                }
                let n = replay.len().min(buf.remaining());
                buf.put_slice(&replay[..n]);
                replay.drain(..n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Stream::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(io) => io.is_write_vectored(),
            Stream::Tls { tls, .. } => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_flush(cx),
            Stream::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Stream::Tls { tls, .. } => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
