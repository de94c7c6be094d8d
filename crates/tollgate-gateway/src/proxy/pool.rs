//! Connections to one upstream, kept for reuse: HTTP/1.1 connections one request at a time
//! (idle ones on a stack, the most recently used first), or one shared HTTP/2 connection for an
//! `h2c` upstream, or an `https://` upstream that picked `h2` by ALPN.
//!
//! An `https://` upstream's connections are TLS (the handshake within the connect timeout). The
//! protocol of each new connection is the upstream's choice; requests go on the kind of
//! connection the last one chose, so an upstream that speaks HTTP/2 is reached on one shared
//! connection per worker, and one that speaks HTTP/1.1 on pooled ones.
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
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tollgate_program::tls::client::{Connector, negotiated_h2};

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
    /// The TLS handshake failed (the certificate did not verify, no common protocol, the
    /// upstream wanted a client certificate), or did not end within the connect timeout.
    Tls(io::Error),
    /// The connection failed before a response head arrived.
    Request(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "cannot connect: {e}"),
            SendError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            SendError::Request(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {
    // The message above already says the inner error's: the chain goes on with its cause.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) | SendError::Tls(e) => e.source(),
            SendError::Request(e) => std::error::Error::source(e),
        }
    }
}

/// How an upstream is spoken to.
#[derive(Debug)]
pub(crate) struct Protocol {
    /// HTTP/2 with prior knowledge on plain TCP.
    h2c: bool,
    /// TLS (`https://`), with the authority HTTP/2 requests name.
    tls: Option<(Connector, Authority)>,
    /// Whether the last TLS connection made chose `h2` by ALPN.
    tls_h2: AtomicBool,
}

impl Protocol {
    /// `h2c` for an `http://` upstream, `tls` for an `https://` one at `authority`.
    pub(crate) fn new(h2c: bool, tls: Option<Connector>, authority: Authority) -> Self {
        Protocol {
            h2c,
            tls: tls.map(|c| (c, authority)),
            tls_h2: AtomicBool::new(false),
        }
    }

    /// Whether requests go on the shared HTTP/2 connection.
    fn h2(&self) -> bool {
        self.h2c || self.tls_h2.load(Ordering::Relaxed)
    }
}

/// A new connection, ready for requests.
enum Connected {
    H1(http1::SendRequest<ClientBody>),
    H2(http2::SendRequest<ClientBody>),
}

/// The connections to one upstream.
#[derive(Debug)]
pub(crate) struct Pool {
    /// `host:port`, as `TcpStream::connect` takes it.
    address: String,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per part.
    max_idle: usize,
    protocol: Protocol,
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
        protocol: Protocol,
        connect_timeout: Duration,
        max_idle: usize,
        workers: usize,
    ) -> Self {
        let workers = workers.max(1);
        Pool {
            address,
            connect_timeout,
            max_idle: max_idle.div_ceil(workers),
            protocol,
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
    /// with its body streaming. The request's URI must be absolute for an `h2c` upstream, and
    /// origin-form otherwise (made absolute here if an `https://` upstream speaks HTTP/2).
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: Request<ClientBody>,
    ) -> Result<Response<Returning>, SendError> {
        // Connecting is rare and its future is large: it is boxed, so that the future of every
        // request (moved as a whole into hyper's dispatcher) stays small. So is HTTP/2's, as it
        // was before TLS: HTTP/1.1 requests keep the smallest future.
        if self.protocol.h2() {
            let shared = lock(&self.part().shared_h2)
                .as_ref()
                .filter(|s| !s.is_closed())
                .cloned();
            return match shared {
                Some(sender) => Box::pin(self.send_h2(sender, request)).await,
                None => Box::pin(self.send_new(request)).await,
            };
        }
        let mut request = request;
        // A reused connection can turn out closed before the request was written (the
        // upstream's keep-alive ended): hyper gives the request back, and it goes to the next
        // connection. A new connection is not retried.
        loop {
            let Some(mut sender) = self.checkout().await else {
                return Box::pin(self.send_new(request)).await;
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.returning(response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Request(error.into_error())),
                },
            }
        }
    }

    /// Sends `request` on a new connection, which joins the pool.
    async fn send_new(
        self: &Arc<Self>,
        request: Request<ClientBody>,
    ) -> Result<Response<Returning>, SendError> {
        match self.connect().await? {
            Connected::H1(mut sender) => {
                let response = sender
                    .send_request(request)
                    .await
                    .map_err(SendError::Request)?;
                Ok(self.returning(response, sender))
            }
            Connected::H2(sender) => {
                *lock(&self.part().shared_h2) = Some(sender.clone());
                self.send_h2(sender, request).await
            }
        }
    }

    /// The response, with the HTTP/1.1 connection it came on to give back at its body's end.
    fn returning(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: http1::SendRequest<ClientBody>,
    ) -> Response<Returning> {
        // After a 101 the connection belongs to the upgrade.
        let back = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (sender, self.clone()));
        response.map(|body| Returning { body, back })
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

    /// A new connection: TCP, then TLS for an `https://` upstream (both within the connect
    /// timeout), then HTTP/1.1 or HTTP/2 as configured (`h2c`) or as the upstream chose (ALPN).
    async fn connect(&self) -> Result<Connected, SendError> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&self.address))
            .await
            .map_err(|_| SendError::Connect(io::Error::from(io::ErrorKind::TimedOut)))?
            .map_err(SendError::Connect)?;
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        let Some((connector, _)) = &self.protocol.tls else {
            return handshake(TokioIo::new(stream), self.protocol.h2c).await;
        };
        let stream = tokio::time::timeout_at(deadline, connector.connect(stream))
            .await
            .map_err(|_| {
                SendError::Tls(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "not done within the connect timeout",
                ))
            })?
            .map_err(SendError::Tls)?;
        let h2 = negotiated_h2(&stream);
        // Written only when the upstream changes its mind: read by every request.
        if self.protocol.tls_h2.load(Ordering::Relaxed) != h2 {
            self.protocol.tls_h2.store(h2, Ordering::Relaxed);
        }
        handshake(TokioIo::new(stream), h2).await
    }

    /// Sends `request` on the shared HTTP/2 connection `sender`. An `https://` upstream's
    /// request arrives in HTTP/1.1's form (origin-form, `Host`): it gets HTTP/2's here.
    async fn send_h2(
        &self,
        mut sender: http2::SendRequest<ClientBody>,
        request: Request<ClientBody>,
    ) -> Result<Response<Returning>, SendError> {
        let request = match &self.protocol.tls {
            Some((_, authority)) => as_h2(request, authority)?,
            None => request,
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

/// The HTTP/1.1 (or HTTP/2) handshake on a new connection; its task is spawned on this thread.
async fn handshake<IO>(io: TokioIo<IO>, h2: bool) -> Result<Connected, SendError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
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
        return Ok(Connected::H2(sender));
    }
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
    Ok(Connected::H1(sender))
}

/// An HTTP/1.1-form request in HTTP/2's: the absolute `https` URI at `authority`, no `Host`
/// (`:authority` says it).
fn as_h2(
    request: Request<ClientBody>,
    authority: &Authority,
) -> Result<Request<ClientBody>, SendError> {
    let (mut parts, body) = request.into_parts();
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(Scheme::HTTPS);
    uri.authority = Some(authority.clone());
    parts.uri = http::Uri::from_parts(uri)
        .map_err(|e| SendError::Connect(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    parts.version = http::Version::HTTP_2;
    parts.headers.remove(http::header::HOST);
    Ok(Request::from_parts(parts, body))
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
