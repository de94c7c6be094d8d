//! A tower [`Layer`](tower_layer::Layer) that validates JWT bearer access tokens (RFC 9068) inline
//! and rejects tokens that were revoked: one by one, by grant, or by an "issued before T" cutoff.
//!
//! Revocation is an in-memory [`RevocationIndex`](tollgate_core::RevocationIndex) lookup: no
//! network call on the request path. The same layer works in hyper, axum and tonic stacks.
//!
//! # Layout
//!
//! Like tower-http, one module per middleware, each with its layer, its service and its own
//! `ResponseFuture`:
//!
//! * [`validate_bearer`]: [`ValidateBearerLayer`] → [`ValidateBearer`]; what is checked, in
//!   order, is listed there.
//! * [`require_scope`]: [`RequireScopeLayer`] → [`RequireScope`], placed inside the former.
//!
//! and the pieces they share:
//!
//! * [`verifier`]: the [`Verifier`] that checks a token (signature, claims, revocation) and its
//!   builder, for one issuer or several ([`Issuer`]), each judged by its own keys; also usable
//!   without the middleware.
//! * [`readiness`]: the [`Readiness`] policy, whether the revocation state can be trusted right
//!   now, with which a layer refuses every request (503, gRPC 14) until its revocation feed has
//!   synced or once it has been out of contact too long.
//! * [`rejection`]: why a request was refused ([`Rejection`]), the [`OnRejection`] policy that
//!   turns it into a response, [`DefaultRejection`], and the RFC 6750 challenge
//!   ([`Rejection::challenge`]).
//! * [`remote_jwks`]: keys fetched from another issuer's JWKS URL and kept fresh.
//! * [`client_cert`]: where certificate-bound tokens find the client certificate behind a proxy
//!   that terminates TLS ([`FromTrustedProxyLayer`](client_cert::FromTrustedProxyLayer)).
//! * `extract` (feature `axum`): the axum extractor for [`VerifiedClaims`].
//!
//! The types most applications name are re-exported here at the root.
//!
//! In short: a request without a token gets 401, a malformed `Authorization` header 400
//! `invalid_request`, a bad, expired or revoked token 401 `invalid_token`, a token without a
//! required scope 403 `insufficient_scope`; gRPC requests get trailers-only responses with
//! `grpc-status` 16 (7 for a missing scope). A layer whose [`Readiness`] reports [`NotReady`]
//! answers every request 503 with `Retry-After: 1` (gRPC 14). Accepted requests carry [`VerifiedClaims`] in their
//! extensions.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm};
//! use tollgate_layer::{RequireScopeLayer, ValidateBearerLayer, VerifiedClaims, Verifier};
//! use tower::ServiceBuilder;
//!
//! let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1")?;
//! let index = Arc::new(RevocationIndex::new());
//! let verifier = Verifier::builder()
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .keys(keys)
//!     .revocation_index(index)
//!     .build()?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(ValidateBearerLayer::new(verifier))
//!     .layer(RequireScopeLayer::new("orders:read"))
//!     .service_fn(|req: http::Request<String>| async move {
//!         let claims = req.extensions().get::<VerifiedClaims>();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{:?}", claims.map(|c| &c.sub))))
//!     });
//! # let _ = service;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does not cover
//!
//! Token issuance, refresh and introspection (see `tollgate-issuer`); DPoP sender-constraining
//! (tokens with a `cnf` the layer cannot check are refused); rate limiting. Certificate-bound
//! tokens (RFC 8705) are checked against the request's client certificate (see
//! [`client_cert`]); terminating TLS is the server's job. Revocations reach the index through whoever applies
//! events to it: an in-process issuer, or a replication feed.
//!
//! # Cargo features
//!
//! * `rustls` (default): HTTPS for remote JWKS URLs.
//! * `axum`: the [`VerifiedClaims`] extractor (module `extract`).
//! * `tonic`: `tonic::server::NamedService` for [`ValidateBearer`] and [`RequireScope`], so they
//!   can wrap one gRPC service.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod binding;
mod cache;
mod claims;
pub mod client_cert;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod purge;
pub mod readiness;
pub mod rejection;
pub mod remote_jwks;
pub mod require_scope;
pub mod validate_bearer;
pub mod verifier;

pub use claims::VerifiedClaims;
pub use purge::spawn_index_purge;
pub use readiness::{AlwaysReady, NotReady, Readiness};
pub use rejection::{DefaultRejection, OnRejection, Rejection};
pub use remote_jwks::{FetchCounts, RemoteJwks};
pub use require_scope::{RequireScope, RequireScopeLayer};
pub use validate_bearer::{ValidateBearer, ValidateBearerLayer};
pub use verifier::{Issuer, TokenError, Verifier, VerifierBuilder};
