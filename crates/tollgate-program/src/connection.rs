//! What one connection may cost before it has sent a request: the limits every tollgate listener
//! applies, and the wait for the first bytes that hyper does not time.
//!
//! hyper's `http1::Builder::header_read_timeout` starts its timer only once hyper-util's protocol
//! detection (`auto::Builder`) has read the first bytes, and that detection has no timer: a
//! connection that sends nothing, or part of the HTTP/2 preface, would otherwise stay open for
//! ever. [`first_bytes`] is that missing timer; [`serve_connections`] is the accept loop that
//! applies all of it, to plain connections and to TLS ones alike (a [`Listener`] with a
//! [`TlsAcceptor`]): under TLS the same deadline covers the handshake, the first bytes and the
//! first request head.

use crate::activity::{Activity, Watched};
use crate::client_io::ClientIo;
use crate::stream::Stream;
use crate::tls::TlsAcceptor;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tollgate_core::ClientCertificate;

/// A listening socket, and the TLS its connections are served with, if any.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Connections accepted on `tcp`, under TLS with `tls`, or plain.
    pub fn new(tcp: TcpListener, tls: Option<TlsAcceptor>) -> Self {
        Listener { tcp, tls }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Its TLS, if it serves TLS.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }
}

impl From<TcpListener> for Listener {
    /// Plain connections.
    fn from(tcp: TcpListener) -> Self {
        Listener { tcp, tls: None }
    }
}

/// What a connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accepting a connection to its complete first request head (and from the end of a
    /// response to the next complete head).
    pub header_read_timeout: Duration,
    /// Connections served at once, upgraded ones (WebSocket tunnels) included; more wait in
    /// the kernel's listen backlog.
    pub max_connections: usize,
    /// How long a write to the client may stay blocked (a client that does not read) before the
    /// connection is closed. See [`ClientIo`].
    pub send_timeout: Duration,
}

impl Default for Limits {
    /// 10 s to send a request head, 512 connections, 30 s for a blocked write.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// How often an HTTP/2 connection's [`Activity`] is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The bytes every HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits, until `deadline`, for the peer to send enough to tell HTTP/1 from HTTP/2: a byte that
/// departs from the HTTP/2 preface, or the whole preface. Nothing is consumed (it peeks).
///
/// `false` when the peer closed, failed, or ran out of time: close the connection.
pub async fn first_bytes(stream: &TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return false,
        };
        if n == 0 {
            return false;
        }
        if n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return true;
        }
        // Part of the preface: `peek` would return at once again, so wait a little for the rest.
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves once `stop` turns true.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Whether the connection starts with the HTTP/2 preface ([`first_bytes`] has waited for it).
async fn is_h2(stream: &TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    matches!(stream.peek(&mut buf).await, Ok(n) if n == buf.len() && buf == *H2_PREFACE)
}

/// Serves connections accepted on `listener` with `builder` (HTTP/1.1 and HTTP/2, upgrades
/// allowed; under TLS, HTTP/2 when ALPN chose `h2`, otherwise HTTP/1.1) until `stop` turns
/// true, under `limits`: at most `max_connections` at once, tunnels of upgraded connections
/// included (beyond it, one accepted connection waits unserved and the rest wait in the
/// kernel's backlog); each must send a complete request head (or, for HTTP/2, its first
/// request) within `header_read_timeout`, measured from when it is served (the TLS handshake
/// included), idle connections included (an HTTP/2 connection that starts no new request for
/// that long is closed gracefully); and a write the client leaves blocked for `send_timeout`
/// closes it, as does an HTTP/2 response the client grants no room for that long.
/// `service_for` makes each connection's service from the peer's address. Connections are
/// watched by `graceful`, so that the caller can drain them after `stop`.
///
/// Under TLS, when the client presented a certificate (`client_auth`), every request of the
/// connection carries it as a [`ClientCertificate`] extension; nothing else inserts one.
pub async fn serve_connections<F, S, B>(
    listener: impl Into<Listener>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    stop: watch::Receiver<bool>,
    graceful: &GracefulShutdown,
    service_for: F,
) where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    serve_connections_sharing(
        listener,
        builder,
        limits,
        slots,
        stop,
        graceful,
        service_for,
    )
    .await;
}

