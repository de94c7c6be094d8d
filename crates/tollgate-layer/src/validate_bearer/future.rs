//! The response future of [`ValidateBearer`](super::ValidateBearer): the inner call, a ready
//! rejection, or the wait for a JWKS refetch.

use super::authorize::{Outcome, authorize};
use crate::binding::Binding;
use crate::readiness::Readiness;
use crate::rejection::{OnRejection, Rejection};
use crate::verifier::{TokenError, Verifier};
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::sync::futures::OwnedNotified;
use tower_service::Service;

pin_project! {
    /// Response future of [`ValidateBearer`](super::ValidateBearer): the inner service's future
    /// when the request was accepted, a ready rejection otherwise, or a wait for a JWKS refetch
    /// when the token named a key not known yet.
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        Rejected {
            response: Option<S::Response>,
        },
        AwaitingKeys {
            #[pin]
            notified: OwnedNotified,
            pending: Option<Pending<S, ReqBody, R>>,
        },
        /// Accepted after the wait: the service clone is driven to readiness before the call.
        Readying {
            service: S,
            request: Option<Request<ReqBody>>,
        },
    }
}

/// A request waiting for its issuer's keys, with what deciding on it again takes.
pub(super) struct Pending<S, ReqBody, R> {
    pub(super) service: S,
    pub(super) request: Request<ReqBody>,
    pub(super) verifier: Verifier,
    pub(super) optional: bool,
    pub(super) binding: Binding,
    // Asked again after the wait: the feed may have gone stale meanwhile.
    pub(super) readiness: Option<Arc<dyn Readiness>>,
    pub(super) on_rejection: R,
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(super) fn called(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(super) fn rejected(response: S::Response) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn awaiting_keys(notified: OwnedNotified, pending: Pending<S, ReqBody, R>) -> Self {
        ResponseFuture {
            state: State::AwaitingKeys {
                notified,
                pending: Some(pending),
            },
        }
    }
}

impl<S, ReqBody, ResBody, R> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: OnRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx),
                StateProj::Rejected { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => panic!("ResponseFuture polled after completion"),
                    };
                }
                StateProj::Readying { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    State::Called {
                        future: service.call(request),
                    }
                }
                StateProj::AwaitingKeys { notified, pending } => {
                    ready!(notified.poll(cx));
                    let Some(mut p) = pending.take() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let readiness = p.readiness.as_deref();
                    match authorize(
                        &p.verifier,
                        p.optional,
                        p.binding,
                        readiness,
                        &mut p.request,
                        false,
                    ) {
                        Outcome::Accept => State::Readying {
                            service: p.service,
                            request: Some(p.request),
                        },
                        Outcome::Reject(rejection) => State::Rejected {
                            response: Some(
                                p.on_rejection.on_rejection(&rejection, p.request.headers()),
                            ),
                        },
                        // `authorize` never asks to wait twice.
                        Outcome::AwaitKeys(_) => State::Rejected {
                            response: Some(p.on_rejection.on_rejection(
                                &Rejection::InvalidToken(TokenError::UnknownKey),
                                p.request.headers(),
                            )),
                        },
                    }
                }
            };
            this.state.set(next);
        }
    }
}
