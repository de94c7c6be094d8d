//! Rejections and how they become responses: RFC 6750 for HTTP, trailers-only for gRPC.
//!
//! Both middlewares report a [`Rejection`] and hand it to an [`OnRejection`] policy, which builds
//! the response sent instead of calling the inner service: [`DefaultRejection`] unless the layer
//! was given another (any `Fn(&Rejection, &HeaderMap) -> Response<B>` is one).
//! [`Rejection::challenge`] builds the RFC 6750 `WWW-Authenticate` value, for policies that
//! shape their own responses but keep the standard challenge.
//!
//! One rejection is not about the request: [`Rejection::Unavailable`], sent while the layer's
//! [`Readiness`](crate::readiness::Readiness) says its revocation state cannot be trusted.

use crate::readiness::NotReady;
use crate::verifier::TokenError;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::fmt;
use std::sync::Arc;

/// Why a request was refused.
///
/// Non-exhaustive: new reasons may be added, so a `match` needs a wildcard arm; the methods
/// ([`status`](Self::status), [`error_code`](Self::error_code), [`challenge`](Self::challenge),
/// ...) answer for every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization` header (RFC 6750 §3.1: no error attribute).
    MissingToken,
    /// Not a Bearer credential, an empty one, or several `Authorization` headers.
    InvalidRequest(&'static str),
    /// The token was refused; see [`TokenError`].
    InvalidToken(TokenError),
    /// The token lacks a scope the route needs (these, space-separated).
    InsufficientScope(Arc<str>),
    /// The revocation state cannot be trusted right now (see
    /// [`readiness`](crate::readiness)); the request was not looked at.
    Unavailable(NotReady),
}

impl Rejection {
    /// The HTTP status: 400, 401, 403, or 503 for [`Unavailable`](Rejection::Unavailable).
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingToken | Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 `error` code, if any: none for a missing token (§3.1), and none for
    /// [`Unavailable`](Rejection::Unavailable), which says nothing about the token.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Rejection::MissingToken | Rejection::Unavailable(_) => None,
            Rejection::InvalidRequest(_) => Some("invalid_request"),
            Rejection::InvalidToken(_) => Some("invalid_token"),
            Rejection::InsufficientScope(_) => Some("insufficient_scope"),
        }
    }

    /// A short description safe to show the client.
    pub fn description(&self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing bearer token",
            Rejection::InvalidRequest(why) => why,
            Rejection::InvalidToken(e) => e.description(),
            Rejection::InsufficientScope(_) => "insufficient scope",
            Rejection::Unavailable(why) => why.description(),
        }
    }

    /// The gRPC status code: 16 (`UNAUTHENTICATED`), 7 (`PERMISSION_DENIED`) for a missing
    /// scope, or 14 (`UNAVAILABLE`) for [`Unavailable`](Rejection::Unavailable).
    pub fn grpc_status(&self) -> u8 {
        match self {
            Rejection::InsufficientScope(_) => 7,
            Rejection::Unavailable(_) => 14,
            _ => 16,
        }
    }

    /// Whether the token was refused because it was revoked.
    pub fn is_revoked(&self) -> bool {
        matches!(self, Rejection::InvalidToken(TokenError::Revoked(_)))
    }

    /// The RFC 6750 §3 `WWW-Authenticate` challenge for this rejection, in `realm`.
    ///
    /// `Bearer realm="…"` alone for [`MissingToken`](Rejection::MissingToken) (§3.1: no error
    /// attribute when the request carried no credentials) and for
    /// [`Unavailable`](Rejection::Unavailable) (not an answer about the credentials); otherwise
    /// followed by `error="…", error_description="…"` and, for
    /// [`InsufficientScope`](Rejection::InsufficientScope), `scope="…"`. Quotes, backslashes and
    /// characters outside printable ASCII are dropped from `realm`, so any realm gives a valid
    /// quoted string. If the scope makes the value an invalid header, the challenge falls back to
    /// the realm alone.
    ///
    /// [`DefaultRejection`] answers with it; a custom [`OnRejection`] can use it to keep the
    /// challenge while shaping the rest of the response.
    ///
    /// ```
    /// use tollgate_layer::{Rejection, TokenError};
    ///
    /// let rejection = Rejection::InvalidToken(TokenError::Expired);
    /// assert_eq!(
    ///     rejection.challenge("orders"),
    ///     r#"Bearer realm="orders", error="invalid_token", error_description="token expired""#,
    /// );
    /// assert_eq!(Rejection::MissingToken.challenge("orders"), r#"Bearer realm="orders""#);
    /// ```
    pub fn challenge(&self, realm: &str) -> HeaderValue {
        let mut value = String::with_capacity(64 + realm.len());
        value.push_str("Bearer realm=\"");
        value.extend(sanitized_realm(realm));
        value.push('"');
        let Some(code) = self.error_code() else {
            return realm_only(value);
        };
        let realm_len = value.len();
        value.push_str(", error=\"");
        value.push_str(code);
        value.push_str("\", error_description=\"");
        value.push_str(self.description());
        value.push('"');
        if let Rejection::InsufficientScope(scope) = self {
            value.push_str(", scope=\"");
            value.push_str(scope);
            value.push('"');
        }
        HeaderValue::try_from(value).unwrap_or_else(|_| {
            // Only a scope given to `RequireScopeLayer` can carry bytes a header may not hold.
            let mut value = String::with_capacity(realm_len);
            value.push_str("Bearer realm=\"");
            value.extend(sanitized_realm(realm));
            value.push('"');
            realm_only(value)
        })
    }
}

