//! The public half of a key (or an HMAC secret): verifies signatures, converts to and from JWK.

use super::signing::MIN_HMAC_SECRET;
use super::{KeyError, SigningAlgorithm};
use aws_lc_rs::hmac;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType,
};
use std::fmt;

#[derive(Clone)]
enum Material {
    /// Ed25519 and P-256 keys, parsed once.
    Parsed(ParsedPublicKey),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// Boxed: the precomputed HMAC state is several times larger than the other variants.
    Hmac(Box<hmac::Key>),
}

/// A key that verifies signatures of exactly one algorithm.
pub struct VerifyingKey {
    kid: String,
    alg: SigningAlgorithm,
    material: Material,
    /// The public JWK; `None` for HMAC secrets, which are never published.
    jwk: Option<Jwk>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn common(kid: &str, alg: KeyAlgorithm) -> CommonParameters {
    CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_algorithm: Some(alg),
        key_id: Some(kid.to_owned()),
        ..CommonParameters::default()
    }
}

impl VerifyingKey {
    /// An Ed25519 (32 raw bytes) or P-256 (65-byte uncompressed point) public key.
    pub(crate) fn from_public_bytes(
        kid: &str,
        alg: SigningAlgorithm,
        bytes: &[u8],
    ) -> Result<Self, KeyError> {
        let (verification, jwk): (
            &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
            Jwk,
        ) = match alg {
            SigningAlgorithm::EdDSA if bytes.len() == 32 => (
                &ED25519,
                Jwk {
                    common: common(kid, KeyAlgorithm::EdDSA),
                    algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: b64(bytes),
                    }),
                },
            ),
            SigningAlgorithm::ES256 if bytes.len() == 65 && bytes[0] == 4 => (
                &ECDSA_P256_SHA256_FIXED,
                Jwk {
                    common: common(kid, KeyAlgorithm::ES256),
                    algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                        key_type: EllipticCurveKeyType::EC,
                        curve: EllipticCurve::P256,
                        x: b64(&bytes[1..33]),
                        y: b64(&bytes[33..]),
                    }),
                },
            ),
            _ => {
                return Err(KeyError::new(
                    Some(kid),
                    format!("malformed {alg} public key"),
                ));
            }
        };
        let parsed = ParsedPublicKey::new(verification, bytes)
            .map_err(|e| KeyError::new(Some(kid), format!("invalid {alg} public key: {e}")))?;
        Ok(VerifyingKey {
            kid: kid.to_owned(),
            alg,
            material: Material::Parsed(parsed),
            jwk: Some(jwk),
        })
    }

    /// An RS256 public key from its big-endian modulus and exponent (at least 2048 bits).
    pub(crate) fn from_rsa_components(kid: &str, n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let n = n.strip_prefix(&[0]).unwrap_or(n);
        if n.len() < 256 || n.len() > 1024 || e.is_empty() || e.len() > 8 {
            return Err(KeyError::new(
                Some(kid),
                "RSA keys must have a 2048 to 8192-bit modulus",
            ));
        }
        Ok(VerifyingKey {
            kid: kid.to_owned(),
            alg: SigningAlgorithm::RS256,
            material: Material::Rsa(RsaPublicKeyComponents {
                n: n.to_vec(),
                e: e.to_vec(),
            }),
            jwk: Some(Jwk {
                common: common(kid, KeyAlgorithm::RS256),
                algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                    key_type: RSAKeyType::RSA,
                    n: b64(n),
                    e: b64(e),
                }),
            }),
        })
    }

    /// An HS256 shared secret (at least 32 bytes). Never exported to a JWKS.
    pub fn hmac(kid: &str, secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET {
            return Err(KeyError::new(
                Some(kid),
                "HS256 secrets must be at least 32 bytes",
            ));
        }
        Ok(VerifyingKey {
            kid: kid.to_owned(),
            alg: SigningAlgorithm::HS256,
            material: Material::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
            jwk: None,
        })
    }

    /// A public key from a JWK (RFC 7517): `OKP`/`Ed25519`, `EC`/`P-256` or `RSA`.
    ///
    /// Refused: symmetric (`oct`) keys — a secret found in a published JWKS would let anyone mint
    /// tokens —, keys marked for encryption, keys whose `alg` is not one tollgate verifies, and
    /// keys without a `kid` (the key is chosen by the token's `kid`).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let kid = jwk
            .common
            .key_id
            .as_deref()
            .ok_or_else(|| KeyError::new(None, "JWK without a \"kid\""))?;
        let err = |reason: &str| KeyError::new(Some(kid), reason.to_owned());
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            return Err(err("key is for encryption (\"use\": \"enc\")"));
        }
        let decode = |field: &str, value: &str| {
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| err(&format!("JWK member {field:?} is not base64url")))
        };
        let declared = jwk.common.key_algorithm;
        let expect = |alg: KeyAlgorithm| match declared {
            None => Ok(()),
            Some(d) if d == alg => Ok(()),
            Some(d) => Err(err(&format!("\"alg\" {d:?} does not match the key type"))),
        };
        match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                expect(KeyAlgorithm::EdDSA)?;
                Self::from_public_bytes(kid, SigningAlgorithm::EdDSA, &decode("x", &p.x)?)
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                expect(KeyAlgorithm::ES256)?;
                let (x, y) = (decode("x", &p.x)?, decode("y", &p.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(err("P-256 coordinates must be 32 bytes"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Self::from_public_bytes(kid, SigningAlgorithm::ES256, &point)
            }
            AlgorithmParameters::RSA(p) => {
                expect(KeyAlgorithm::RS256)?;
                Self::from_rsa_components(kid, &decode("n", &p.n)?, &decode("e", &p.e)?)
            }
            AlgorithmParameters::OctetKey(_) => Err(err(
                "symmetric (\"oct\") keys are never accepted from a JWK set",
            )),
            _ => Err(err("unsupported key type or curve")),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's one algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The public JWK (`None` for HMAC secrets).
    pub fn to_jwk(&self) -> Option<&Jwk> {
        self.jwk.as_ref()
    }

    /// Whether `signature` is a valid `alg` signature of `message` by this key. Always false when
    /// `alg` is not the key's own algorithm. HMAC tags are compared in constant time.
    pub fn verify(&self, alg: SigningAlgorithm, message: &[u8], signature: &[u8]) -> bool {
        if alg != self.alg {
            return false;
        }
        match &self.material {
            Material::Parsed(key) => key.verify_sig(message, signature).is_ok(),
            Material::Rsa(key) => key
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        }
    }

    /// A copy of this key (keys are not `Clone` in the public API so that secrets are not copied
    /// by accident).
    pub(crate) fn duplicate(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            alg: self.alg,
            material: self.material.clone(),
            jwk: self.jwk.clone(),
        }
    }

    /// Whether both keys verify the same signatures (same kid, algorithm and public key).
    pub(crate) fn same_as(&self, other: &VerifyingKey) -> bool {
        self.kid == other.kid
            && self.alg == other.alg
            && self.jwk.is_some()
            && self.jwk == other.jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    #[test]
    fn jwk_round_trip_for_public_algorithms() {
        for alg in [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::RS256,
        ] {
            let key = SigningKey::generate(alg, "kid-1").unwrap();
            let jwk = key.verifying_key().to_jwk().unwrap().clone();
            let imported = VerifyingKey::from_jwk(&jwk).unwrap();
            let sig = key.sign(b"m").unwrap();
            assert!(imported.verify(alg, b"m", &sig), "{alg}");
            assert!(imported.same_as(key.verifying_key()));
        }
    }

    #[test]
    fn refuses_oct_enc_mismatched_and_kidless_jwks() {
        let oct: Jwk = serde_json::from_str(
            r#"{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}"#,
        )
        .unwrap();
        assert!(VerifyingKey::from_jwk(&oct).is_err());
        let ed = SigningKey::generate(SigningAlgorithm::EdDSA, "e").unwrap();
        let mut jwk = ed.verifying_key().to_jwk().unwrap().clone();
        jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        let mut jwk = ed.verifying_key().to_jwk().unwrap().clone();
        jwk.common.key_algorithm = Some(KeyAlgorithm::HS256);
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        let mut jwk = ed.verifying_key().to_jwk().unwrap().clone();
        jwk.common.key_id = None;
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn a_key_never_verifies_another_algorithm() {
        let hs = SigningKey::generate(SigningAlgorithm::HS256, "h").unwrap();
        let tag = hs.sign(b"m").unwrap();
        assert!(
            hs.verifying_key()
                .verify(SigningAlgorithm::HS256, b"m", &tag)
        );
        for other in [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::RS256,
        ] {
            assert!(!hs.verifying_key().verify(other, b"m", &tag));
        }
        assert!(VerifyingKey::hmac("h", b"too short").is_err());
    }
}
