//! Connections to one upstream, kept for reuse: HTTP/1.1 connections one request at a time
//! (idle ones on a stack, the most recently used first), or one shared HTTP/2 connection for an
//! `h2c` upstream.
//!
//! Each worker thread has its own part of the pool ([`set_worker`]): a connection's task runs on
//! the thread that opened it, and only that thread's requests use it, so that no request wakes
//! another thread.
//!
//! This is hyper's own connection API (`hyper::client::conn`) with the least around it. An
//! HTTP/1.1 connection goes back on the stack when the response body it carries has been read to
//! its end ([`Returning`]); a body dropped before its end takes its connection with it, so a
//! half-read response is never followed by another request on that connection. Idle connections
//! are dropped after the idle timeout, and beyond `max_idle`.

use super::client_body::ClientBody;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long an idle connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

thread_local! {
    /// The part of every pool this thread uses: 0 outside the worker threads.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Makes this thread use part `index` (1 to the worker count) of every pool.
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// Why no request could be sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (refused, unreachable, DNS, connect timeout).
    Connect(io::Error),
    /// The connection failed before a response head arrived.
    Request(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Request(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {
    // The message above already says the inner error's: the chain goes on with its cause.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => e.source(),
            SendError::Request(e) => std::error::Error::source(e),
        }
    }
}

/// The connections to one upstream.
#[derive(Debug)]
pub(crate) struct Pool {
    /// `host:port`, as `TcpStream::connect` takes it.
    address: String,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per part.
    max_idle: usize,
    h2c: bool,
    /// One per worker thread, and the first for any other thread.
    parts: Box<[Part]>,
}

#[derive(Debug, Default)]
struct Part {
    idle: Mutex<Vec<Idle>>,
    shared_h2: Mutex<Option<http2::SendRequest<ClientBody>>>,
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<ClientBody>,
    since: Instant,
}

impl Pool {
    /// A pool that connects lazily to `address` (`host:port`), keeping up to `max_idle` idle
    /// HTTP/1.1 connections in all, shared out over `workers` threads.
    pub(crate) fn new(
        address: String,
        h2c: bool,
        connect_timeout: Duration,
        max_idle: usize,
        workers: usize,
    ) -> Self {
        let workers = workers.max(1);
        Pool {
            address,
            connect_timeout,
            max_idle: max_idle.div_ceil(workers),
            h2c,
            parts: (0..=workers).map(|_| Part::default()).collect(),
        }
    }

    /// This thread's part.
    fn part(&self) -> &Part {
        let index = WORKER.with(Cell::get);
        // `parts` is never empty; a thread numbered beyond the workers shares the first.
        &self.parts[if index < self.parts.len() { index } else { 0 }]
    }

    /// Sends `request` on a pooled connection, or on a new one, and returns the response head
    /// with its body streaming. The request's URI must be origin-form for HTTP/1.1 and absolute
    /// for HTTP/2.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: Request<ClientBody>,
    ) -> Result<Response<Returning>, SendError> {
        // Connecting is rare and its future is large: it is boxed, so that the future of every
        // request (moved as a whole into hyper's dispatcher) stays small.
        if self.h2c {
            return Box::pin(self.send_h2(request)).await;
        }
        let mut request = request;
        // A reused connection can turn out closed before the request was written (the
        // upstream's keep-alive ended): hyper gives the request back, and it goes to the next
        // connection. A new connection is not retried.
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(sender) => (sender, true),
                None => (Box::pin(self.connect_h1()).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // After a 101 the connection belongs to the upgrade.
                    let back = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| (sender, self.clone()));
                    return Ok(response.map(|body| Returning { body, back }));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and not expired, once it is
    /// ready for a request.
    async fn checkout(&self) -> Option<http1::SendRequest<ClientBody>> {
        loop {
            let Idle { mut sender, since } = self.idle_stack().pop()?;
            if sender.is_closed() || since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            // Returned at its body's end: the connection is finishing that response and is
            // ready a moment later, or closed.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn idle_stack(&self) -> MutexGuard<'_, Vec<Idle>> {
        lock(&self.part().idle)
    }

    /// Puts a connection whose response was read to its end back on the stack.
    fn give_back(&self, sender: http1::SendRequest<ClientBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle_stack();
        // The oldest are at the bottom: expired ones go first, then, at the bound, the oldest.
        let expired = idle
            .iter()
            .take_while(|i| now.duration_since(i.since) > IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() >= self.max_idle && !idle.is_empty() {
            idle.remove(0);
        }
        if self.max_idle > 0 {
            idle.push(Idle { sender, since: now });
        }
    }

    /// Drops the idle connections that expired or closed (run from time to time, so that a
    /// quiet upstream's connections do not stay open).
    pub(crate) fn purge(&self) {
        for part in &self.parts {
            lock(&part.idle).retain(|i| !i.sender.is_closed() && i.since.elapsed() <= IDLE_TIMEOUT);
            let mut h2 = lock(&part.shared_h2);
            if h2.as_ref().is_some_and(http2::SendRequest::is_closed) {
                *h2 = None;
            }
        }
    }

    async fn tcp(&self) -> Result<TokioIo<TcpStream>, SendError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| SendError::Connect(io::Error::from(io::ErrorKind::TimedOut)))?
            .map_err(SendError::Connect)?;
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        Ok(TokioIo::new(stream))
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<ClientBody>, SendError> {
        let io = self.tcp().await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            // Upgrades: a 101 hands the connection to `hyper::upgrade::on`.
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    async fn send_h2(
        self: &Arc<Self>,
        request: Request<ClientBody>,
    ) -> Result<Response<Returning>, SendError> {
        let shared = lock(&self.part().shared_h2)
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match shared {
            Some(sender) => sender,
            None => {
                let io = self.tcp().await?;
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(SendError::Request)?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "upstream HTTP/2 connection ended");
                    }
                });
                *lock(&self.part().shared_h2) = Some(sender.clone());
                sender
            }
        };
        sender.ready().await.map_err(SendError::Request)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(SendError::Request)?;
        // HTTP/2 streams are independent: nothing to give back.
        Ok(response.map(|body| Returning { body, back: None }))
    }
}

/// Locks a part's list. The lists hold no invariant a panic could break.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An upstream's response body, which puts its HTTP/1.1 connection back in the pool once read
/// to its end.
#[derive(Debug)]
pub(crate) struct Returning {
    body: Incoming,
    back: Option<(http1::SendRequest<ClientBody>, Arc<Pool>)>,
}

impl Returning {
    fn done(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.give_back(sender);
        }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        // A body with nothing left (an empty one, or one whose last frame said so) is done even
        // if nobody polled it to `None`.
        if self.body.is_end_stream() {
            self.done();
        }
    }
}

impl Body for Returning {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.done(),
            // A failed body leaves its connection unusable: it is dropped.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
