//! The shared, hot-swappable set of keys a validator verifies with and an issuer signs with.

use super::{KeyError, SigningAlgorithm, SigningKey, VerifyingKey};
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use std::fmt;
use std::sync::Arc;

#[derive(Default)]
struct Ring {
    signing: Option<Arc<SigningKey>>,
    verifying: Vec<Arc<VerifyingKey>>,
    /// Bumped whenever a key stops being trusted (removed or replaced): caches of verified
    /// tokens compare it to know their entries may no longer be valid.
    epoch: u64,
}

/// Keys identified by `kid`: at most one signing key and any number of verification keys.
///
/// Cloning is cheap and clones share the keys: an issuer and the validators of the same process
/// hold one `KeySet`, so a rotation is seen by all at once. Readers never block; writers replace
/// the whole (small) ring.
#[derive(Clone, Default)]
pub struct KeySet {
    ring: Arc<ArcSwap<Ring>>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.load();
        f.debug_struct("KeySet")
            .field(
                "signing",
                &ring.signing.as_ref().map(|k| k.kid().to_owned()),
            )
            .field(
                "verifying",
                &ring.verifying.iter().map(|k| k.kid()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why [`KeySet::verify`] refused a signature.
///
/// Non-exhaustive: new reasons may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// No key has the token's `kid` (or the token has no `kid` and the set holds several keys).
    UnknownKey,
    /// The key named by `kid` is for another algorithm than the token's `alg`.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
}

impl KeySet {
    /// An empty key set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A key set with a freshly generated signing key.
    pub fn generate(alg: SigningAlgorithm, kid: impl Into<String>) -> Result<Self, KeyError> {
        let keys = KeySet::new();
        keys.set_signing_key(SigningKey::generate(alg, kid)?);
        Ok(keys)
    }

    /// A verification-only key set from a JWKS document; fails on the first key it cannot use.
    pub fn from_jwks(jwks: &JwkSet) -> Result<Self, KeyError> {
        let keys = KeySet::new();
        let verifying = jwks
            .keys
            .iter()
            .map(VerifyingKey::from_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        keys.replace_verifying_keys(verifying)?;
        Ok(keys)
    }

    /// Makes `key` the signing key. Its verification key is added (replacing a key with the same
    /// `kid`); the previous signing key stays trusted for verification until it is removed.
    pub fn set_signing_key(&self, key: SigningKey) {
        let key = Arc::new(key);
        self.ring.rcu(|ring| {
            // Another key under the same kid stops being trusted.
            let replaced = ring
                .verifying
                .iter()
                .any(|v| v.kid() == key.kid() && !v.same_as(key.verifying_key()));
            let mut verifying: Vec<_> = ring
                .verifying
                .iter()
                .filter(|v| v.kid() != key.kid())
                .cloned()
                .collect();
            verifying.push(Arc::new(key.verifying_key().duplicate()));
            Ring {
                signing: Some(key.clone()),
                verifying,
                epoch: ring.epoch + u64::from(replaced),
            }
        });
    }

    /// Adds a verification key. Fails if another key already has its `kid`.
    pub fn add_verifying_key(&self, key: VerifyingKey) -> Result<(), KeyError> {
        let key = Arc::new(key);
        let mut duplicate = false;
        self.ring.rcu(|ring| {
            duplicate = ring.verifying.iter().any(|v| v.kid() == key.kid());
            let mut verifying = ring.verifying.clone();
            if !duplicate {
                verifying.push(key.clone());
            }
            Ring {
                signing: ring.signing.clone(),
                verifying,
                epoch: ring.epoch,
            }
        });
        if duplicate {
            return Err(KeyError::new(Some(key.kid()), "duplicate kid"));
        }
        Ok(())
    }

    /// Stops trusting the key `kid` (and stops signing with it). Returns whether it was present.
    pub fn remove(&self, kid: &str) -> bool {
        let mut found = false;
        self.ring.rcu(|ring| {
            let verifying: Vec<_> = ring
                .verifying
                .iter()
                .filter(|v| v.kid() != kid)
                .cloned()
                .collect();
            found = verifying.len() != ring.verifying.len();
            Ring {
                signing: ring.signing.clone().filter(|s| s.kid() != kid),
                verifying,
                epoch: ring.epoch + u64::from(found),
            }
        });
        found
    }

    /// Replaces every verification key at once (a JWKS refresh). The signing key, if any, stays.
    /// Fails, changing nothing, if two keys share a `kid`.
    pub fn replace_verifying_keys(&self, keys: Vec<VerifyingKey>) -> Result<(), KeyError> {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.kid() == k.kid()) {
                return Err(KeyError::new(Some(k.kid()), "duplicate kid"));
            }
        }
        let keys: Vec<Arc<VerifyingKey>> = keys.into_iter().map(Arc::new).collect();
        self.ring.rcu(|ring| {
            let dropped = ring
                .verifying
                .iter()
                .any(|old| !keys.iter().any(|new| new.same_as(old)));
            Ring {
                signing: ring.signing.clone(),
                verifying: keys.clone(),
                epoch: ring.epoch + u64::from(dropped),
            }
        });
        Ok(())
    }

    /// The key that signs new tokens.
    pub fn signing_key(&self) -> Option<Arc<SigningKey>> {
        self.ring.load().signing.clone()
    }

    /// The verification key for a token's `kid`. A token without `kid` is matched only when the
    /// set holds exactly one key.
    pub fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyingKey>> {
        let ring = self.ring.load();
        find_in(&ring.verifying, kid).cloned()
    }

    /// Verifies a JWS signature with the key named by `kid`, without cloning the key.
    #[inline]
    pub fn verify(
        &self,
        kid: Option<&str>,
        alg: SigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        let ring = self.ring.load();
        let key = find_in(&ring.verifying, kid).ok_or(VerifyError::UnknownKey)?;
        if key.algorithm() != alg {
            return Err(VerifyError::AlgorithmMismatch);
        }
        if key.verify(alg, message, signature) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// Changes whenever a key stops being trusted. Anything derived from a verification (a cache
    /// of verified tokens) is stale once this moves.
    pub fn epoch(&self) -> u64 {
        self.ring.load().epoch
    }

    /// The `kid`s of every verification key.
    pub fn kids(&self) -> Vec<String> {
        let ring = self.ring.load();
        ring.verifying.iter().map(|k| k.kid().to_owned()).collect()
    }

    /// The public keys as a JWKS document (HMAC secrets are never included).
    pub fn to_jwks(&self) -> JwkSet {
        let ring = self.ring.load();
        JwkSet {
            keys: ring
                .verifying
                .iter()
                .filter_map(|k| k.to_jwk().cloned())
                .collect(),
        }
    }
}

fn find_in<'a>(keys: &'a [Arc<VerifyingKey>], kid: Option<&str>) -> Option<&'a Arc<VerifyingKey>> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid() == kid),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &SigningKey) -> Vec<u8> {
        key.sign(b"msg").unwrap()
    }

    #[test]
    fn rotation_keeps_old_key_for_verification() {
        let keys = KeySet::generate(SigningAlgorithm::EdDSA, "old").unwrap();
        let old_sig = signed(&keys.signing_key().unwrap());
        keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "new").unwrap());
        assert_eq!(keys.signing_key().unwrap().kid(), "new");
        assert_eq!(
            keys.verify(Some("old"), SigningAlgorithm::EdDSA, b"msg", &old_sig),
            Ok(())
        );
        let epoch = keys.epoch();
        assert!(keys.remove("old"));
        assert!(keys.epoch() > epoch, "removal must move the epoch");
        assert_eq!(
            keys.verify(Some("old"), SigningAlgorithm::EdDSA, b"msg", &old_sig),
            Err(VerifyError::UnknownKey)
        );
        assert_eq!(keys.to_jwks().keys.len(), 1);
    }

    #[test]
    fn replacing_a_kid_with_another_key_moves_the_epoch() {
        let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k").unwrap();
        let epoch = keys.epoch();
        keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "other").unwrap());
        assert_eq!(
            keys.epoch(),
            epoch,
            "adding a key leaves every verified token valid"
        );
        keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k").unwrap());
        assert!(
            keys.epoch() > epoch,
            "a new key under an old kid distrusts the old key"
        );
    }

    #[test]
    fn kidless_tokens_only_with_a_single_key() {
        let keys = KeySet::generate(SigningAlgorithm::EdDSA, "a").unwrap();
        let sig = signed(&keys.signing_key().unwrap());
        assert_eq!(
            keys.verify(None, SigningAlgorithm::EdDSA, b"msg", &sig),
            Ok(())
        );
        keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "b").unwrap());
        assert_eq!(
            keys.verify(None, SigningAlgorithm::EdDSA, b"msg", &sig),
            Err(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn algorithm_must_match_the_key() {
        let keys = KeySet::generate(SigningAlgorithm::HS256, "h").unwrap();
        let sig = signed(&keys.signing_key().unwrap());
        assert_eq!(
            keys.verify(Some("h"), SigningAlgorithm::EdDSA, b"msg", &sig),
            Err(VerifyError::AlgorithmMismatch)
        );
        assert!(
            keys.to_jwks().keys.is_empty(),
            "HMAC secrets are never published"
        );
    }

    #[test]
    fn jwks_refresh_moves_epoch_only_when_a_key_goes() {
        let issuer = KeySet::generate(SigningAlgorithm::ES256, "one").unwrap();
        let remote = KeySet::from_jwks(&issuer.to_jwks()).unwrap();
        let epoch = remote.epoch();
        let same = issuer
            .to_jwks()
            .keys
            .iter()
            .map(|j| VerifyingKey::from_jwk(j).unwrap())
            .collect();
        remote.replace_verifying_keys(same).unwrap();
        assert_eq!(remote.epoch(), epoch, "same keys: nothing stale");
        issuer.set_signing_key(SigningKey::generate(SigningAlgorithm::ES256, "two").unwrap());
        issuer.remove("one");
        let rotated = KeySet::from_jwks(&issuer.to_jwks()).unwrap();
        remote
            .replace_verifying_keys(vec![rotated.find(Some("two")).unwrap().duplicate()])
            .unwrap();
        assert!(remote.epoch() > epoch);
        assert_eq!(remote.kids(), ["two"]);
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let a = SigningKey::generate(SigningAlgorithm::EdDSA, "x").unwrap();
        let b = SigningKey::generate(SigningAlgorithm::EdDSA, "x").unwrap();
        let keys = KeySet::new();
        keys.add_verifying_key(a.verifying_key().duplicate())
            .unwrap();
        assert!(
            keys.add_verifying_key(b.verifying_key().duplicate())
                .is_err()
        );
        assert!(
            keys.replace_verifying_keys(vec![
                a.verifying_key().duplicate(),
                b.verifying_key().duplicate()
            ])
            .is_err()
        );
    }
}
