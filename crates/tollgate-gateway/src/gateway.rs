//! The request path: the client's hop-by-hop headers and its copies of the gateway's own
//! headers removed ([`crate::headers`]), request id, forward-auth or proxy, path check and
//! route, the Layer (for protected routes), the route's requirements, the client's rate cap,
//! then the upstream or the forward-auth answer; and the metrics and log line of every request.
//!
//! A request for `[back_channel_logout]`'s path goes to the logout receiver
//! ([`crate::logout`]), and one for a `[[shared_signals]]` `push_path` to that transmitter's
//! receiver ([`crate::shared_signals`]), before anything else is looked at.
//!
//! Refusals the gateway makes itself:
//!
//! | situation | HTTP | gRPC |
//! |---|---|---|
//! | a path an upstream could read as another ([`crate::route::routable`]) | 400 | 3 |
//! | forward-auth call naming no original method or URI | 400 | 3 |
//! | conflicting or malformed method-override headers (`method_override = "judge"`) | 400 | 3 |
//! | a malformed or cut-short request body | 400 | 3 |
//! | no request body data for `client_body_timeout` | 408 | 4 |
//! | no route matches (or a forward-auth-only route is requested through the proxy) | 403 | 7 |
//! | token valid, but of an issuer the route does not list | 401 `invalid_token` "wrong issuer" (the Layer's answer to an unknown issuer) | 16 |
//! | token valid, but a scope is missing | 403 `insufficient_scope` (the Layer's shape) | 7 |
//! | token valid, but a role is missing or the tenant is not the route's | 403 | 7 |
//! | the client id's rate cap | 429 + `Retry-After` | 8 |
//! | upstream unreachable / no response head in time | 502 / 504 | 14 / 4 |
//!
//! Everything else about the token (400, 401, 503) is the Layer's answer, unchanged.

use crate::client_cert::ClientCertHeader;
use crate::config::Proxy;
use crate::forward_auth::{ForwardAuth, Original};
use crate::headers::{Hop, METHOD_OVERRIDE, MethodOverride, X_REQUEST_ID};
use crate::identity::IdentityHeaders;
use crate::limit::ClientRateLimit;
use crate::logout::LogoutEndpoint;
use crate::ops::metrics::{Metrics, Outcome};
use crate::proxy::{PeerIp, Upstream, UpstreamError};
use crate::response::{self, GatewayBody, grpc_content_type, refuse};
use crate::route::{Access, Denied, Route, RouteTable, routable};
use crate::shared_signals::SharedSignals;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::hash::Hasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tollgate_core::Claims;
use tollgate_layer::{
    DefaultRejection, OnRejection, Rejection, TokenError, ValidateBearer, VerifiedClaims,
};
use tower_service::Service;
use tracing::Instrument;

/// What the gateway shares between requests.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) routes: RouteTable,
    pub(crate) forward_auth: Option<ForwardAuth>,
    /// `[back_channel_logout]`: answered before any route.
    pub(crate) logout: Option<LogoutEndpoint>,
    /// `[[shared_signals]]` with push delivery: answered before any route.
    pub(crate) shared_signals: SharedSignals,
    pub(crate) identity: IdentityHeaders,
    pub(crate) proxy: Proxy,
    /// `[client_certificate]`: whose certificate header is believed; the header is always
    /// removed.
    pub(crate) client_cert: ClientCertHeader,
    pub(crate) upstreams: Vec<Upstream>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limiter: Option<Arc<ClientRateLimit>>,
    pub(crate) rejection: DefaultRejection,
}

/// Whether a request is proxied or is a forward-auth call about another request.
#[derive(Debug, Clone)]
enum Mode {
    Proxy,
    ForwardAuth,
}

/// What the route lookup decided, carried through the Layer in the request's extensions.
#[derive(Debug, Clone)]
struct Routed {
    route: Arc<Route>,
    mode: Mode,
    peer: PeerIp,
    /// What the client's hop-by-hop headers asked for that is carried on.
    hop: Hop,
}

