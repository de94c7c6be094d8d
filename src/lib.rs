//! tollgate: issue, validate and **revoke** OAuth 2.0 access tokens in tower stacks.
//!
//! This facade re-exports the workspace's crates:
//!
//! * [`core`]: claims, the revocation index and its events, keys and JWKS.
//! * [`layer`]: the bearer-validation tower Layer.
//! * `issuer` (feature `issuer`): the token service, `TokenService`, and the store contract
//!   (`issuer::store`, with `MemoryStore`).
//! * `sqlite` (feature `issuer`): `SqliteStore`, the embedded durable store.
//!
//! # Cargo features
//!
//! * `rustls` (default): HTTPS for remote JWKS URLs.
//! * `axum`: the axum extractor for `VerifiedClaims` (`layer::extract`).
//! * `tonic`: `tonic::server::NamedService` for the middleware.
//! * `issuer`: the token service, as `tollgate::issuer`, and its embedded store, as
//!   `tollgate::sqlite`.
//! * `test-util`: test helpers that are not part of the production API
//!   (`tollgate::core::ManualClock`); for `[dev-dependencies]`.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tollgate_core as core;
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub use tollgate_issuer as issuer;
pub use tollgate_layer as layer;
#[cfg(feature = "issuer")]
#[cfg_attr(docsrs, doc(cfg(feature = "issuer")))]
pub use tollgate_sqlite as sqlite;
