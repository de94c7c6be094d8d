//! A tower [`Layer`](tower_layer::Layer) that validates JWT bearer access tokens (RFC 9068) inline
//! and rejects tokens that were revoked: one by one, by grant, or by an "issued before T" cutoff.
//!
//! Revocation is an in-memory [`RevocationIndex`](tollgate_core::RevocationIndex) lookup: no
//! network call on the request path. The same layer works in hyper, axum and tonic stacks.
//!
//! # What is checked, in order
//!
//! 1. Exactly one `Authorization` header with a `Bearer` token (RFC 6750) — none: 401 without an
//!    error code (or pass-through in [optional](ValidateBearerLayer::optional) mode); anything
//!    else malformed: 400 `invalid_request`.
//! 2. Token length (default 8 KiB), compact-JWS shape, strict base64url.
//! 3. Header: `alg` one of EdDSA, ES256, RS256, HS256 and allowed by the verifier (never `none`);
//!    no `crit`; `typ` is `at+jwt` (unless turned off).
//! 4. The key named by `kid` exists and is *of the header's `alg`* (no HMAC-with-a-public-key
//!    confusion); the signature verifies.
//! 5. Claims: `iss`, `sub`, `aud`, `exp`, `iat`, `jti`, `client_id` present and well-typed, no claim
//!    named twice; `iss` matches; `aud` names an accepted audience; `exp`, `nbf`, `iat` within the
//!    leeway.
//! 6. The revocation index: token id, grant, and the maximum of every applicable cutoff.
//!
//! Steps 2–5 fail with 401 `invalid_token` and a short `error_description`; step 6 says
//! "revoked". gRPC requests get trailers-only responses with `grpc-status` 16 (7 for
//! [`RequireScopeLayer`]). Accepted requests carry [`VerifiedClaims`] in their extensions.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm};
//! use tollgate_layer::{ValidateBearerLayer, Verifier};
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
//!     .service_fn(|req: http::Request<String>| async move {
//!         let claims = req.extensions().get::<tollgate_layer::VerifiedClaims>();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(format!("{:?}", claims.map(|c| &c.sub))))
//!     });
//! # let _ = service;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does not cover
//!
//! Token issuance, refresh and introspection (see `tollgate-issuer`); mutual TLS or DPoP
//! sender-constraining; rate limiting. Revocations reach the index through whoever applies
//! events to it: an in-process issuer, or a replication feed.
#![warn(missing_docs)]
#![deny(unsafe_code, unreachable_pub)]

mod cache;
mod claims;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod purge;
mod rejection;
mod remote_jwks;
mod require_scope;
mod service;
mod verifier;

pub use claims::VerifiedClaims;
#[cfg(feature = "axum")]
pub use extract::MissingClaims;
pub use future::ResponseFuture;
pub use layer::ValidateBearerLayer;
pub use purge::spawn_index_purge;
pub use rejection::{DefaultRejection, OnRejection, Rejection};
pub use remote_jwks::{RemoteJwks, RemoteJwksBuilder, RemoteJwksError};
pub use require_scope::{RequireScope, RequireScopeFuture, RequireScopeLayer};
pub use service::ValidateBearer;
pub use verifier::{BuildError, DEFAULT_MAX_TOKEN_LEN, TokenError, Verifier, VerifierBuilder};
