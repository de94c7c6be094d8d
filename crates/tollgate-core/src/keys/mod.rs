//! Signing and verification keys, identified by `kid`, with rotation and JWKS import/export.
//!
//! A [`KeySet`] holds at most one signing key and any number of verification keys (the signing
//! key's own, plus retired keys whose tokens have not expired yet, plus keys fetched from another
//! issuer's JWKS). Every key is bound to exactly one algorithm: a token is verified only when its
//! header's `alg` equals its key's, which rules out `alg` confusion (an RSA public key used as an
//! HMAC secret, `none`, ...).
//!
//! # Example
//!
//! ```
//! use tollgate_core::{KeySet, SigningAlgorithm, SigningKey};
//!
//! let keys = KeySet::new();
//! keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "2026-11")?);
//! let jwks = keys.to_jwks(); // publish this
//! assert_eq!(jwks.keys.len(), 1);
//!
//! // A validator in another process imports the public half.
//! let remote = KeySet::from_jwks(&jwks)?;
//! assert!(remote.find(Some("2026-11")).is_some());
//! # Ok::<(), tollgate_core::KeyError>(())
//! ```

mod algorithm;
mod key_set;
mod signing;
mod verifying;

pub use algorithm::{SigningAlgorithm, UnsupportedAlgorithm};
pub use key_set::{KeySet, VerifyError};
pub use signing::SigningKey;
pub use verifying::VerifyingKey;

use std::fmt;

/// Why a key could not be created, loaded or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    kid: Option<String>,
    reason: String,
}

impl KeyError {
    pub(crate) fn new(kid: Option<&str>, reason: impl Into<String>) -> Self {
        KeyError {
            kid: kid.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {kid:?}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for KeyError {}
