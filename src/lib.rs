//! tollgate: issue, validate and **revoke** OAuth 2.0 access tokens in tower stacks.
//!
//! This facade re-exports the workspace's crates:
//!
//! * [`core`]: claims, the revocation index and its events, keys and JWKS.
//! * [`layer`]: the bearer-validation tower Layer.
//! * `issuer` (feature `issuer`): the token service, `TokenService`, and its stores.
//!
//! # Cargo features
//!
//! * `rustls` (default): HTTPS for remote JWKS URLs.
//! * `axum`: the axum extractor for `VerifiedClaims` (`layer::extract`).
//! * `tonic`: `tonic::server::NamedService` for the middleware.
//! * `issuer`: the token service, as `tollgate::issuer`.
//! * `test-util`: test helpers that are not part of the production API
//!   (`tollgate::core::ManualClock`); for `[dev-dependencies]`.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tollgate_core as core;
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub use tollgate_issuer as issuer;
pub use tollgate_layer as layer;
