//! Forwarding a request to an upstream and its response back: pooled connections ([`pool`]),
//! bodies streamed both ways, hop-by-hop headers removed from the response (the request's were
//! removed before anything else, [`crate::headers`]), allowed upgrades (WebSocket) spliced
//! after the 101 until either side closes or the tunnel idles, the response in the client's
//! HTTP/1.1 whatever version the upstream spoke, and upstream failures answered 502
//! (unreachable) or 504 (no response head in time) with a generic body; a request whose own
//! body is malformed is the client's fault, not the upstream's.

use crate::headers::{
    Hop, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, remove_hop_by_hop,
};
use crate::response::{self, GatewayBody};
use http::header::{CONNECTION, HOST, TE, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::UpstreamConfig;

mod client_body;
mod pool;

use client_body::{BodyTimedOut, ClientBody};
use pool::Pool;
pub(crate) use pool::set_worker;

/// The client's IP address as `X-Forwarded-For` carries it: made once per connection, not per
/// request.
#[derive(Debug, Clone)]
pub(crate) struct PeerIp {
    header: HeaderValue,
    ip: IpAddr,
}

impl PeerIp {
    pub(crate) fn new(peer: SocketAddr) -> Self {
        // An IP address in text is always a valid header value.
        PeerIp {
            header: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            ip: peer.ip(),
        }
    }

    /// The address (whose header the trusted-proxy checks judge).
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// Why an upstream gave no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// Could not connect (refused, unreachable, connect timeout) or the connection failed
    /// before a response head: 502.
    Down,
    /// No response head within the response timeout: 504.
    Slow,
    /// Not the upstream's failure: the client's request body was malformed (bad chunk framing,
    /// a chunk size past 64 bits) or cut short, so nothing could be forwarded: 400.
    ClientBody,
    /// Not the upstream's failure: the client stopped sending its request body for
    /// `client_body_timeout`: 408.
    ClientSlow,
}

impl UpstreamError {
    pub(crate) fn label(self) -> &'static str {
        match self {
            UpstreamError::Down => "unreachable",
            UpstreamError::Slow => "timeout",
            UpstreamError::ClientBody => "client_body",
            UpstreamError::ClientSlow => "client_slow",
        }
    }
}

/// One upstream: where it is and a pool of connections to it.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    name: String,
    scheme: Scheme,
    authority: Authority,
    /// A path the upstream's URL carried, put before every request path (no trailing `/`).
    base_path: String,
    h2c: bool,
    /// `X-Forwarded-Proto`: `https` when the gateway's own listener serves TLS.
    forwarded_proto: HeaderValue,
    /// `Host` for HTTP/1.1 requests: the upstream URL's authority.
    host: HeaderValue,
    response_timeout: Duration,
    tunnel_idle_timeout: Duration,
    client_body_timeout: Duration,
    pool: Arc<Pool>,
}

