//! The model shared by tollgate's validator and issuer: access-token [`Claims`], the
//! [`RevocationIndex`] fed by [`RevocationEvent`]s, the [`KeySet`] that signs and verifies tokens,
//! and the [`Clock`] every time comparison goes through.
//!
//! Nothing here knows about HTTP servers; the `tollgate-layer` and `tollgate-issuer` crates build
//! on these types.
//!
//! # Example
//!
//! ```
//! use tollgate_core::{CutoffScope, RevocationEvent, RevocationIndex, TokenIdentity, UnixMillis};
//!
//! let index = RevocationIndex::new();
//! let token = TokenIdentity {
//!     jti: "t-1",
//!     grant_id: None,
//!     tenant: "/Org/Sub",
//!     subject: "alice",
//!     client_id: "web",
//!     issuer: "https://id.example.com",
//!     session: None,
//!     issued_at: UnixMillis(1_000),
//! };
//! assert!(index.check(&token).is_ok());
//!
//! // Everything under /Org issued before t = 2 s is now rejected.
//! index.apply(&RevocationEvent::Cutoff {
//!     scope: CutoffScope::Tenant("/Org".into()),
//!     issued_before: UnixMillis(2_000),
//! });
//! assert!(index.check(&token).is_err());
//! ```
//!
//! # Cargo features
//!
//! * `test-util`: test helpers that are not part of the production API (`ManualClock`).
//!   Enable it in `[dev-dependencies]`.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod certificate;
mod claims;
mod clock;
pub mod jws;
pub mod keys;
mod peer;
pub mod random;
pub mod revocation;
mod tenant;
mod time;

pub use certificate::ClientCertificate;
pub use claims::{Audience, Claims, Confirmation};
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use keys::{
    KeyError, KeySet, SigningAlgorithm, SigningKey, UnsupportedAlgorithm, VerifyError, VerifyingKey,
};
pub use peer::PeerAddr;
pub use revocation::{
    CutoffScope, IndexStats, RevocationEvent, RevocationIndex, Revoked, TokenIdentity,
};
pub use tenant::{TenantPath, TenantPathError};
pub use time::UnixMillis;
