//! tollgate: issue, validate and **revoke** OAuth 2.0 access tokens in tower stacks.
//!
//! This facade re-exports the workspace's crates:
//!
//! * [`core`]: claims, the revocation index and its events, keys and JWKS.
//! * [`layer`]: the bearer-validation tower Layer.
//! * `issuer` (feature `issuer`): the token service, `TokenService`, and its stores.

pub use tollgate_core as core;
#[cfg(feature = "issuer")]
pub use tollgate_issuer as issuer;
pub use tollgate_layer as layer;