impl Upstream {
    /// Builds the pool (one part per worker thread); connects lazily. `listener_tls`: whether
    /// clients reach the gateway over TLS (what `X-Forwarded-Proto` tells the upstream).
    pub(crate) fn new(
        config: &UpstreamConfig,
        workers: usize,
        limits: &crate::config::Limits,
        listener_tls: bool,
    ) -> Self {
        let base_path = config.url.path().trim_end_matches('/').to_owned();
        // Validated by the configuration: an http URL with a host.
        let authority = config
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("localhost"));
        let scheme = config.url.scheme().cloned().unwrap_or(Scheme::HTTP);
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTPS { 443 } else { 80 });
        let address = format!("{}:{port}", authority.host());
        let pool = Arc::new(Pool::new(
            address,
            pool::Protocol::new(config.h2c, config.tls.clone(), authority.clone()),
            config.connect_timeout,
            config.max_idle_connections,
            workers,
        ));
        Upstream {
            name: config.name.clone(),
            scheme,
            host: HeaderValue::from_str(authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            authority,
            base_path,
            h2c: config.h2c,
            forwarded_proto: HeaderValue::from_static(if listener_tls { "https" } else { "http" }),
            response_timeout: config.response_timeout,
            tunnel_idle_timeout: limits.tunnel_idle_timeout,
            client_body_timeout: limits.client_body_timeout,
            pool,
        }
    }

    /// Drops idle connections that expired or closed.
    pub(crate) fn purge_idle(&self) {
        self.pool.purge();
    }

    /// The upstream's configured name (a metrics label).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The request's URI for the upstream: origin-form (`/path?query`) for HTTP/1.1, absolute
    /// for HTTP/2; the base path put in front.
    fn uri_for(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let pq = match uri.path_and_query() {
            // An empty target (`http://a#...` in absolute form) is `/`, as it was routed.
            Some(pq) if !pq.as_str().starts_with('/') => {
                PathAndQuery::try_from(format!("{}/{}", self.base_path, pq.as_str()))?
            }
            Some(pq) if self.base_path.is_empty() => pq.clone(),
            pq => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{pq}", self.base_path))?
            }
        };
        if self.h2c {
            Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(pq)
                .build()
        } else {
            Ok(Uri::from(pq))
        }
    }

    /// Forwards `request` (already authorized, its hop-by-hop headers taken into `hop`,
    /// identity headers set) and returns the upstream's response with its body streaming, or
    /// the error it failed with.
    pub(crate) async fn forward(
        &self,
        mut request: Request<Incoming>,
        peer: &PeerIp,
        hop: &Hop,
    ) -> Result<Response<GatewayBody>, UpstreamError> {
        // The authority the client named: the request target's (absolute-form, or HTTP/2's
        // `:authority`), which RFC 9112 §3.2.2 and RFC 9113 §8.3.1 put before `Host`, else
        // `Host`. Only a valid authority is passed on; anything else (`a b`,
        // `user@evil.example`) would be reflected to the upstream: it gets its own instead.
        let forwarded_host = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| request.headers().get(HOST).cloned())
            .filter(|host| is_authority(host.as_bytes()))
            .unwrap_or_else(|| self.host.clone());
        let from_h2 = request.version() == Version::HTTP_2;
        let client_upgrade = hop
            .upgrade
            .as_ref()
            .map(|_| hyper::upgrade::on(&mut request));
        let uri = self
            .uri_for(request.uri())
            .map_err(|_| UpstreamError::Down)?;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        if hop.te_trailers {
            // gRPC servers require `te: trailers`, the one TE value HTTP/2 allows.
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(protocol) = &hop.upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol.clone());
        }
        append_forwarded_for(headers, peer);
        headers.insert(X_FORWARDED_PROTO.clone(), self.forwarded_proto.clone());
        headers.insert(X_FORWARDED_HOST.clone(), forwarded_host);
        // The upstream's own authority: from the URI for HTTP/2, `Host` for HTTP/1.
        headers.remove(HOST);
        if self.h2c {
            *request.version_mut() = Version::HTTP_2;
        } else {
            if from_h2 {
                join_cookie_crumbs(request.headers_mut());
            }
            request.headers_mut().insert(HOST, self.host.clone());
            *request.version_mut() = Version::HTTP_11;
        }
        let (parts, body) = request.into_parts();
        let (body, body_sent) = ClientBody::new(body, self.client_body_timeout);
        let request = Request::from_parts(parts, body);
        // `response_timeout` runs from when the request, body included, has been sent: an
        // upload may take longer than it without anyone being slow.
        let send = self.pool.send(request);
        let sent = match body_sent {
            None => tokio::time::timeout(self.response_timeout, send).await,
            Some(body_sent) => {
                let mut send = std::pin::pin!(send);
                tokio::select! {
                    response = &mut send => Ok(response),
                    () = async {
                        let _ = body_sent.await;
                        tokio::time::sleep(self.response_timeout).await;
                    } => tokio::time::timeout(Duration::ZERO, send).await,
                }
            }
        };
        let mut response = match sent {
            Ok(Ok(response)) => response,
            // hyper says "user body" when the request body it was sending failed: that body is
            // the client's, read as it streams.
            Ok(Err(error)) if client_body_timed_out(&error) => {
                tracing::debug!(upstream = %self.name, "the client stopped sending its request body");
                return Err(UpstreamError::ClientSlow);
            }
            Ok(Err(error)) if client_body_failed(&error) => {
                tracing::debug!(upstream = %self.name, error = %error_chain(&error), "the client's request body failed");
                return Err(UpstreamError::ClientBody);
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream = %self.name, error = %error_chain(&error), "upstream request failed");
                return Err(UpstreamError::Down);
            }
            Err(_) => {
                tracing::warn!(upstream = %self.name, timeout = ?self.response_timeout, "upstream sent no response head in time");
                return Err(UpstreamError::Slow);
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let (Some(client_upgrade), Some(offered)) = (client_upgrade, &hop.upgrade)
                && was_offered(offered, response.headers().get(UPGRADE))
            {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(splice(
                    client_upgrade,
                    upstream_upgrade,
                    self.tunnel_idle_timeout,
                ));
                let (parts, _) = response.into_parts();
                return Ok(Response::from_parts(parts, response::empty()));
            }
            // A 101 nobody asked for, or to a protocol the client did not offer, cannot be
            // relayed.
            tracing::warn!(upstream = %self.name, "upstream switched to a protocol that was not offered");
            return Err(UpstreamError::Down);
        }
        remove_hop_by_hop(response.headers_mut());
        // The client is answered in HTTP/1.1 (and kept alive) whatever the upstream spoke: an
        // HTTP/1.0 upstream's version would otherwise close every client connection.
        *response.version_mut() = Version::HTTP_11;
        Ok(response.map(BodyExt::boxed))
    }
}