/// [`serve_connections`] with the connection slots given: several accept loops (one per thread,
/// each on its own listening socket) then share one `max_connections` bound. `slots` should
/// hold `limits.max_connections` permits; `limits.max_connections` is only reported.
pub async fn serve_connections_sharing<F, S, B>(
    listener: impl Into<Listener>,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    graceful: &GracefulShutdown,
    service_for: F,
) where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The deadlines below need hyper's timer, whatever the caller configured.
    let mut builder = builder;
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let Listener { tcp: listener, tls } = listener.into();
    let mut warned_full: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopping(&mut stop) => break,
        };
        // Then a free slot: at the bound this connection waits, unserved, and the ones after it
        // wait in the kernel's backlog. (Taking the slot before the accept would let a loop
        // that has no connection hold a slot while another loop's socket has one waiting.)
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait"
                    );
                    warned_full = Some(Instant::now());
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = stopping(&mut stop) => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let inner = service_for(peer);
        let watcher = graceful.watcher();
        let stop = stop.clone();
        // The socket holds the slot: an upgraded connection keeps it until the tunnel closes.
        let stream = ClientIo::new(stream, Some(permit), limits.send_timeout);
        tokio::spawn(serve_connection(
            stream,
            tls.clone(),
            peer,
            inner,
            builder,
            limits,
            watcher,
            stop,
        ));
    }
}

/// A connection ready for hyper: its handshake (under TLS) done, and its first bytes in.
struct Opened {
    stream: Stream,
    /// It starts with the HTTP/2 preface.
    h2: bool,
    /// The client's certificate, verified in the handshake.
    certificate: Option<ClientCertificate>,
}

/// The handshake (under `tls`) and the first bytes, by `deadline`; `None` when the connection
/// is to be closed.
async fn open(
    stream: ClientIo<TcpStream>,
    tls: Option<&TlsAcceptor>,
    peer: SocketAddr,
    deadline: Instant,
) -> Option<Opened> {
    let Some(acceptor) = tls else {
        if !first_bytes(stream.get_ref(), deadline).await {
            return None;
        }
        let h2 = is_h2(stream.get_ref()).await;
        return Some(Opened {
            stream: Stream::Plain(stream),
            h2,
            certificate: None,
        });
    };
    let (mut tls, by_ca) = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok((tls, by_ca))) => (Box::new(tls), by_ca),
        Ok(Err(e)) => {
            // Debug, not warn: scanners and clients that distrust the certificate fail here.
            tracing::debug!(%peer, error = %e, "closed: TLS handshake failed");
            return None;
        }
        Err(_) => {
            acceptor.handshake_failed();
            tracing::debug!(%peer, "closed: no TLS handshake within the header read timeout");
            return None;
        }
    };
    // The handshake has checked the client's proof of its key. Only a certificate whose chain
    // the CA check passed is marked so: its names are the CA's word, which `tls_client_auth`
    // relies on; one accepted as self-signed (`self_signed_clients`) counts for its thumbprint.
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| {
            let certificate = ClientCertificate::from_der(cert.as_ref());
            if by_ca {
                certificate.verified_by_ca()
            } else {
                certificate
            }
        });
    let alpn_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let replay = first_bytes_read(&mut tls, deadline).await?;
    let h2 = replay == H2_PREFACE;
    // The version is the one ALPN chose (none: HTTP/1.1): a client that speaks the other one
    // is not served, rather than served by guess.
    if h2 != alpn_h2 {
        tracing::debug!(%peer, alpn_h2, "closed: the client spoke another HTTP version than ALPN chose");
        return None;
    }
    Some(Opened {
        stream: Stream::Tls { tls, replay },
        h2,
        certificate,
    })
}

