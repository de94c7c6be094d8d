//! Throttling of failed authentications, per key (a username, a username and where it signs in
//! from, or a client id and where it calls from): after a few failures each further attempt must
//! wait, doubling up to a ceiling, and a success or a quiet period clears the record. The
//! legitimate party is slowed down during an attack, never locked out for good.
//!
//! How many failures are free and how long the waits get is a [`ThrottlePolicy`], given with
//! each attempt, so that one map can hold keys of different policies (as a shared store's one
//! table does): see [`SignInThrottle`](super::SignInThrottle).

use crate::store::ThrottlePolicy;
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

/// The policy of every key but the per-username ceiling: five free failures, then 1 s doubling
/// up to 5 minutes.
pub(crate) const POLICY: ThrottlePolicy =
    ThrottlePolicy::new(FREE_FAILURES, BASE_DELAY, MAX_DELAY, FORGET_AFTER);
/// The per-username ceiling beside per-address keys ([`SignInThrottle::Both`]): four times the
/// free failures, so that a guesser from one address trips its own key long before it can delay
/// the user elsewhere, and the same waits once it trips, so that guesses from many addresses are
/// bounded per user as [`POLICY`] bounds them. Records are forgotten on the same schedule
/// ([`Throttle::forget_quiet`] knows one).
///
/// [`SignInThrottle::Both`]: super::SignInThrottle::Both
pub(crate) const CEILING: ThrottlePolicy =
    ThrottlePolicy::new(4 * FREE_FAILURES, BASE_DELAY, MAX_DELAY, FORGET_AFTER);
/// Keys tracked at most: beyond it, new keys are throttled as if they had failed until the purge
/// timer forgets quiet records (memory stays bounded under a spray of names).
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// Attempts being verified right now: reserved up front, so that concurrent guesses cannot
    /// all slip in before the first failure is recorded.
    in_flight: u32,
    last_failure: UnixMillis,
    blocked_until: UnixMillis,
}

/// Failed-attempt records by key (whether or not the user or client exists, so the throttle
/// itself reveals nothing).
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    records: DashMap<String, Record, foldhash::fast::RandomState>,
    /// Whether a key with no failure may have any number of attempts in flight. Users sign in
    /// one at a time, so their attempts are always counted against the free failures; a busy
    /// client authenticates many requests at once, and must not be refused for that. Once a
    /// client's key has failed, its attempts are counted as a user's are.
    concurrent_while_clean: bool,
}

/// An attempt that holds one of its key's slots until it is settled (or dropped,
/// e.g. when the user directory failed: then it counts as neither success nor failure).
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    key: String,
    policy: ThrottlePolicy,
    settled: bool,
}

impl Throttle {
    /// For client authentication: a client that has not failed is never limited in concurrency
    /// (see `concurrent_while_clean`).
    pub(crate) fn for_clients() -> Self {
        Throttle {
            concurrent_while_clean: true,
            ..Throttle::default()
        }
    }

    /// Reserves an attempt for `key` under `policy`, or says how long to wait first. Attempts are
    /// allowed concurrently only up to the failures still free; once a key is throttled, one at
    /// a time.
    pub(crate) fn begin(
        &self,
        key: &str,
        now: UnixMillis,
        policy: ThrottlePolicy,
    ) -> Result<Attempt<'_>, Duration> {
        let wait_a_little = Duration::from_secs(1);
        if self.records.len() >= MAX_TRACKED && !self.records.contains_key(key) {
            // Under a spray of names, fail closed for names not yet seen; the purge timer
            // forgets quiet records.
            return Err(wait_a_little);
        }
        let mut entry = self.records.entry(key.to_owned()).or_insert(Record {
            failures: 0,
            in_flight: 0,
            last_failure: now,
            blocked_until: UnixMillis(i64::MIN),
        });
        let record = entry.value_mut();
        if now.saturating_sub(policy.forget_after) > record.last_failure && record.in_flight == 0 {
            record.failures = 0;
        }
        if record.blocked_until > now {
            let ms = (record.blocked_until.0 - now.0).max(0) as u64;
            return Err(Duration::from_millis(ms).max(wait_a_little));
        }
        let slots = policy.free_failures.saturating_sub(record.failures).max(1);
        let unlimited = self.concurrent_while_clean && record.failures == 0;
        if !unlimited && record.in_flight >= slots {
            return Err(wait_a_little);
        }
        record.in_flight += 1;
        Ok(Attempt {
            throttle: self,
            key: key.to_owned(),
            policy,
            settled: false,
        })
    }

    fn release(&self, key: &str, policy: ThrottlePolicy, outcome: Option<UnixMillis>) {
        let Some(mut entry) = self.records.get_mut(key) else {
            return;
        };
        let record = entry.value_mut();
        record.in_flight = record.in_flight.saturating_sub(1);
        match outcome {
            Some(now) => {
                record.failures = record.failures.saturating_add(1);
                record.last_failure = now;
                if record.failures >= policy.free_failures {
                    record.blocked_until = now.saturating_add(policy.delay_after(record.failures));
                }
            }
            None => {
                if record.failures == 0 && record.in_flight == 0 {
                    drop(entry);
                    self.records
                        .remove_if(key, |_, r| r.failures == 0 && r.in_flight == 0);
                }
            }
        }
    }

    /// Drops records that have been quiet for [`FORGET_AFTER`] (called by the purge timer).
    pub(crate) fn forget_quiet(&self, now: UnixMillis) {
        let horizon = now.saturating_sub(FORGET_AFTER);
        self.records
            .retain(|_, r| r.in_flight > 0 || r.last_failure > horizon || r.blocked_until > now);
    }
}

