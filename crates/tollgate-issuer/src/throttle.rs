//! Throttling of failed password sign-ins, per username: after a few failures each further
//! attempt must wait, doubling up to a ceiling, and a success or a quiet period clears the record.
//! The legitimate user is slowed down during an attack, never locked out for good.

use dashmap::DashMap;
use std::time::Duration;
use tollgate_core::UnixMillis;

/// Failures allowed before attempts are delayed.
const FREE_FAILURES: u32 = 5;
/// The first delay; each further failure doubles it.
const BASE_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// A record with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Usernames tracked at most: beyond it, the oldest quiet records are dropped first, then new
/// names are throttled as if they had failed (memory stays bounded under a username spray).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: UnixMillis,
    blocked_until: UnixMillis,
}

/// Failed-attempt records by username (whether or not the user exists, so the throttle itself
/// reveals nothing).
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    records: DashMap<String, Record, foldhash::fast::RandomState>,
}

impl LoginThrottle {
    /// `Some(wait)` when `username` must not try again yet.
    pub(crate) fn check(&self, username: &str, now: UnixMillis) -> Option<Duration> {
        let record = *self.records.get(username)?;
        if record.blocked_until > now {
            let ms = (record.blocked_until.0 - now.0).max(0) as u64;
            Some(Duration::from_millis(ms).max(Duration::from_secs(1)))
        } else {
            None
        }
    }

    /// Records a failed attempt.
    pub(crate) fn failed(&self, username: &str, now: UnixMillis) {
        if self.records.len() >= MAX_TRACKED && !self.records.contains_key(username) {
            self.forget_quiet(now);
            if self.records.len() >= MAX_TRACKED {
                return;
            }
        }
        let mut entry = self.records.entry(username.to_owned()).or_insert(Record {
            failures: 0,
            last_failure: now,
            blocked_until: UnixMillis(i64::MIN),
        });
        let record = entry.value_mut();
        if now.saturating_sub(FORGET_AFTER) > record.last_failure {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        if record.failures >= FREE_FAILURES {
            let doublings = (record.failures - FREE_FAILURES).min(16);
            let delay = BASE_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
            record.blocked_until = now.saturating_add(delay);
        }
    }

    /// Clears the record after a successful sign-in.
    pub(crate) fn succeeded(&self, username: &str) {
        self.records.remove(username);
    }

    /// Drops records that have been quiet for [`FORGET_AFTER`].
    pub(crate) fn forget_quiet(&self, now: UnixMillis) {
        let horizon = now.saturating_sub(FORGET_AFTER);
        self.records
            .retain(|_, r| r.last_failure > horizon || r.blocked_until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_after_free_failures_then_doubles_then_forgets() {
        let throttle = LoginThrottle::default();
        let t0 = UnixMillis(1_000_000);
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failed("bob", t0);
            assert_eq!(throttle.check("bob", t0), None);
        }
        throttle.failed("bob", t0);
        assert_eq!(throttle.check("bob", t0), Some(Duration::from_secs(1)));
        let t1 = t0.saturating_add(Duration::from_secs(2));
        assert_eq!(throttle.check("bob", t1), None, "the wait ends");
        throttle.failed("bob", t1);
        assert_eq!(throttle.check("bob", t1), Some(Duration::from_secs(2)));
        // Others are unaffected.
        assert_eq!(throttle.check("alice", t1), None);
        // A success clears the record.
        throttle.succeeded("bob");
        assert_eq!(throttle.check("bob", t1), None);
    }

    #[test]
    fn the_delay_is_capped_and_quiet_records_are_forgotten() {
        let throttle = LoginThrottle::default();
        let t0 = UnixMillis(0);
        for _ in 0..100 {
            throttle.failed("bob", t0);
        }
        assert_eq!(throttle.check("bob", t0), Some(MAX_DELAY));
        let later = t0.saturating_add(FORGET_AFTER + MAX_DELAY + Duration::from_secs(1));
        assert_eq!(throttle.check("bob", later), None);
        throttle.forget_quiet(later);
        assert!(throttle.records.is_empty());
    }
}
