//! [`RequireScopeLayer`]: refuses requests whose verified token lacks a scope.

use crate::claims::VerifiedClaims;
use crate::rejection::{DefaultRejection, OnRejection, Rejection};
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// Requires every listed scope in the request's [`VerifiedClaims`]; place it inside a
/// [`ValidateBearerLayer`](crate::ValidateBearerLayer).
///
/// A request without claims (no token, in optional mode) gets 401; one whose token lacks a scope
/// gets 403 `insufficient_scope` with the required scopes (gRPC: status 7).
#[derive(Debug, Clone)]
pub struct RequireScopeLayer<R = DefaultRejection> {
    scopes: Arc<[Box<str>]>,
    joined: Arc<str>,
    on_rejection: R,
}

impl RequireScopeLayer {
    /// Requires every space-separated scope in `scopes`.
    pub fn new(scopes: &str) -> Self {
        let scopes: Arc<[Box<str>]> = scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Box::from)
            .collect();
        let joined = scopes.join(" ").into();
        RequireScopeLayer {
            scopes,
            joined,
            on_rejection: DefaultRejection::default(),
        }
    }
}

impl<R> RequireScopeLayer<R> {
    /// Shapes rejection responses with `on_rejection`.
    pub fn on_rejection<R2>(self, on_rejection: R2) -> RequireScopeLayer<R2> {
        RequireScopeLayer {
            scopes: self.scopes,
            joined: self.joined,
            on_rejection,
        }
    }
}

impl<S, R: Clone> Layer<S> for RequireScopeLayer<R> {
    type Service = RequireScope<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            scopes: self.scopes.clone(),
            joined: self.joined.clone(),
            on_rejection: self.on_rejection.clone(),
        }
    }
}

/// Middleware created by [`RequireScopeLayer`].
#[derive(Debug, Clone)]
pub struct RequireScope<S, R> {
    inner: S,
    scopes: Arc<[Box<str>]>,
    joined: Arc<str>,
    on_rejection: R,
}

impl<S, R> RequireScope<S, R> {
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
    type Future = RequireScopeFuture<S::Future, ResBody>;

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
            None => RequireScopeFuture {
                state: State::Called {
                    future: self.inner.call(request),
                },
            },
            Some(rejection) => RequireScopeFuture {
                state: State::Rejected {
                    response: Some(
                        self.on_rejection
                            .on_rejection(&rejection, request.headers()),
                    ),
                },
            },
        }
    }
}

/// Keeps the wrapped gRPC service's name, so the middleware can wrap a single service.
#[cfg(feature = "tonic")]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for RequireScope<S, R> {
    const NAME: &'static str = S::NAME;
}

pin_project! {
    /// Response future of [`RequireScope`].
    pub struct RequireScopeFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Called {
            #[pin]
            future: F,
        },
        Rejected {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for RequireScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future } => future.poll(cx),
            StateProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("RequireScopeFuture polled after completion"),
            },
        }
    }
}
