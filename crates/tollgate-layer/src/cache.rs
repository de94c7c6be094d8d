//! The opt-in cache of tokens whose signature and claims were verified once.

use crate::claims::VerifiedClaims;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone)]
struct Entry {
    claims: VerifiedClaims,
    key_epoch: u64,
}

/// Verified tokens, keyed by the whole token string: a lookup hashes the token and then compares
/// it byte for byte, so two tokens never share an entry. Bounded; eviction is CLOCK-Pro.
pub(crate) struct VerifiedTokenCache {
    entries: quick_cache::sync::Cache<Box<str>, Entry>,
    /// The key-set epoch the entries were verified under; when keys move on, everything goes.
    epoch: AtomicU64,
}

impl VerifiedTokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        VerifiedTokenCache {
            entries: quick_cache::sync::Cache::new(capacity),
            epoch: AtomicU64::new(0),
        }
    }

    /// The cached claims of `token`, if it was verified under the current key epoch and has not
    /// expired by `now_minus_leeway` (Unix seconds). Revocation is the caller's to check.
    pub(crate) fn get(
        &self,
        token: &str,
        key_epoch: u64,
        now_minus_leeway: i64,
    ) -> Option<VerifiedClaims> {
        if self.epoch.load(Ordering::Acquire) != key_epoch {
            self.entries.clear();
            self.epoch.store(key_epoch, Ordering::Release);
            return None;
        }
        let entry = self.entries.get(token)?;
        if entry.key_epoch != key_epoch || now_minus_leeway >= entry.claims.exp {
            self.entries.remove(token);
            return None;
        }
        Some(entry.claims)
    }

    pub(crate) fn insert(&self, token: &str, claims: &VerifiedClaims, key_epoch: u64) {
        if self.epoch.load(Ordering::Acquire) == key_epoch {
            self.entries.insert(
                token.into(),
                Entry {
                    claims: claims.clone(),
                    key_epoch,
                },
            );
        }
    }
}
