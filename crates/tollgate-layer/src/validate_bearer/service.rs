//! The [`ValidateBearer`] middleware service: decides on each request, then calls the inner
//! service or answers with a rejection.

use super::ResponseFuture;
use super::authorize::{Outcome, authorize};
use super::future::Pending;
use crate::binding::Binding;
use crate::readiness::Readiness;
use crate::rejection::OnRejection;
use crate::verifier::Verifier;
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware that validates the bearer token of every request before calling `S`.
///
/// Created by [`ValidateBearerLayer`](super::ValidateBearerLayer).
#[derive(Debug, Clone)]
pub struct ValidateBearer<S, R> {
    inner: S,
    verifier: Verifier,
    optional: bool,
    binding: Binding,
    readiness: Option<Arc<dyn Readiness>>,
    on_rejection: R,
}

impl<S, R> ValidateBearer<S, R> {
    pub(super) fn new(
        inner: S,
        verifier: Verifier,
        optional: bool,
        binding: Binding,
        readiness: Option<Arc<dyn Readiness>>,
        on_rejection: R,
    ) -> Self {
        ValidateBearer {
            inner,
            verifier,
            optional,
            binding,
            readiness,
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

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ValidateBearer<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: OnRejection<ResBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let readiness = self.readiness.as_deref();
        match authorize(
            &self.verifier,
            self.optional,
            self.binding,
            readiness,
            &mut request,
            true,
        ) {
            Outcome::Accept => ResponseFuture::called(self.inner.call(request)),
            Outcome::Reject(rejection) => ResponseFuture::rejected(
                self.on_rejection
                    .on_rejection(&rejection, request.headers()),
            ),
            Outcome::AwaitKeys(notified) => {
                // The ready service (and whatever permit its readiness holds) stays here for the
                // next request; the waiting request drives a clone to readiness once its keys
                // are in, so a refetch never pins capacity of the inner service.
                ResponseFuture::awaiting_keys(
                    notified,
                    Pending {
                        service: self.inner.clone(),
                        request,
                        verifier: self.verifier.clone(),
                        optional: self.optional,
                        binding: self.binding,
                        readiness: self.readiness.clone(),
                        on_rejection: self.on_rejection.clone(),
                    },
                )
            }
        }
    }
}

/// Keeps the wrapped gRPC service's name, so the middleware can wrap a single service.
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for ValidateBearer<S, R> {
    const NAME: &'static str = S::NAME;
}