/// HTTP/2 lets a client split `Cookie` into several fields; an HTTP/1.1 upstream must get one,
/// joined with `"; "` (RFC 9113 §8.2.3), not several lines it would join with `,`.
fn join_cookie_crumbs(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(http::header::COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let joined: Vec<u8> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(http::header::COOKIE, value);
    }
}

/// Whether `host` is an authority a client could mean (`host[:port]`), and not something an
/// upstream would misread (`a b`, `user@evil.example`, a path).
fn is_authority(host: &[u8]) -> bool {
    !host.is_empty()
        && !host.contains(&b'@')
        && Authority::try_from(host).is_ok_and(|a| a.as_str().len() == host.len())
}

/// Whether the protocol(s) of an upstream's 101 are among those the client offered.
fn was_offered(offered: &HeaderValue, chosen: Option<&HeaderValue>) -> bool {
    let tokens = |v: &HeaderValue| -> Vec<String> {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let offered = tokens(offered);
    chosen.is_some_and(|chosen| {
        let chosen = tokens(chosen);
        !chosen.is_empty() && chosen.iter().all(|c| offered.contains(c))
    })
}

/// Whether hyper failed because the client sent nothing of its body for the timeout.
fn client_body_timed_out(error: &pool::SendError) -> bool {
    let pool::SendError::Request(error) = error else {
        return false;
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<BodyTimedOut>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether hyper failed because the request body it was sending (the client's) failed.
fn client_body_failed(error: &pool::SendError) -> bool {
    matches!(error, pool::SendError::Request(e) if e.is_user())
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections until
/// either side closes, or neither has sent anything for `idle_timeout`. (The client's side also
/// holds its connection slot until then, and times out writes it does not read: see
/// `tollgate_program::client_io`.)
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle_timeout: Duration,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let started = tokio::time::Instant::now();
    let last_read = Arc::new(AtomicU64::new(0));
    let mut client = Metered::new(TokioIo::new(client), started, last_read.clone());
    let mut upstream = Metered::new(TokioIo::new(upstream), started, last_read.clone());
    let idle = async {
        loop {
            let last = started + Duration::from_millis(last_read.load(Ordering::Relaxed));
            let deadline = last + idle_timeout;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((up, down)) => tracing::debug!(
                bytes_up = up,
                bytes_down = down,
                "upgraded connection closed"
            ),
            Err(error) => tracing::debug!(%error, "upgraded connection failed"),
        },
        () = idle => tracing::debug!(?idle_timeout, "upgraded connection closed: idle"),
    }
}

/// One side of a tunnel, noting when it last delivered bytes (milliseconds since `started`) in
/// the tunnel's shared clock.
struct Metered<T> {
    io: T,
    started: tokio::time::Instant,
    last_read: Arc<AtomicU64>,
}

impl<T> Metered<T> {
    fn new(io: T, started: tokio::time::Instant, last_read: Arc<AtomicU64>) -> Self {
        Metered {
            io,
            started,
            last_read,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Metered<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_read.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Appends the peer to the client's `X-Forwarded-For` (its first line), or starts one with it
/// when the client sent none, or one that is not readable text.
fn append_forwarded_for(headers: &mut HeaderMap, peer: &PeerIp) {
    let value = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|previous| previous.to_str().ok())
        .and_then(|previous| {
            let ip = peer.header.to_str().ok()?;
            HeaderValue::from_str(&format!("{previous}, {ip}")).ok()
        })
        .unwrap_or_else(|| peer.header.clone());
    // `insert` replaces every line the client sent.
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

/// hyper's message is the error's kind; the cause is further down the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
