//! [`TokenService`]: the tower `Service` that dispatches requests to the endpoints through the
//! routing table.

mod builder;
mod protected;

pub use builder::{BuildError, TokenServiceBuilder};

use crate::endpoints::{self, Endpoint, Route};
use crate::endpoints::{api_revoke, discovery, introspection, jwks, openapi, revocation, token};
use crate::issuer::Issuer;
use crate::protocol::form::{BoxError, Form, read_body};
use crate::protocol::response::{self, Failure, ResponseBody};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use protected::{Guarded, GuardedUserinfo};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tollgate_core::{KeySet, RevocationIndex};
use tollgate_layer::Verifier;
use tower_service::Service;

/// The future of [`TokenService`] (boxed: endpoints await the store and the password hasher).
pub type TokenServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static>>;

/// The OAuth 2.0 token service: `/connect/token`, `/connect/revocation`, `/connect/introspect`,
/// `/connect/userinfo`, discovery, JWKS, and the Identity APIs' revocation endpoints.
///
/// A tower `Service<Request<B>>` that never fails (errors are responses) and is always ready;
/// clones share all state. Mount it at the root of an app (for axum, as the router's fallback
/// service or with `route_service` per path) beside the app's own routes, and give the app's
/// [`ValidateBearerLayer`](tollgate_layer::ValidateBearerLayer) the same [`RevocationIndex`] and
/// [`KeySet`]: a revocation answered `200` is then enforced by that Layer before the `200` is
/// sent.
#[derive(Clone)]
pub struct TokenService {
    issuer: Arc<Issuer>,
    admin: Guarded,
    userinfo: GuardedUserinfo,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.issuer.fmt(f)
    }
}

/// How many live tokens the service tracks (for batch counts, refresh and introspection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveTokens {
    /// Access tokens that have not expired.
    pub access: usize,
    /// Refresh tokens that have not expired, exchanged ones included until they expire.
    pub refresh: usize,
}

impl TokenService {
    /// Starts a builder.
    pub fn builder() -> TokenServiceBuilder {
        TokenServiceBuilder::new()
    }

    /// The service around `issuer`; `own_audience` verifies this issuer's tokens for the
    /// service's own audiences (the admin API and userinfo accept no other).
    fn new(issuer: Arc<Issuer>, own_audience: Verifier) -> Self {
        TokenService {
            admin: protected::batch_revocation(issuer.clone(), own_audience.clone()),
            userinfo: protected::userinfo(issuer.clone(), own_audience),
            issuer,
        }
    }

    /// The revocation index the service feeds; share it with the app's Layer.
    pub fn index(&self) -> &Arc<RevocationIndex> {
        self.issuer.ledger.index()
    }

    /// The keys the service signs with; share them with the app's Layer.
    pub fn keys(&self) -> &KeySet {
        self.issuer.ledger.keys()
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        self.issuer.ledger.issuer()
    }

    /// The default audience of the tokens (`aud`).
    pub fn audience(&self) -> &[String] {
        self.issuer.ledger.audience()
    }

    /// Live tokens currently tracked.
    pub fn live_tokens(&self) -> LiveTokens {
        let (access, refresh) = self.issuer.ledger.live();
        LiveTokens { access, refresh }
    }

    /// The durable store. Its [outbox](crate::Store::outbox), if it keeps one, is what a relay
    /// publishes (see [`crate::store`]).
    pub fn store(&self) -> &Arc<dyn crate::Store> {
        self.issuer.ledger.store()
    }

    /// Notified (`notify_one`) after every revocation this service commits, so that a relay
    /// publishing the store's outbox can wait for work instead of polling.
    pub fn outbox_notify(&self) -> Arc<tokio::sync::Notify> {
        self.issuer.ledger.outbox().clone()
    }

    /// Forgets expired tokens, revocations and throttle records (in memory and in the store).
    pub async fn purge(&self) -> Result<(), crate::StoreError> {
        self.issuer.purge().await
    }

