//! The [`RequireScope`] middleware service: checks the verified claims' scopes, then calls the
//! inner service or answers with a rejection.

use super::ResponseFuture;
use crate::claims::VerifiedClaims;
use crate::rejection::{OnRejection, Rejection};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware created by [`RequireScopeLayer`](super::RequireScopeLayer).
#[derive(Debug, Clone)]
pub struct RequireScope<S, R> {
    inner: S,
    scopes: Arc<[Box<str>]>,
    joined: Arc<str>,
    on_rejection: R,
}

impl<S, R> RequireScope<S, R> {
    pub(super) fn new(
        inner: S,
        scopes: Arc<[Box<str>]>,
        joined: Arc<str>,
        on_rejection: R,
    ) -> Self {
        RequireScope {
            inner,
            scopes,
            joined,
            on_rejection,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let rejection = match request.extensions().get::<VerifiedClaims>() {
            None => Some(Rejection::MissingToken),
            Some(claims) if self.scopes.iter().all(|s| claims.has_scope(s)) => None,
            Some(_) => Some(Rejection::InsufficientScope(self.joined.clone())),
        };
        match rejection {
            None => ResponseFuture::called(self.inner.call(request)),
            Some(rejection) => ResponseFuture::rejected(
                self.on_rejection
                    .on_rejection(&rejection, request.headers()),
            ),
        }
    }
}

/// Keeps the wrapped gRPC service's name, so the middleware can wrap a single service.
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for RequireScope<S, R> {
    const NAME: &'static str = S::NAME;
}
