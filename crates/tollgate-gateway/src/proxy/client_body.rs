//! The client's request body on its way to the upstream: streamed as it arrives, but timed.
//!
//! A client that stops sending its body half-way would otherwise hold its connection, the
//! upstream connection and the upstream's request for as long as it likes (`header_read_timeout`
//! only times request heads). So a body that delivers nothing for `client_body_timeout` fails,
//! and the client is answered 408. And since an upload can take longer than the upstream's
//! `response_timeout` without anyone being slow, that timeout starts when the body has been sent
//! in full ([`ClientBody::sent`]), not when the request head was.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// The error a [`ClientBody`] fails with when the client sent nothing for the timeout.
#[derive(Debug)]
pub(crate) struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client sent no request body data within the client body timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

pin_project_lite::pin_project! {
    /// A request body: the client's, timed while it streams. Bodiless requests (most) carry no
    /// timer and allocate nothing.
    #[derive(Debug)]
    pub(crate) struct ClientBody {
        #[pin]
        inner: Incoming,
        watch: Option<Box<Watch>>,
    }
}

#[derive(Debug)]
struct Watch {
    idle: Pin<Box<Sleep>>,
    timeout: Duration,
    sent: Option<oneshot::Sender<()>>,
}

impl ClientBody {
    /// Wraps `inner`; for a body that is not empty, also returns what resolves once it has
    /// been read to its end (or failed).
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> (Self, Option<oneshot::Receiver<()>>) {
        if inner.is_end_stream() {
            return (ClientBody { inner, watch: None }, None);
        }
        let (sent, receiver) = oneshot::channel();
        let watch = Watch {
            idle: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            sent: Some(sent),
        };
        (
            ClientBody {
                inner,
                watch: Some(Box::new(watch)),
            },
            Some(receiver),
        )
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let Some(watch) = this.watch else {
            return polled.map_err(Into::into);
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                watch.idle.as_mut().reset(Instant::now() + watch.timeout);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(end) => {
                // The end, or the client's error: either way nothing more is coming.
                if let Some(sent) = watch.sent.take() {
                    let _ = sent.send(());
                }
                Poll::Ready(end.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(watch.idle.as_mut().poll(cx));
                watch.sent.take();
                Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
