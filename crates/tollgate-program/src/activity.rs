//! What an HTTP/2 connection's requests and responses are doing, for the watchdog of the accept
//! loop ([`crate::connection`]).
//!
//! HTTP/2 escapes the two timers that bound an HTTP/1.1 connection. hyper times the gap between
//! HTTP/1 requests (`header_read_timeout`), not between HTTP/2 ones, so a client that opens a
//! connection, sends a request and then only answers pings would keep its slot for ever. And a
//! client that grants no flow-control window never leaves a write pending ([`ClientIo`] sees
//! nothing): hyper simply stops asking the response body for data, and whatever feeds that body
//! (an upstream connection, in the gateway) is held as long as the client likes.
//!
//! So each response body is [`Watched`]: it notes when it has handed out data that the client has
//! not yet made room for (the body was not asked again), and each request notes when it started.
//! The accept loop closes an HTTP/2 connection gracefully once no request has started for
//! `header_read_timeout` (in-flight streams finish), and at once when any one response has
//! waited `send_timeout` for a client that takes nothing (per response: a client reading one
//! stream cannot keep the others it never reads alive). A stream is asked for data a chunk at a
//! time, so over HTTP/2 a client must take each chunk (up to 16 KiB) within `send_timeout`.
//!
//! [`ClientIo`]: crate::client_io::ClientIo

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// One connection's record.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    /// Milliseconds since `started` when the last request started.
    last_request: AtomicU64,
    /// Each live response body's "waiting for the client since" (milliseconds since
    /// `started`; [`NOT_WAITING`] when it is not): per body, so that a client reading one stream
    /// cannot keep others it never reads alive.
    bodies: Mutex<Vec<Weak<AtomicU64>>>,
    /// Requests whose response head is not made yet (see [`Pending`]).
    pending: AtomicUsize,
}

/// A request of the connection whose response head is not made yet: counted by its
/// [`Activity`] until dropped.
#[derive(Debug)]
pub(crate) struct Pending(Arc<Activity>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A body's "waiting since" when it is not waiting.
const NOT_WAITING: u64 = u64::MAX;

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            started: Instant::now(),
            last_request: AtomicU64::new(0),
            bodies: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
        })
    }

    /// A request started, pending until the returned guard is dropped (once its response body
    /// is [`Watched`], which keeps the connection busy in turn).
    pub(crate) fn start(self: &Arc<Self>) -> Pending {
        self.request();
        self.pending.fetch_add(1, Ordering::Relaxed);
        Pending(self.clone())
    }

    /// Whether a request is under way: waiting for its response head, or its body still being
    /// sent.
    pub(crate) fn busy(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
            || self
                .bodies
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .any(|body| body.strong_count() > 0)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request started.
    pub(crate) fn request(&self) {
        self.last_request.store(self.now(), Ordering::Relaxed);
    }

    /// How long since the last request started.
    pub(crate) fn since_request(&self) -> Duration {
        Duration::from_millis(
            self.now()
                .saturating_sub(self.last_request.load(Ordering::Relaxed)),
        )
    }

    /// How long the response that has waited longest for a client that takes nothing has
    /// waited, if one is waiting. Forgets the bodies that are gone.
    pub(crate) fn stalled_for(&self) -> Option<Duration> {
        let now = self.now();
        let mut bodies = self
            .bodies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bodies.retain(|body| body.strong_count() > 0);
        bodies
            .iter()
            .filter_map(Weak::upgrade)
            .map(|since| since.load(Ordering::Relaxed))
            .filter(|since| *since != NOT_WAITING)
            .min()
            .map(|since| Duration::from_millis(now.saturating_sub(since)))
    }

    /// A new body's clock, registered for [`stalled_for`](Self::stalled_for).
    fn register(&self) -> Arc<AtomicU64> {
        let since = Arc::new(AtomicU64::new(NOT_WAITING));
        self.bodies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::downgrade(&since));
        since
    }
}

/// Since when a body has been waiting for the client, in its connection's [`Activity`]; the
/// entry goes with the body (a stream the client reset, a connection closed).
#[derive(Debug)]
struct Waiting {
    clock: Option<(Arc<Activity>, Arc<AtomicU64>)>,
    waiting: bool,
}

impl Waiting {
    fn set(&mut self, waiting: bool) {
        if let Some((activity, since)) = &self.clock
            && waiting != self.waiting
        {
            let value = if waiting { activity.now() } else { NOT_WAITING };
            since.store(value, Ordering::Relaxed);
            self.waiting = waiting;
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that tells its connection's [`Activity`] when it waits for the client
    /// (HTTP/2); with no activity (HTTP/1.1, timed by the socket) it is its inner body.
    #[derive(Debug)]
    pub(crate) struct Watched<B> {
        #[pin]
        inner: B,
        waiting: Waiting,
    }
}

impl<B> Watched<B> {
    /// Waits for the client from the start: hyper asks an HTTP/2 body for data only once the
    /// client's flow-control window has room.
    pub(crate) fn new(inner: B, activity: Option<Arc<Activity>>) -> Self {
        let mut waiting = Waiting {
            clock: activity.map(|activity| {
                let since = activity.register();
                (activity, since)
            }),
            waiting: false,
        };
        waiting.set(true);
        Watched { inner, waiting }
    }
}

impl<B: Body> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // Asked again: the client made room for what was handed out.
        this.waiting.set(false);
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.data_ref().is_some_and(Buf::has_remaining)
        {
            this.waiting.set(true);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
