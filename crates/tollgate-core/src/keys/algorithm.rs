//! The JWS algorithms tollgate signs and verifies with.

use std::fmt;
use std::str::FromStr;

/// A JWS `alg` tollgate supports. `none` is not one of them, by construction.
///
/// Non-exhaustive: more algorithms (ES384, PS256, ...) may be supported later, so a `match`
/// needs a wildcard arm and [`ALL`](Self::ALL) is a slice, not an array of fixed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037). The default: fast, small keys, deterministic signatures.
    EdDSA,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (keys of 2048 bits or more).
    RS256,
    /// HMAC with SHA-256: a shared secret, for a validator and issuer that trust each other.
    HS256,
}

impl SigningAlgorithm {
    /// Every supported algorithm.
    pub const ALL: &'static [SigningAlgorithm] = &[
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
        SigningAlgorithm::HS256,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::HS256 => "HS256",
        }
    }

    /// Whether the algorithm uses one shared secret for signing and verifying.
    pub fn is_symmetric(self) -> bool {
        self == SigningAlgorithm::HS256
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `alg` value is not one tollgate supports (this includes `none`): the error of
/// [`SigningAlgorithm`]'s `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnsupportedAlgorithm;

impl fmt::Display for UnsupportedAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unsupported signing algorithm")
    }
}

impl std::error::Error for UnsupportedAlgorithm {}

impl FromStr for SigningAlgorithm {
    type Err = UnsupportedAlgorithm;

    /// Exact, case-sensitive match (RFC 7515 §4.1.1: `alg` values are case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlgorithm::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or(UnsupportedAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        for &alg in SigningAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<SigningAlgorithm>(), Ok(alg));
        }
        for bad in ["none", "None", "NONE", "eddsa", "hs256", "RS512", ""] {
            assert!(bad.parse::<SigningAlgorithm>().is_err(), "{bad}");
        }
    }
}
