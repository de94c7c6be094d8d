//! The private half of a key: signs tokens, exports itself for storage.

use super::{KeyError, SigningAlgorithm, VerifyingKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use aws_lc_rs::{hmac, rsa::KeySize};
use std::fmt;

/// Shortest HMAC secret accepted: RFC 7518 §3.2 requires at least the hash size.
pub(crate) const MIN_HMAC_SECRET: usize = 32;

enum Material {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    /// Boxed: the precomputed HMAC state is several times larger than the other variants.
    Hmac(Box<hmac::Key>),
}

/// A private signing key with its `kid` and its one algorithm.
pub struct SigningKey {
    kid: String,
    alg: SigningAlgorithm,
    material: Material,
    /// PKCS#8 DER of asymmetric keys, or the raw secret of HMAC keys: what `to_der` exports.
    secret: Vec<u8>,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key (RSA keys are 2048 bits; HMAC secrets 32 random bytes).
    pub fn generate(alg: SigningAlgorithm, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        let fail = |what: &str| KeyError::new(Some(&kid), format!("cannot generate {what} key"));
        let der = match alg {
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate()
                .and_then(|k| k.to_pkcs8())
                .map_err(|_| fail("Ed25519"))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(|_| fail("P-256"))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map_err(|_| fail("RSA"))?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::HS256 => {
                let mut secret = vec![0u8; MIN_HMAC_SECRET];
                aws_lc_rs::rand::fill(&mut secret).map_err(|_| fail("HMAC"))?;
                secret
            }
        };
        Self::from_der(alg, kid, &der)
    }

    /// Loads a key exported by [`to_der`](Self::to_der): PKCS#8 DER for EdDSA, ES256 and RS256,
    /// the raw secret (at least 32 bytes) for HS256.
    pub fn from_der(
        alg: SigningAlgorithm,
        kid: impl Into<String>,
        der: &[u8],
    ) -> Result<Self, KeyError> {
        let kid = kid.into();
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            KeyError::new(Some(&kid), format!("not a valid {alg} PKCS#8 key: {e}"))
        };
        let (material, verifying) = match alg {
            SigningAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?;
                let public =
                    VerifyingKey::from_public_bytes(&kid, alg, pair.public_key().as_ref())?;
                (Material::Ed(pair), public)
            }
            SigningAlgorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?;
                let public =
                    VerifyingKey::from_public_bytes(&kid, alg, pair.public_key().as_ref())?;
                (Material::Ec(pair), public)
            }
            SigningAlgorithm::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
                let public = pair.public_key();
                let public = VerifyingKey::from_rsa_components(
                    &kid,
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )?;
                (Material::Rsa(pair), public)
            }
            SigningAlgorithm::HS256 => {
                let public = VerifyingKey::hmac(&kid, der)?;
                (
                    Material::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, der))),
                    public,
                )
            }
        };
        Ok(SigningKey {
            kid,
            alg,
            material,
            secret: der.to_vec(),
            verifying,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's one algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The key that verifies this key's signatures.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The key in storable form (PKCS#8 DER, or the HMAC secret). Handle as a secret.
    pub fn to_der(&self) -> &[u8] {
        &self.secret
    }

    /// Signs `message` (for a JWS: `base64url(header) "." base64url(payload)`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = || KeyError::new(Some(&self.kid), "signing failed");
        match &self.material {
            Material::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Material::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            Material::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(|_| failed())?;
                Ok(sig)
            }
            Material::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies_and_round_trips() {
        for &alg in SigningAlgorithm::ALL {
            let key = SigningKey::generate(alg, "k1").unwrap();
            let sig = key.sign(b"message").unwrap();
            assert!(key.verifying_key().verify(alg, b"message", &sig), "{alg}");
            assert!(!key.verifying_key().verify(alg, b"messagE", &sig), "{alg}");
            let again = SigningKey::from_der(alg, "k1", key.to_der()).unwrap();
            let sig2 = again.sign(b"message").unwrap();
            assert!(key.verifying_key().verify(alg, b"message", &sig2), "{alg}");
        }
    }

    #[test]
    fn refuses_garbage_and_short_secrets() {
        assert!(SigningKey::from_der(SigningAlgorithm::EdDSA, "k", b"nope").is_err());
        assert!(SigningKey::from_der(SigningAlgorithm::HS256, "k", b"short").is_err());
        let ed = SigningKey::generate(SigningAlgorithm::EdDSA, "k").unwrap();
        assert!(SigningKey::from_der(SigningAlgorithm::ES256, "k", ed.to_der()).is_err());
    }
}