/// [`first_bytes`] for a stream that cannot be peeked at (TLS): reads, until `deadline`, a byte
/// that departs from the HTTP/2 preface or the whole preface, and returns what it read (to be
/// replayed). `None` when the peer closed, failed, or ran out of time.
async fn first_bytes_read<R>(stream: &mut R, deadline: Instant) -> Option<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    while buf.len() < H2_PREFACE.len() && buf[..] == H2_PREFACE[..buf.len()] {
        let mut chunk = [0u8; H2_PREFACE.len()];
        let want = H2_PREFACE.len() - buf.len();
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return None,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// Serves one accepted connection (see [`serve_connections`] for what it must do in time), its
/// slot held by `stream`, until it ends or is closed; `watcher` keeps the caller's drain
/// waiting for it.
#[allow(
    clippy::too_many_arguments,
    reason = "one task's whole state, moved in at spawn"
)]
async fn serve_connection<S, B>(
    stream: ClientIo<TcpStream>,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    inner: S,
    mut builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
    mut stop: watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // From when the connection is served, accepted just before.
    let deadline = Instant::now() + limits.header_read_timeout;
    let opened = tokio::select! {
        opened = open(stream, tls.as_ref(), peer, deadline) => opened,
        () = stopping(&mut stop) => None,
    };
    let Some(Opened {
        stream,
        h2,
        certificate,
    }) = opened
    else {
        tracing::debug!(%peer, "closed: no request within the header read timeout");
        return;
    };
    // HTTP/2 connections are watched (see `crate::activity`); HTTP/1.1 ones are timed by
    // hyper and the socket.
    let activity = h2.then(Activity::new);
    let requested = Arc::new(AtomicBool::new(false));
    let seen = requested.clone();
    let watched = activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        if let Some(certificate) = &certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        let pending = watched.as_ref().map(Activity::start);
        let activity = watched.clone();
        let response = inner.call(request);
        async move {
            let response = response.await?;
            let response = response.map(|body| Watched::new(body, activity));
            // Its body now keeps the connection busy instead.
            drop(pending);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    // hyper's own timer starts now: give it what is left of the deadline.
    builder.http1().header_read_timeout(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    );
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    // When an idle HTTP/2 connection was asked to close (GOAWAY): hyper then waits for the
    // client's acknowledgement, which a client that says nothing never sends.
    let mut idle_since: Option<Instant> = None;
    let mut tick = tokio::time::interval_at(Instant::now() + WATCH_EVERY, WATCH_EVERY);
    let outcome = loop {
        tokio::select! {
            outcome = connection.as_mut() => break outcome,
            () = stopping(&mut stop), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            // hyper times HTTP/1 heads, not HTTP/2 ones: an HTTP/2 connection with no
            // request by the deadline is dropped here. (The guard was read when this
            // round began: a request may have come since.)
            () = tokio::time::sleep_until(deadline), if !requested.load(Ordering::Relaxed) => {
                if requested.load(Ordering::Relaxed) {
                    continue;
                }
                tracing::debug!(%peer, "closed: no request within the header read timeout");
                return;
            }
            _ = tick.tick(), if activity.is_some() => {
                let Some(activity) = &activity else { continue };
                if activity.stalled_for().is_some_and(|d| d >= limits.send_timeout) {
                    tracing::debug!(%peer, "closed: the client took no response data within the send timeout");
                    return;
                }
                if !draining && activity.since_request() >= limits.header_read_timeout {
                    tracing::debug!(%peer, "closing: no new request within the header read timeout");
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                    // With a request still under way, hyper finishes it and closes as before.
                    if !activity.busy() {
                        idle_since = Some(Instant::now());
                    }
                }
                // Asked to close while idle, and still idle: a well-behaved client has gone by
                // now; one that keeps the connection open past the header read timeout (plus a
                // tick) without a request holds a slot it has no use for.
                if idle_since.is_some_and(|at| at.elapsed() >= WATCH_EVERY) && !activity.busy() {
                    tracing::debug!(%peer, "closed: idle, and the client did not close after GOAWAY");
                    return;
                }
            }
        }
    };
    drop(watcher);
    if let Err(e) = outcome {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
