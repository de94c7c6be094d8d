//! Counters of what the receivers saw, for metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What a receiver received, applied and refused, shared with whoever exports metrics. Cheap to
/// clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct SignalStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    applied: AtomicU64,
    replayed: AtomicU64,
    invalid: AtomicU64,
    unavailable: AtomicU64,
    ignored: AtomicU64,
    /// Refusals by reason; a mutex is enough, refusals are rare and never on a request's path.
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// The counters at one instant, from [`SignalStats::snapshot`].
///
/// Non-exhaustive: more counts may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SignalStatsSnapshot {
    /// Signals received (every request that reached the receiver).
    pub received: u64,
    /// Signals validated and published.
    pub applied: u64,
    /// Refused: a `jti` already accepted.
    pub replayed: u64,
    /// Refused: the request or the signal was not valid.
    pub invalid: u64,
    /// Refused: valid, but it could not be published or checked for replay (Redis away).
    pub unavailable: u64,
    /// Valid and acknowledged, but not a revocation this receiver acts on (a Shared Signals
    /// event type it does not translate): never turned into a cutoff.
    pub ignored: u64,
}

impl SignalStats {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> SignalStatsSnapshot {
        let c = &self.inner;
        SignalStatsSnapshot {
            received: c.received.load(Ordering::Relaxed),
            applied: c.applied.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
        }
    }

    /// Refusals counted by reason, for receivers that tell them apart (the Shared Signals
    /// receiver: `signature`, `issuer`, `audience`, `stale`, `subject_format`, ...): a metric
    /// label each, with how many signals it refused.
    pub fn refused_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn received(&self) {
        self.inner.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn applied(&self) {
        self.inner.applied.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn replayed(&self) {
        self.inner.replayed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn invalid(&self) {
        self.inner.invalid.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unavailable(&self) {
        self.inner.unavailable.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ignored(&self) {
        self.inner.ignored.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal under `reason` (in addition to `invalid` or `replayed`).
    pub(crate) fn refused(&self, reason: &'static str) {
        let mut refused = self
            .inner
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *refused.entry(reason).or_insert(0) += 1;
    }
}
