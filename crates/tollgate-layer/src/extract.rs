//! Hands axum handlers the [`VerifiedClaims`] of the request (cargo feature `axum`).
//!
//! `VerifiedClaims` is an extractor: as an argument it requires claims (401 [`MissingClaims`]
//! without), as `Option<VerifiedClaims>` it takes them when the optional layer found a token.

use crate::claims::VerifiedClaims;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use http::request::Parts;
use std::convert::Infallible;

/// The handler asked for [`VerifiedClaims`] but the request has none: the route is not behind a
/// [`ValidateBearerLayer`](crate::ValidateBearerLayer), or the layer is optional and no token was
/// sent. Answers 401 with a bare `Bearer` challenge.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone, Copy)]
pub struct MissingClaims;

impl IntoResponse for MissingClaims {
    fn into_response(self) -> Response {
        (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, "Bearer")]).into_response()
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> FromRequestParts<S> for VerifiedClaims {
    type Rejection = MissingClaims;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedClaims>()
            .cloned()
            .ok_or(MissingClaims)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedClaims {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedClaims>().cloned())
    }
}
