//! Forwarding a request to an upstream and its response back: pooled connections ([`pool`]),
//! bodies streamed both ways, hop-by-hop headers removed, upgrades (WebSocket) spliced
//! after the 101, and upstream failures answered 502 (unreachable) or 504 (no response head in
//! time) with a generic body.

use crate::response::{self, GatewayBody};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::UpstreamConfig;

mod pool;

use pool::Pool;
pub(crate) use pool::set_worker;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
/// `keep-alive` and `proxy-connection` have no constant in `http`.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `name` is owned by HTTP or by the gateway, so that it may not carry claims.
pub(crate) fn is_reserved(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || [
            &http::header::AUTHORIZATION,
            &HOST,
            &CONTENT_LENGTH,
            &http::header::CONTENT_TYPE,
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &crate::gateway::X_REQUEST_ID,
        ]
        .contains(&name)
}

/// The client's IP address as `X-Forwarded-For` carries it: made once per connection, not per
/// request.
#[derive(Debug, Clone)]
pub(crate) struct PeerIp(HeaderValue);

impl PeerIp {
    pub(crate) fn new(peer: SocketAddr) -> Self {
        // An IP address in text is always a valid header value.
        PeerIp(
            HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        )
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
}

impl UpstreamError {
    pub(crate) fn label(self) -> &'static str {
        match self {
            UpstreamError::Down => "unreachable",
            UpstreamError::Slow => "timeout",
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
    /// `Host` for HTTP/1.1 requests: the upstream URL's authority.
    host: HeaderValue,
    response_timeout: Duration,
    pool: Arc<Pool>,
}

impl Upstream {
    /// Builds the pool (one part per worker thread); connects lazily.
    pub(crate) fn new(config: &UpstreamConfig, workers: usize) -> Self {
        let base_path = config.url.path().trim_end_matches('/').to_owned();
        // Validated by the configuration: an http URL with a host.
        let authority = config
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("localhost"));
        let port = authority.port_u16().unwrap_or(80);
        let address = format!("{}:{port}", authority.host());
        Upstream {
            name: config.name.clone(),
            scheme: config.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            host: HeaderValue::from_str(authority.as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            authority,
            base_path,
            h2c: config.h2c,
            response_timeout: config.response_timeout,
            pool: Arc::new(Pool::new(
                address,
                config.h2c,
                config.connect_timeout,
                config.max_idle_connections,
                workers,
            )),
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

    /// Forwards `request` (already authorized, identity headers set) and returns the upstream's
    /// response with its body streaming, or the error it failed with.
    pub(crate) async fn forward(
        &self,
        mut request: Request<Incoming>,
        peer: &PeerIp,
    ) -> Result<Response<GatewayBody>, UpstreamError> {
        let upgrade = wants_upgrade(&request);
        let original_host = request.headers().get(HOST).cloned().or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
        let uri = self
            .uri_for(request.uri())
            .map_err(|_| UpstreamError::Down)?;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        let keep_te_trailers = headers
            .get(TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
        remove_hop_by_hop(headers);
        if keep_te_trailers {
            // gRPC servers require `te: trailers`, the one TE value HTTP/2 allows.
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        if let Some(protocol) = &upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol.clone());
        }
        append_forwarded_for(headers, peer);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        if let Some(host) = original_host {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        // The upstream's own authority: from the URI for HTTP/2, `Host` for HTTP/1.
        headers.remove(HOST);
        if self.h2c {
            *request.version_mut() = Version::HTTP_2;
        } else {
            request.headers_mut().insert(HOST, self.host.clone());
            *request.version_mut() = Version::HTTP_11;
        }
        let sent = tokio::time::timeout(self.response_timeout, self.pool.send(request)).await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
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
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(splice(client_upgrade, upstream_upgrade));
                let (parts, _) = response.into_parts();
                return Ok(Response::from_parts(parts, response::empty()));
            }
            // A 101 nobody asked for cannot be relayed.
            return Err(UpstreamError::Down);
        }
        remove_hop_by_hop(response.headers_mut());
        Ok(response.map(BodyExt::boxed))
    }
}

/// The protocol a request asks to upgrade to (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
fn wants_upgrade<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| request.headers().get(UPGRADE).cloned())
        .flatten()
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections until
/// either side closes.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(
            bytes_up = up,
            bytes_down = down,
            "upgraded connection closed"
        ),
        Err(error) => tracing::debug!(%error, "upgraded connection failed"),
    }
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // What `Connection` names beyond the standard hop-by-hop headers: usually nothing (it says
    // `keep-alive`, `close` or `upgrade`), so usually no allocation.
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.is_empty()
                || ["keep-alive", "close", "upgrade"]
                    .iter()
                    .any(|t| token.eq_ignore_ascii_case(t))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                listed.push(name);
            }
        }
    }
    for name in listed.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// Appends the peer to the client's `X-Forwarded-For` (its first line), or starts one with it
/// when the client sent none, or one that is not readable text.
fn append_forwarded_for(headers: &mut HeaderMap, peer: &PeerIp) {
    let value = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|previous| previous.to_str().ok())
        .and_then(|previous| {
            let ip = peer.0.to_str().ok()?;
            HeaderValue::from_str(&format!("{previous}, {ip}")).ok()
        })
        .unwrap_or_else(|| peer.0.clone());
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