    /// Purges every `every` on the current Tokio runtime until the returned handle is aborted.
    pub fn spawn_purge(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let issuer = self.issuer.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = issuer.purge().await {
                    tracing::warn!(error = %e, "purge failed; will retry");
                }
            }
        })
    }

    /// Makes everything written so far durable (call on shutdown).
    pub async fn flush(&self) -> Result<(), crate::StoreError> {
        self.issuer.ledger.flush().await
    }

    /// The path of the endpoint that serves a request for `path`, from the routing table; `None`
    /// when no endpoint does (the service answers `404`).
    ///
    /// For labels (metrics, logs): the answer is one of a fixed set of static strings, whatever
    /// the request, so a label made of it has bounded values. What each response did is in its
    /// extensions (see [`outcome`](crate::outcome)).
    pub fn route(path: &str) -> Option<&'static str> {
        endpoints::find(path).map(|route| route.path)
    }
}

impl<B> Service<Request<B>> for TokenService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = TokenServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let ready = |response| -> TokenServiceFuture { Box::pin(std::future::ready(Ok(response))) };
        let Some(route) = endpoints::find(request.uri().path()) else {
            return ready(response::not_found());
        };
        if !route.methods.accept(request.method()) {
            let failure = Failure::method_not_allowed(route.methods.allow());
            return ready(failure.into_response(route.errors));
        }
        match route.endpoint {
            Endpoint::Token
            | Endpoint::Revocation
            | Endpoint::ApiRevoke
            | Endpoint::Introspection => {
                let issuer = self.issuer.clone();
                let route = *route;
                // Detached: once a request has started changing state (a revocation committed, a
                // refresh token rotated), a client that goes away must not cut it in half, e.g.
                // leave a revocation on disk but not yet in the index.
                Box::pin(async move {
                    Ok(
                        tokio::spawn(async move { form(&issuer, route, request).await })
                            .await
                            .unwrap_or_else(|_| Failure::internal().into_response(route.errors)),
                    )
                })
            }
            Endpoint::BatchRevocation => {
                call_guarded(self.admin.clone(), with_reference_token(request))
            }
            Endpoint::Userinfo => call_guarded(self.userinfo.clone(), request),
            Endpoint::Jwks => ready(jwks::handle(&self.issuer)),
            Endpoint::OpenApi => ready(openapi::handle()),
            Endpoint::OpenIdConfiguration | Endpoint::OAuthMetadata => {
                ready(discovery::handle(&self.issuer))
            }
        }
    }
}

fn call_guarded<S, B>(mut service: S, request: Request<B>) -> TokenServiceFuture
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible> + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    Box::pin(async move {
        std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(request).await
    })
}

/// The Identity API also takes the admin token in a `Reference-Token` header: present it to the
/// Layer as a bearer credential when no `Authorization` header was sent.
fn with_reference_token<B>(mut request: Request<B>) -> Request<B> {
    if request.headers().contains_key(AUTHORIZATION) {
        return request;
    }
    let Some(token) = request.headers().get("reference-token") else {
        return request;
    };
    let token = token.as_bytes();
    let has_scheme = token.len() > 7 && token[..7].eq_ignore_ascii_case(b"bearer ");
    let value = if has_scheme {
        HeaderValue::from_bytes(token)
    } else {
        HeaderValue::from_bytes(&[b"Bearer ", token].concat())
    };
    if let Ok(value) = value {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    request
}

/// A form endpoint: the body read within its limits, parsed, and handed to the endpoint.
async fn form<B>(issuer: &Issuer, route: Route, request: Request<B>) -> Response<ResponseBody>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let outcome = async {
        let body = read_body(body).await?;
        let form = Form::parse(&parts.headers, &body)?;
        match route.endpoint {
            Endpoint::Token => token::handle(issuer, &parts, &form).await,
            Endpoint::Revocation => revocation::handle(issuer, &parts, &form)
                .await
                .map(|()| response::empty_ok()),
            Endpoint::ApiRevoke => api_revoke::handle(issuer, &parts, &form)
                .await
                .map(|()| response::empty_ok()),
            Endpoint::Introspection => introspection::handle(issuer, &parts, &form).await,
            // `call` sends only the four form endpoints here.
            _ => Err(Failure::internal()),
        }
    }
    .await;
    outcome.unwrap_or_else(|failure| {
        if failure.status == http::StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(endpoint = ?route.endpoint, "internal error");
        }
        failure.into_response(route.errors)
    })
}