impl Attempt<'_> {
    /// The credentials were wrong (or the user or client unknown, or the user disabled).
    pub(crate) fn failed(mut self, now: UnixMillis) {
        self.settled = true;
        self.throttle.release(&self.key, self.policy, Some(now));
    }

    /// The user signed in: the record is cleared.
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        self.throttle.records.remove(&self.key);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.release(&self.key, self.policy, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(throttle: &Throttle, name: &str, now: UnixMillis) {
        throttle.begin(name, now, POLICY).unwrap().failed(now);
    }

    #[test]
    fn delays_after_free_failures_then_doubles_then_forgets() {
        let throttle = Throttle::default();
        let t0 = UnixMillis(1_000_000);
        for _ in 0..FREE_FAILURES {
            fail(&throttle, "bob", t0);
        }
        assert_eq!(
            throttle.begin("bob", t0, POLICY).unwrap_err(),
            Duration::from_secs(1)
        );
        let t1 = t0.saturating_add(Duration::from_secs(2));
        fail(&throttle, "bob", t1);
        assert_eq!(
            throttle.begin("bob", t1, POLICY).unwrap_err(),
            Duration::from_secs(2)
        );
        // Others are unaffected.
        assert!(throttle.begin("alice", t1, POLICY).is_ok());
        // A success clears the record.
        let t2 = t1.saturating_add(Duration::from_secs(3));
        throttle.begin("bob", t2, POLICY).unwrap().succeeded();
        assert!(throttle.begin("bob", t2, POLICY).is_ok());
    }

    #[test]
    fn concurrent_attempts_cannot_exceed_the_free_failures() {
        let throttle = Throttle::default();
        let t0 = UnixMillis(0);
        let held: Vec<_> = (0..FREE_FAILURES)
            .map(|_| throttle.begin("bob", t0, POLICY).unwrap())
            .collect();
        assert!(
            throttle.begin("bob", t0, POLICY).is_err(),
            "no sixth guess in flight"
        );
        drop(held);
        // Two failures recorded: three concurrent slots remain, not five.
        fail(&throttle, "bob", t0);
        fail(&throttle, "bob", t0);
        let held: Vec<_> = (0..3)
            .map(|_| throttle.begin("bob", t0, POLICY).unwrap())
            .collect();
        assert!(throttle.begin("bob", t0, POLICY).is_err());
        drop(held);
        // Abandoned attempts leave no record behind.
        let fresh = Throttle::default();
        drop(fresh.begin("carol", t0, POLICY).unwrap());
        assert!(fresh.records.is_empty());
    }

    #[test]
    fn a_clean_client_is_never_limited_in_concurrency_and_a_failing_one_is() {
        let throttle = Throttle::for_clients();
        let t0 = UnixMillis(0);
        let busy: Vec<_> = (0..100)
            .map(|_| throttle.begin("svc", t0, POLICY).unwrap())
            .collect();
        drop(busy);
        fail(&throttle, "svc", t0);
        let held: Vec<_> = (0..4)
            .map(|_| throttle.begin("svc", t0, POLICY).unwrap())
            .collect();
        assert!(
            throttle.begin("svc", t0, POLICY).is_err(),
            "four free failures left"
        );
        drop(held);
        // Users are always counted.
        let users = Throttle::default();
        let held: Vec<_> = (0..FREE_FAILURES)
            .map(|_| users.begin("bob", t0, POLICY).unwrap())
            .collect();
        assert!(users.begin("bob", t0, POLICY).is_err());
        drop(held);
    }

    #[test]
    fn the_delay_is_capped_and_quiet_records_are_forgotten() {
        let throttle = Throttle::default();
        let mut now = UnixMillis(0);
        let mut failures = 0;
        while failures < 30 {
            match throttle.begin("bob", now, POLICY) {
                Ok(attempt) => {
                    attempt.failed(now);
                    failures += 1;
                }
                Err(wait) => now = now.saturating_add(wait),
            }
        }
        assert_eq!(throttle.begin("bob", now, POLICY).unwrap_err(), MAX_DELAY);
        let later = now.saturating_add(FORGET_AFTER + MAX_DELAY + Duration::from_secs(1));
        assert!(throttle.begin("bob", later, POLICY).is_ok());
        throttle.forget_quiet(later.saturating_add(FORGET_AFTER + Duration::from_secs(1)));
        assert!(throttle.records.is_empty());
    }
}
