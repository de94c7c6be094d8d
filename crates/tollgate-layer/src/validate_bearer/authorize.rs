//! The decision [`ValidateBearer`](super::ValidateBearer) makes on a request, shared by the
//! service (first attempt) and its [`ResponseFuture`](super::ResponseFuture) (the retry after a
//! JWKS refetch), so that both decide alike and neither imports the other.

use crate::binding::{self, Binding};
use crate::claims::VerifiedClaims;
use crate::readiness::Readiness;
use crate::rejection::Rejection;
use crate::verifier::{TokenError, Verifier};
use http::Request;
use http::header::AUTHORIZATION;
use tokio::sync::futures::OwnedNotified;

/// What to do with a request.
pub(super) enum Outcome {
    Accept,
    Reject(Rejection),
    /// The token names an unknown `kid` and the key source is refetching: wait, then decide again.
    AwaitKeys(OwnedNotified),
}

/// Decides on `request`, inserting its claims into the extensions when it is accepted.
/// `may_refetch` is false on the second attempt after a refetch, so a request waits at most once.
pub(super) fn authorize<B>(
    verifier: &Verifier,
    optional: bool,
    binding: Binding,
    readiness: Option<&dyn Readiness>,
    request: &mut Request<B>,
    may_refetch: bool,
) -> Outcome {
    // Claims come only from this layer, never from whatever built the request.
    request.extensions_mut().remove::<VerifiedClaims>();
    // Before the token: while the revocation state cannot be trusted no token can be judged, and
    // answering alike whatever the request carries reveals nothing about it.
    if let Some(Err(not_ready)) = readiness.map(Readiness::check) {
        tracing::debug!(
            reason = not_ready.description(),
            "request refused: not ready"
        );
        return Outcome::Reject(Rejection::Unavailable(not_ready));
    }
    let token = match bearer_token(request) {
        Ok(Some(token)) => token,
        Ok(None) if optional => return Outcome::Accept,
        Ok(None) => return Outcome::Reject(Rejection::MissingToken),
        Err(rejection) => return Outcome::Reject(rejection),
    };
    match verifier.verify(token) {
        Ok(claims) => {
            // RFC 8705 §3: a certificate-bound token is good only on a request that came with
            // its certificate, whoever put that in the extensions (a TLS listener, or
            // `client_cert::FromTrustedProxy`).
            if let Err(e) = binding::check(&claims, request.extensions(), binding) {
                tracing::debug!(reason = e.description(), "bearer token rejected");
                return Outcome::Reject(Rejection::InvalidToken(e));
            }
            request.extensions_mut().insert(claims);
            Outcome::Accept
        }
        Err(TokenError::UnknownKey) if may_refetch => match verifier.refetch_keys(token) {
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