/// The gateway's request service.
#[derive(Debug, Clone)]
pub(crate) struct Gateway {
    shared: Arc<Shared>,
    protected: ValidateBearer<Authorized, RecordRejection>,
}

impl Gateway {
    pub(crate) fn new(shared: Arc<Shared>, layer: tollgate_layer::ValidateBearerLayer) -> Self {
        let on_rejection = RecordRejection {
            inner: shared.rejection.clone(),
            metrics: shared.metrics.clone(),
        };
        let layer = layer.on_rejection(on_rejection);
        let protected = tower_layer::Layer::layer(
            &layer,
            Authorized {
                shared: shared.clone(),
            },
        );
        Gateway { shared, protected }
    }

    /// Answers one request from `peer`.
    pub(crate) async fn handle(
        self,
        peer: PeerIp,
        mut request: Request<Incoming>,
    ) -> Response<GatewayBody> {
        let started = Instant::now();
        // Before anything else, whatever path the request takes: the client's hop-by-hop
        // headers go (so that `Connection` can name none of the headers set below), and so do
        // its copies of the headers the gateway sets.
        let hop = crate::headers::take_hop_by_hop(
            request.version(),
            request.headers_mut(),
            &self.shared.proxy.upgrades,
        );
        // The client certificate a trusted proxy names, before its header goes with the rest.
        self.shared.client_cert.apply(peer.ip(), &mut request);
        crate::headers::strip_client_copies(
            request.headers_mut(),
            self.shared.identity.names(),
            self.shared.proxy.method_override,
            &self.shared.client_cert.name,
        );
        let request_id = request_id(request.headers());
        request
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        let span = tracing::info_span!(
            "request",
            id = request_id.to_str().unwrap_or(""),
            method = %request.method(),
            path = request.uri().path(),
        );
        let (route, mut response) = self
            .dispatch(peer, hop, request)
            .instrument(span.clone())
            .await;
        let outcome = response
            .extensions()
            .get::<Outcome>()
            .copied()
            .unwrap_or(Outcome::Forwarded);
        let elapsed = started.elapsed();
        self.shared.metrics.request(route, outcome, elapsed);
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                ?outcome,
                micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "answered"
            );
        });
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id);
        response
    }

    async fn dispatch(
        &self,
        peer: PeerIp,
        hop: Hop,
        mut request: Request<Incoming>,
    ) -> (Option<usize>, Response<GatewayBody>) {
        let shared = &self.shared;
        if let Some(logout) = &shared.logout
            && logout.matches(request.uri().path())
        {
            let response = logout.answer(request).await;
            return (None, with_outcome(response, Outcome::Logout));
        }
        if let Some(push) = shared.shared_signals.push_endpoint(request.uri().path()) {
            let response = crate::shared_signals::answer(push, request).await;
            return (None, with_outcome(response, Outcome::SharedSignals));
        }
        let grpc = grpc_content_type(request.headers());
        let bad_request = |reason: &str, text: &'static str| {
            shared.metrics.rejection(reason);
            let response = refuse(grpc.clone(), StatusCode::BAD_REQUEST, 3, text);
            (None, with_outcome(response, Outcome::NoRoute))
        };
        let (mode, method, target) = match &shared.forward_auth {
            Some(fa) if fa.matches(request.uri().path()) => match fa.original(&request) {
                Ok(Original { method, uri }) => (Mode::ForwardAuth, method, uri),
                Err(_) => {
                    return bad_request(
                        "bad_path",
                        "forward-auth request names no original method and URI",
                    );
                }
            },
            _ => (
                Mode::Proxy,
                request.method().clone(),
                request
                    .uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            ),
        };
        let Some(path) = routable(target.path()) else {
            return bad_request("bad_path", "request path cannot be routed");
        };
        if !is_judgeable(&method) {
            return bad_request("bad_method", "request method cannot be routed");
        }
        if matches!(mode, Mode::Proxy) && request.headers().get_all(HOST).iter().nth(1).is_some() {
            // RFC 9112 §3.2: which of two would the upstream take?
            return bad_request("bad_host", "more than one Host header");
        }
        let claimed = match shared.proxy.method_override {
            MethodOverride::Strip => None,
            MethodOverride::Judge => match claimed_method(request.headers()) {
                Ok(claimed) if claimed.as_ref().is_none_or(is_judgeable) => {
                    claimed.filter(|m| *m != method)
                }
                Ok(_) | Err(()) => {
                    return bad_request(
                        "bad_method_override",
                        "method-override headers are malformed or disagree",
                    );
                }
            },
        };
        let usable = |(_, route): &(usize, &Arc<Route>)| {
            matches!(mode, Mode::ForwardAuth) || route.upstream.is_some()
        };
        let found = shared.routes.find(&method, &path).filter(usable);
        // The upstream may act on the claimed method: the same route must allow it too.
        let found = match &claimed {
            None => found,
            Some(claimed) => found.filter(|(index, _)| {
                shared
                    .routes
                    .find(claimed, &path)
                    .is_some_and(|(other, _)| other == *index)
            }),
        };
        let Some((index, route)) = found else {
            shared.metrics.rejection("no_route");
            tracing::debug!(%method, path = %path, "no route");
            let response = refuse(grpc, StatusCode::FORBIDDEN, 7, "no route");
            return (None, with_outcome(response, Outcome::NoRoute));
        };
        let routed = Routed {
            route: route.clone(),
            mode,
            peer,
            hop,
        };
        let response = match routed.route.access {
            Access::Public => finish(shared, routed, None, request).await,
            Access::Protected(_) => {
                request.extensions_mut().insert(routed);
                let mut protected = self.protected.clone();
                // `Authorized` is always ready: this returns at once.
                let ready = std::future::poll_fn(|cx| protected.poll_ready(cx)).await;
                match ready {
                    Ok(()) => match protected.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    Err(never) => match never {},
                }
            }
        };
        (Some(index), response)
    }
}

