//! The [`ValidateBearer`] middleware service.

use crate::claims::VerifiedClaims;
use crate::future::ResponseFuture;
use crate::rejection::{OnRejection, Rejection};
use crate::verifier::{TokenError, Verifier};
use http::header::AUTHORIZATION;
use http::{Request, Response};
use std::task::{Context, Poll};
use tokio::sync::futures::OwnedNotified;
use tower_service::Service;

/// Middleware that validates the bearer token of every request before calling `S`.
///
/// Created by [`ValidateBearerLayer`](crate::ValidateBearerLayer).
#[derive(Debug, Clone)]
pub struct ValidateBearer<S, R> {
    inner: S,
    verifier: Verifier,
    optional: bool,
    on_rejection: R,
}

impl<S, R> ValidateBearer<S, R> {
    pub(crate) fn new(inner: S, verifier: Verifier, optional: bool, on_rejection: R) -> Self {
        ValidateBearer {
            inner,
            verifier,
            optional,
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

/// What to do with a request.
pub(crate) enum Outcome {
    Accept,
    Reject(Rejection),
    /// The token names an unknown `kid` and the key source is refetching: wait, then decide again.
    AwaitKeys(OwnedNotified),
}

/// Decides on `request`, inserting its claims into the extensions when it is accepted.
/// `may_refetch` is false on the second attempt after a refetch, so a request waits at most once.
pub(crate) fn authorize<B>(
    verifier: &Verifier,
    optional: bool,
    request: &mut Request<B>,
    may_refetch: bool,
) -> Outcome {
    // Claims come only from this layer, never from whatever built the request.
    request.extensions_mut().remove::<VerifiedClaims>();
    let token = match bearer_token(request) {
        Ok(Some(token)) => token,
        Ok(None) if optional => return Outcome::Accept,
        Ok(None) => return Outcome::Reject(Rejection::MissingToken),
        Err(rejection) => return Outcome::Reject(rejection),
    };
    match verifier.verify(token) {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            Outcome::Accept
        }
        Err(TokenError::UnknownKey) if may_refetch => match verifier.refetch_keys() {
            Some(notified) => Outcome::AwaitKeys(notified),
            None => Outcome::Reject(Rejection::InvalidToken(TokenError::UnknownKey)),
        },
        Err(e) => {
            tracing::debug!(reason = e.description(), "bearer token rejected");
            Outcome::Reject(Rejection::InvalidToken(e))
        }
    }
}

/// The bearer token of the request: `Ok(None)` without an `Authorization` header.
fn bearer_token<B>(request: &Request<B>) -> Result<Option<&str>, Rejection> {
    let mut values = request.headers().get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let not_bearer = Rejection::InvalidRequest("expected a Bearer token");
    let value = value.to_str().map_err(|_| not_bearer.clone())?;
    let (scheme, token) = value.split_once(' ').ok_or(not_bearer.clone())?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(not_bearer);
    }
    let token = token.trim_start_matches(' ');
    // RFC 6750 §2.1 b64token: the characters a JWT or opaque token may use, then '=' padding.
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
    {
        return Err(Rejection::InvalidRequest("malformed Bearer token"));
    }
    Ok(Some(token))
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
        match authorize(&self.verifier, self.optional, &mut request, true) {
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
                    self.inner.clone(),
                    request,
                    self.verifier.clone(),
                    self.optional,
                    self.on_rejection.clone(),
                )
            }
        }
    }
}

/// Keeps the wrapped gRPC service's name, so the middleware can wrap a single service.
#[cfg(feature = "tonic")]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for ValidateBearer<S, R> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(values: &[&[u8]]) -> Request<()> {
        let mut r = Request::new(());
        for v in values {
            r.headers_mut()
                .append(AUTHORIZATION, http::HeaderValue::from_bytes(v).unwrap());
        }
        r
    }

    #[test]
    fn extracts_bearer_tokens() {
        assert_eq!(bearer_token(&request(&[])), Ok(None));
        assert_eq!(
            bearer_token(&request(&[b"Bearer abc.def-_"])),
            Ok(Some("abc.def-_"))
        );
        assert_eq!(
            bearer_token(&request(&[b"bearer  abc=="])),
            Ok(Some("abc=="))
        );
        for bad in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer ===",
            b"Bearerabc",
            b"Bearer \xff\xfe",
            b"Bearer a=b",
        ] {
            assert!(
                bearer_token(&request(&[bad])).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(bearer_token(&request(&[b"Bearer a", b"Bearer a"])).is_err());
    }
}
