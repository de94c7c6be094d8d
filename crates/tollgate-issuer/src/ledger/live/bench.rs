//! A handle on the live tokens for the benches that measure them (`benches/live_memory.rs`):
//! feature `test-util`, hidden, not part of the API.

use super::LiveTokens;
use crate::store::AccessTokenRecord;
use tollgate_core::{CutoffScope, RevocationIndex, UnixMillis};

/// The issuer's live access tokens, alone (no store, no index of its own).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct LiveTokensBench(LiveTokens);

impl LiveTokensBench {
    /// Registers an issued access token, as issuance does.
    pub fn insert(&self, record: &AccessTokenRecord) {
        self.0.insert_access(record);
    }

    /// What a batch revocation of `scope` at `before` counts for the token service `issuer`
    /// (see `count_cut_off`).
    pub fn count_cut_off(
        &self,
        issuer: &str,
        scope: &CutoffScope,
        before: UnixMillis,
        now: UnixMillis,
        index: &RevocationIndex,
    ) -> u64 {
        self.0.count_cut_off(issuer, scope, before, now, index)
    }

    /// Forgets access tokens that expired before `before`, in purge steps of `budget`; returns
    /// (tokens forgotten, steps taken).
    pub fn purge(&self, before: UnixMillis, budget: usize) -> (usize, usize) {
        let (mut removed, mut steps) = (0, 0);
        loop {
            let step = self.0.purge_access(before, budget);
            removed += step.removed;
            steps += 1;
            if !step.more {
                return (removed, steps);
            }
        }
    }

    /// Access tokens registered.
    pub fn len(&self) -> usize {
        self.0.len().0
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