/// Whether routes can judge `method` as the upstream will act on it: not `CONNECT` (the gateway
/// opens no tunnels), and no lower-case letter (`delete`, `Get`, `propfind`): routes listing
/// `DELETE` or `PROPFIND` would not match it, yet Werkzeug, Django and others upper-case the
/// method before acting on it.
fn is_judgeable(method: &Method) -> bool {
    *method != Method::CONNECT && !method.as_str().bytes().any(|b| b.is_ascii_lowercase())
}

/// The one method the method-override headers claim, if any: `Err` when a value is not a method
/// or two values differ (an upstream could honour either).
fn claimed_method(headers: &HeaderMap) -> Result<Option<Method>, ()> {
    let mut claimed: Option<Method> = None;
    for value in METHOD_OVERRIDE
        .iter()
        .flat_map(|name| headers.get_all(name))
    {
        let method = value
            .to_str()
            .ok()
            .map(str::trim)
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .ok_or(())?;
        match &claimed {
            Some(other) if *other != method => return Err(()),
            _ => claimed = Some(method),
        }
    }
    Ok(claimed)
}

fn with_outcome(mut response: Response<GatewayBody>, outcome: Outcome) -> Response<GatewayBody> {
    response.extensions_mut().insert(outcome);
    response
}

/// The request's id: the client's `x-request-id` if it is 1 to 128 characters of
/// `[A-Za-z0-9._:/+=-]`, otherwise a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            (1..=128).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"._:/+=-".contains(c))
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

thread_local! {
    /// This thread's request ids: 64 bits drawn from the standard library's randomly keyed
    /// hasher when the thread starts, and a count.
    static REQUEST_IDS: Cell<(u64, u64)> = Cell::new((
        std::hash::BuildHasher::build_hasher(&std::collections::hash_map::RandomState::new())
            .finish(),
        0,
    ));
}

