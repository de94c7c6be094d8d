//! Replay protection: a signal's `jti` is accepted once.

use crate::publish::BoxFuture;
use dashmap::DashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tollgate_core::UnixMillis;

/// Remembers which signals (by issuer and `jti`) were already accepted, for as long as they could
/// otherwise be replayed.
///
/// A receiver calls [`first_use`](Self::first_use) after a signal validated and before
/// publishing it, and [`forget`](Self::forget) when publishing failed, so that the provider's
/// retry of the same signal is not taken for a replay.
pub trait ReplayGuard: Send + Sync + 'static {
    /// Records `jti` of `issuer` as used from `now` until `until` (both on the receiver's
    /// clock): `Ok(true)` the first time, `Ok(false)` when it was already recorded and has not
    /// expired.
    fn first_use<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, ReplayError>>;

    /// Forgets a use recorded by [`first_use`](Self::first_use) whose signal then failed.
    fn forget<'a>(&'a self, issuer: &'a str, jti: &'a str) -> BoxFuture<'a, ()>;
}

/// Why the replay guard could not tell whether a signal is new: the receiver refuses the
/// signal (it cannot rule out a replay) and the provider may send it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError(String);

impl ReplayError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ReplayError(message.into())
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReplayError {}

/// Replay protection in this process's memory: right for one receiver. Several receivers behind
/// a load balancer each accept a replayed signal once unless they share a guard
/// ([`crate::redis::RedisReplayGuard`]); a replayed logout only repeats a cutoff already applied,
/// so that costs a duplicate event, never a wrong verdict.
///
/// Entries are forgotten once expired; memory is bounded by the signals accepted within the
/// receiver's freshness window.
#[derive(Debug, Clone, Default)]
pub struct MemoryReplayGuard {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: DashMap<(String, String), i64, foldhash::fast::RandomState>,
    /// The earliest expiry held, so that expired entries are swept only when some are.
    next_expiry: AtomicI64,
}

impl MemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many uses are remembered.
    pub fn len(&self) -> usize {
        self.inner.used.len()
    }

    /// Whether no use is remembered.
    pub fn is_empty(&self) -> bool {
        self.inner.used.is_empty()
    }

    fn sweep(&self, now: i64) {
        let next = self.inner.next_expiry.load(Ordering::Relaxed);
        if next == 0 || next > now {
            return;
        }
        let mut earliest = i64::MAX;
        self.inner.used.retain(|_, until| {
            let live = *until > now;
            if live {
                earliest = earliest.min(*until);
            }
            live
        });
        let earliest = if earliest == i64::MAX { 0 } else { earliest };
        self.inner.next_expiry.store(earliest, Ordering::Relaxed);
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn first_use<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(async move {
            let now = now.0;
            self.sweep(now);
            let key = (issuer.to_owned(), jti.to_owned());
            let first = match self.inner.used.entry(key) {
                dashmap::mapref::entry::Entry::Occupied(mut held) => {
                    if *held.get() > now {
                        false
                    } else {
                        held.insert(until.0);
                        true
                    }
                }
                dashmap::mapref::entry::Entry::Vacant(slot) => {
                    slot.insert(until.0);
                    true
                }
            };
            if first {
                let next = &self.inner.next_expiry;
                let held = next.load(Ordering::Relaxed);
                if held == 0 || until.0 < held {
                    next.store(until.0, Ordering::Relaxed);
                }
            }
            Ok(first)
        })
    }

    fn forget<'a>(&'a self, issuer: &'a str, jti: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.inner.used.remove(&(issuer.to_owned(), jti.to_owned()));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jti_is_accepted_once_per_issuer_until_it_expires() {
        let guard = MemoryReplayGuard::new();
        let (now, later) = (UnixMillis(1_000), UnixMillis(61_000));
        assert_eq!(guard.first_use("a", "j", now, later).await, Ok(true));
        assert_eq!(guard.first_use("a", "j", now, later).await, Ok(false));
        let other_issuer = guard.first_use("b", "j", now, later).await;
        assert_eq!(other_issuer, Ok(true));
        guard.forget("a", "j").await;
        assert_eq!(guard.first_use("a", "j", now, later).await, Ok(true));
        let just_before = guard.first_use("a", "j", UnixMillis(60_999), later).await;
        assert_eq!(just_before, Ok(false));
        // Once expired the use is swept and the jti may be used again (the receiver's freshness
        // window refuses such an old signal before it gets here).
        let after = guard.first_use("a", "j", later, UnixMillis(99_000)).await;
        assert_eq!(after, Ok(true));
        assert_eq!(guard.len(), 1, "the other issuer's use expired with it");
    }
}