/// The characters of `realm` that may stand in a quoted string of a header value.
fn sanitized_realm(realm: &str) -> impl Iterator<Item = char> + '_ {
    realm
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
}

/// `Bearer realm="…"` built from a sanitized realm, which is always a valid header value; the
/// bare scheme is the answer should that ever not hold.
fn realm_only(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Turns a [`Rejection`] into the response sent instead of calling the inner service.
///
/// Implemented by [`DefaultRejection`] and by any `Fn(&Rejection, &HeaderMap) -> Response<B>`;
/// the header map is the rejected request's.
pub trait OnRejection<B> {
    /// Builds the response.
    fn on_rejection(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<B>;
}

impl<B, F> OnRejection<B> for F
where
    F: Fn(&Rejection, &HeaderMap) -> Response<B>,
{
    fn on_rejection(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<B> {
        self(rejection, request_headers)
    }
}

/// RFC 6750 responses with empty bodies for HTTP requests; for gRPC and gRPC-Web requests, an
/// HTTP 200 trailers-only response carrying `grpc-status` and `grpc-message`, with the request's
/// gRPC content type.
///
/// [`Rejection::Unavailable`] over HTTP is a 503 with `Retry-After: 1` and no
/// `WWW-Authenticate`: there is no credential to challenge until the layer can judge one.
#[derive(Debug, Clone)]
pub struct DefaultRejection {
    realm: Arc<str>,
    /// `Bearer realm="..."`, built once: the no-token answer costs no formatting.
    challenge: HeaderValue,
}

impl Default for DefaultRejection {
    fn default() -> Self {
        Self::with_realm("tollgate")
    }
}

impl DefaultRejection {
    /// Challenges with `realm` in `WWW-Authenticate`. Quotes, backslashes and characters outside
    /// printable ASCII are dropped from it (see [`Rejection::challenge`]).
    pub fn with_realm(realm: &str) -> Self {
        let realm: String = sanitized_realm(realm).collect();
        let challenge = Rejection::MissingToken.challenge(&realm);
        DefaultRejection {
            realm: realm.into(),
            challenge,
        }
    }

    fn challenge(&self, rejection: &Rejection) -> HeaderValue {
        match rejection.error_code() {
            None => self.challenge.clone(),
            Some(_) => rejection.challenge(&self.realm),
        }
    }
}

/// The response content type for a gRPC (or gRPC-Web) request; `None` for anything else.
///
/// `application/grpc`, `application/grpc-web` and `application/grpc-web-text`, each alone or
/// followed by `+codec` or `;params`; `application/grpcfoo` is not gRPC.
pub(crate) fn grpc_content_type(headers: &HeaderMap) -> Option<HeaderValue> {
    let ct = headers.get(CONTENT_TYPE)?.as_bytes();
    let kinds: [&'static str; 3] = [
        "application/grpc-web-text",
        "application/grpc-web",
        "application/grpc",
    ];
    kinds.into_iter().find_map(|kind| {
        let rest = ct.strip_prefix(kind.as_bytes())?;
        matches!(rest.first(), None | Some(b'+' | b';')).then(|| HeaderValue::from_static(kind))
    })
}

impl<B: Default> OnRejection<B> for DefaultRejection {
    fn on_rejection(&self, rejection: &Rejection, request_headers: &HeaderMap) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        if let Some(content_type) = grpc_content_type(request_headers) {
            headers.insert(CONTENT_TYPE, content_type);
            headers.insert(
                "grpc-status",
                HeaderValue::from(u16::from(rejection.grpc_status())),
            );
            // Descriptions are plain ASCII without '%', so they need no percent-encoding.
            headers.insert(
                "grpc-message",
                HeaderValue::from_static(rejection.description()),
            );
        } else if let Rejection::Unavailable(_) = rejection {
            // Not being ready is meant to be brief (the first sync after a start, a reconnect),
            // and refusing costs the layer next to nothing: a longer wait would only keep
            // clients away after the feed has recovered.
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            *response.status_mut() = rejection.status();
        } else {
            headers.insert(WWW_AUTHENTICATE, self.challenge(rejection));
            *response.status_mut() = rejection.status();
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_description_is_a_valid_grpc_message() {
        // grpc-message must be percent-encoded; ours need none.
        use tollgate_core::{Revoked, UnixMillis};
        let all = [
            TokenError::TooLarge,
            TokenError::Malformed,
            TokenError::AlgorithmNotAllowed,
            TokenError::CriticalHeader,
            TokenError::WrongType,
            TokenError::UnknownKey,
            TokenError::MissingKeyId,
            TokenError::AlgorithmMismatch,
            TokenError::BadSignature,
            TokenError::InvalidClaims,
            TokenError::MissingTokenId,
            TokenError::WrongIssuer,
            TokenError::WrongAudience,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::Revoked(Revoked::Token),
            TokenError::Revoked(Revoked::Grant),
            TokenError::Revoked(Revoked::Cutoff {
                issued_before: UnixMillis(0),
            }),
            TokenError::CertificateRequired,
            TokenError::CertificateMismatch,
            TokenError::UnsupportedConfirmation,
            TokenError::Unbound,
        ];
        let descriptions = all.iter().map(|e| e.description()).chain(
            [NotReady::NotSynced, NotReady::Stale].map(|n| Rejection::Unavailable(n).description()),
        );
        for d in descriptions {
            assert!(
                d.bytes()
                    .all(|b| (b' '..=b'~').contains(&b) && b != b'%' && b != b'"'),
                "{d}"
            );
        }
    }

    #[test]
    fn grpc_content_types() {
        let ct = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            grpc_content_type(&h).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(ct("application/grpc").as_deref(), Some("application/grpc"));
        assert_eq!(
            ct("application/grpc+proto").as_deref(),
            Some("application/grpc")
        );
        assert_eq!(
            ct("application/grpc-web+proto").as_deref(),
            Some("application/grpc-web")
        );
        assert_eq!(
            ct("application/grpc-web-text").as_deref(),
            Some("application/grpc-web-text")
        );
        assert_eq!(ct("application/grpcfoo"), None);
        assert_eq!(ct("application/json"), None);
    }

    #[test]
    fn challenges() {
        let scope = Rejection::InsufficientScope("orders:write admin".into());
        assert_eq!(
            scope.challenge("api"),
            "Bearer realm=\"api\", error=\"insufficient_scope\", \
             error_description=\"insufficient scope\", scope=\"orders:write admin\""
        );
        assert_eq!(
            Rejection::InvalidRequest("malformed Bearer token").challenge("a\"b"),
            "Bearer realm=\"ab\", error=\"invalid_request\", \
             error_description=\"malformed Bearer token\""
        );
        // A scope that cannot stand in a header leaves the realm alone.
        let bad = Rejection::InsufficientScope("a\nb".into());
        assert_eq!(bad.challenge("api"), "Bearer realm=\"api\"");
    }

    #[test]
    fn realm_is_sanitized() {
        let r = DefaultRejection::with_realm("a\"b\\c\n");
        assert_eq!(r.challenge, "Bearer realm=\"abc\"");
    }
}