/// A request id nobody sent: 22 base64url characters of the thread's 64 random bits and its
/// count, unique per thread and (with overwhelming odds) across threads and processes. Request
/// ids correlate logs; they are not secrets, so they need no cryptographic generator per request
/// (token ids do, and come from `tollgate_core::random`).
fn new_request_id() -> HeaderValue {
    let (seed, count) = REQUEST_IDS.with(|ids| {
        let (seed, count) = ids.get();
        ids.set((seed, count.wrapping_add(1)));
        (seed, count)
    });
    let mut bits = [0u8; 16];
    bits[..8].copy_from_slice(&seed.to_be_bytes());
    bits[8..].copy_from_slice(&count.to_be_bytes());
    let mut text = [0u8; 22];
    match URL_SAFE_NO_PAD.encode_slice(bits, &mut text) {
        Ok(22) => HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-")),
        _ => HeaderValue::from_static("-"),
    }
}

/// The last step of an allowed request: the forward-auth answer, or the upstream's response.
async fn finish(
    shared: &Shared,
    routed: Routed,
    claims: Option<&Claims>,
    mut request: Request<Incoming>,
) -> Response<GatewayBody> {
    let grpc = grpc_content_type(request.headers());
    if let Mode::ForwardAuth = routed.mode {
        let mut response = Response::new(response::empty());
        if let Some(claims) = claims
            && shared
                .identity
                .insert(response.headers_mut(), claims)
                .is_err()
        {
            return unforwardable(shared, grpc);
        }
        return with_outcome(response, Outcome::Allowed);
    }
    if let Some(claims) = claims
        && shared
            .identity
            .insert(request.headers_mut(), claims)
            .is_err()
    {
        return unforwardable(shared, grpc);
    }
    if routed.route.strip_authorization {
        // Its `_` spellings went with the client's other copies of judged headers.
        request.headers_mut().remove(AUTHORIZATION);
    }
    let Some(index) = routed.route.upstream else {
        return with_outcome(
            refuse(grpc, StatusCode::FORBIDDEN, 7, "no route"),
            Outcome::NoRoute,
        );
    };
    let Some(upstream) = shared.upstreams.get(index) else {
        return with_outcome(
            refuse(grpc, StatusCode::FORBIDDEN, 7, "no route"),
            Outcome::NoRoute,
        );
    };
    match upstream.forward(request, &routed.peer, &routed.hop).await {
        Ok(response) => with_outcome(response, Outcome::Forwarded),
        Err(UpstreamError::ClientBody) => {
            shared.metrics.rejection("bad_request_body");
            with_outcome(
                refuse(grpc, StatusCode::BAD_REQUEST, 3, "malformed request body"),
                Outcome::ClientError,
            )
        }
        Err(UpstreamError::ClientSlow) => {
            shared.metrics.rejection("request_body_timeout");
            with_outcome(
                refuse(
                    grpc,
                    StatusCode::REQUEST_TIMEOUT,
                    4,
                    "request body timed out",
                ),
                Outcome::ClientError,
            )
        }
        Err(error) => {
            shared.metrics.upstream_error(index, error);
            tracing::debug!(
                upstream = upstream.name(),
                kind = error.label(),
                "upstream failed"
            );
            let response = match error {
                UpstreamError::Down => {
                    refuse(grpc, StatusCode::BAD_GATEWAY, 14, "upstream unavailable")
                }
                UpstreamError::Slow | UpstreamError::ClientBody | UpstreamError::ClientSlow => {
                    refuse(grpc, StatusCode::GATEWAY_TIMEOUT, 4, "upstream timed out")
                }
            };
            with_outcome(response, Outcome::UpstreamError)
        }
    }
}

fn unforwardable(shared: &Shared, grpc: Option<HeaderValue>) -> Response<GatewayBody> {
    shared.metrics.rejection("unforwardable_claims");
    with_outcome(
        refuse(
            grpc,
            StatusCode::FORBIDDEN,
            7,
            "claims cannot be forwarded as headers",
        ),
        Outcome::Forbidden,
    )
}

