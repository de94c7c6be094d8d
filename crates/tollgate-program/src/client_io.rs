//! A client connection's socket as the servers use it: it holds the connection's slot for as long
//! as the socket lives, and fails a write that the client leaves blocked too long.
//!
//! Both matter once a connection stops being an ordinary request/response exchange. hyper hands
//! an upgraded connection (a WebSocket tunnel) over as this same socket, so the slot, and with it
//! `max_connections`, covers tunnels until they close. And a client that stops reading its
//! responses leaves hyper's writes pending for ever: nothing in hyper times them, so such clients
//! could hold every slot. Here a write (or flush) that makes no progress for `send_timeout` ends
//! with [`std::io::ErrorKind::TimedOut`], which closes the connection. As with nginx's
//! `send_timeout`, the clock runs between two writes that made progress, not over the whole
//! response: a client that reads slowly but steadily is served.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// A client's socket with its connection slot and a send timeout.
#[derive(Debug)]
pub struct ClientIo<T> {
    io: T,
    /// Released when the socket is dropped: after the response, or after an upgraded tunnel.
    _slot: Option<OwnedSemaphorePermit>,
    send_timeout: Duration,
    /// Armed when a write is first left pending; disarmed by any write that makes progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> ClientIo<T> {
    /// Wraps `io`, holding `slot` until it is dropped.
    pub fn new(io: T, slot: Option<OwnedSemaphorePermit>, send_timeout: Duration) -> Self {
        ClientIo {
            io,
            _slot: slot,
            send_timeout,
            stalled: None,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// What a pending write means: pending still, or (past the timeout) a timed-out error.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let send_timeout = self.send_timeout;
        let stalled = self.stalled.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(Instant::now() + send_timeout))
        });
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing within the send timeout",
        )))
    }

    /// Passes on a write's result, disarming the timer when it made progress.
    fn progress<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ClientIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClientIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(cx, polled)
    }
}
