//! Validates the bearer access token of every request before the inner service sees it.
//!
//! [`ValidateBearerLayer`] wraps a service in [`ValidateBearer`], whose [`ResponseFuture`] is the
//! inner service's call when the token is accepted and a ready rejection otherwise. Rejections
//! are responses, shaped by an [`OnRejection`](crate::rejection::OnRejection) policy
//! ([`DefaultRejection`](crate::rejection::DefaultRejection) unless told otherwise), so an
//! `Infallible` inner service stays `Infallible`.
//!
//! # What is checked, in order
//!
//! 0. If the layer was given a [`Readiness`](crate::readiness::Readiness)
//!    ([`ValidateBearerLayer::readiness`]), that the revocation state can be trusted — not:
//!    503 with `Retry-After: 1` (gRPC: `grpc-status` 14), whatever the request carries, a
//!    missing token included, so that the layer fails closed and reveals nothing.
//! 1. Exactly one `Authorization` header with a `Bearer` token (RFC 6750) — none: 401 without an
//!    error code (or pass-through in [optional](ValidateBearerLayer::optional) mode); anything
//!    else malformed: 400 `invalid_request`.
//! 2. Token length (default 8 KiB), compact-JWS shape, strict base64url.
//! 3. Header: `alg` one of EdDSA, ES256, RS256, HS256 (never `none`). With several issuers
//!    ([`Issuer`](crate::Issuer)), the payload's `iss` alone is read: it must name one of them
//!    exactly, and that issuer's keys and rules judge the rest. Then `alg` allowed for the
//!    issuer; no `crit`; `typ` is `at+jwt` (unless turned off for the issuer).
//! 4. The key named by `kid` exists among the issuer's keys and is *of the header's `alg`* (no
//!    HMAC-with-a-public-key confusion); the signature verifies.
//! 5. Claims: `iss`, `sub`, `aud`, `exp`, `iat`, `jti`, `client_id` present and well-typed, no
//!    claim named twice; `iss` matches; `aud` names an audience the issuer accepts; `exp`,
//!    `nbf`, `iat` within the leeway.
//! 6. The revocation index: token id, grant, and the maximum of every applicable cutoff.
//! 7. The binding (RFC 8705 §3): a token whose `cnf` carries `x5t#S256` is accepted only when
//!    the request carries a [`ClientCertificate`](tollgate_core::ClientCertificate) extension
//!    with that thumbprint (put there by the TLS listener, or by
//!    [`FromTrustedProxy`](crate::client_cert::FromTrustedProxy) behind a proxy); a `cnf` with
//!    any other confirmation method is refused; an unbound token passes unless
//!    [`require_bound_tokens`](ValidateBearerLayer::require_bound_tokens).
//!
//! Steps 2–5 and 7 fail with 401 `invalid_token` and a short `error_description`; step 6 says
//! "revoked". gRPC requests get trailers-only responses with `grpc-status` 16. Accepted requests
//! carry [`VerifiedClaims`](crate::VerifiedClaims) in their extensions; any value of that type the
//! request carried in is removed first.
//!
//! When the token names a `kid` its issuer's key source does not know and the source is a
//! [`RemoteJwks`](crate::remote_jwks::RemoteJwks), the request waits (once) for a refetch of that
//! issuer's JWKS, without holding the inner service's readiness.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm};
//! use tollgate_layer::validate_bearer::ValidateBearerLayer;
//! use tollgate_layer::{VerifiedClaims, Verifier};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .keys(KeySet::generate(SigningAlgorithm::EdDSA, "k1")?)
//!     .revocation_index(Arc::new(RevocationIndex::new()))
//!     .build()?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(ValidateBearerLayer::new(verifier))
//!     .service_fn(|request: Request<String>| async move {
//!         let subject = request.extensions().get::<VerifiedClaims>().map(|c| c.sub.clone());
//!         Ok::<_, Infallible>(Response::new(subject.unwrap_or_default()))
//!     });
//!
//! // No token: 401 with an RFC 6750 challenge, and the inner service is never called.
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"tollgate\"");
//! # Ok(())
//! # }
//! ```

mod authorize;
mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::ValidateBearerLayer;
pub use service::ValidateBearer;