/// The service behind the Layer: the request's token is valid and unrevoked; checks the
/// route's requirements and the client's rate, then finishes the request.
#[derive(Debug, Clone)]
pub(crate) struct Authorized {
    shared: Arc<Shared>,
}

impl Service<Request<Incoming>> for Authorized {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let grpc = grpc_content_type(request.headers());
            let routed = request.extensions_mut().remove::<Routed>();
            let claims = request.extensions_mut().remove::<VerifiedClaims>();
            let (Some(routed), Some(claims)) = (routed, claims) else {
                // The gateway always routes before the Layer, and the Layer (not optional)
                // always inserts claims: refuse rather than forward unauthenticated.
                return Ok(with_outcome(
                    refuse(grpc, StatusCode::FORBIDDEN, 7, "no route"),
                    Outcome::NoRoute,
                ));
            };
            if let Access::Protected(requirements) = &routed.route.access
                && let Err(denied) = requirements.check(&claims)
            {
                shared.metrics.rejection(denied.reason());
                tracing::debug!(
                    reason = denied.reason(),
                    "token lacks the route's requirements"
                );
                let forbidden = |text| {
                    let response = refuse(grpc.clone(), StatusCode::FORBIDDEN, 7, text);
                    (response, Outcome::Forbidden)
                };
                let (response, outcome) = match denied {
                    // Answered and marked as the Layer answers a token of an unknown issuer, so
                    // that the two refusals read alike.
                    Denied::Issuer => (
                        shared.rejection.on_rejection(
                            &Rejection::InvalidToken(TokenError::WrongIssuer),
                            request.headers(),
                        ),
                        Outcome::Rejected,
                    ),
                    Denied::Scope(scope) => (
                        shared
                            .rejection
                            .on_rejection(&Rejection::InsufficientScope(scope), request.headers()),
                        Outcome::Forbidden,
                    ),
                    Denied::Role => forbidden("a required role is missing"),
                    Denied::Tenant => forbidden("token tenant not allowed"),
                };
                return Ok(with_outcome(response, outcome));
            }
            if let Some(limiter) = &shared.limiter
                && let Err(wait) = limiter.check(&claims.client_id)
            {
                shared.metrics.rejection("rate_limited");
                return Ok(with_outcome(
                    response::too_many(grpc, wait),
                    Outcome::RateLimited,
                ));
            }
            Ok(finish(&shared, routed, Some(&claims), request).await)
        })
    }
}

/// The Layer's rejections, counted by reason and marked for the request metrics.
#[derive(Debug, Clone)]
pub(crate) struct RecordRejection {
    inner: DefaultRejection,
    metrics: Arc<Metrics>,
}

impl OnRejection<GatewayBody> for RecordRejection {
    fn on_rejection(
        &self,
        rejection: &Rejection,
        request_headers: &HeaderMap,
    ) -> Response<GatewayBody> {
        let reason = match rejection {
            Rejection::MissingToken => "missing_token",
            Rejection::InvalidRequest(_) => "invalid_request",
            r if r.is_revoked() => "revoked",
            Rejection::Unavailable(_) => "not_ready",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            _ => "invalid_token",
        };
        self.metrics.rejection(reason);
        tracing::debug!(
            reason,
            description = rejection.description(),
            "token refused"
        );
        with_outcome(
            self.inner.on_rejection(rejection, request_headers),
            Outcome::Rejected,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::new_request_id;
    use std::collections::HashSet;

    #[test]
    fn request_ids_are_unique_within_and_across_threads() {
        let ids = || (0..1000).map(|_| new_request_id()).collect::<Vec<_>>();
        let here = ids();
        let there = std::thread::spawn(ids).join().unwrap();
        let all: HashSet<_> = here.iter().chain(&there).collect();
        assert_eq!(all.len(), 2000);
        assert!(here.iter().all(|id| {
            id.len() == 22
                && id
                    .as_bytes()
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c))
        }));
    }
}
