//! What a store shared by several issuer processes must do beyond storing records.
//!
//! One process keeps its promises with in-process gates and maps: a refresh token is rotated
//! under a lock, a batch count walks the live tokens while issuance waits, failed sign-ins are
//! counted in a map. Several replicas on one database cannot: each would see only its own
//! tokens and its own locks. A store that several processes may share says so
//! ([`Store::shared`](crate::Store::shared)) and takes those jobs over, as a [`SharedStore`], in
//! the database, where every replica meets:
//!
//! - **issuance** ([`SharedStore::commit_issued`]): the store chooses the issue instant from
//!   *its own clock*, inside the transaction that records the tokens, while holding a lock that
//!   batch counts take exclusively;
//! - **batch counts** ([`SharedStore::cut_off`]): the store takes that lock exclusively, reads
//!   its clock, counts the live tokens the cutoff turns from accepted to refused, and records the
//!   cutoff, in one transaction;
//! - **refresh rotation** ([`SharedStore::rotate_refresh`]): a compare-and-set on the stored
//!   token, so that of two replicas exchanging one refresh token at once exactly one wins and the
//!   other sees reuse;
//! - **the sign-in throttle** ([`SharedStore::throttle_take`]): failures are counted in the
//!   store, so an attacker cannot multiply attempts by the number of replicas.
//!
//! # Why batch counts stay exact across replicas
//!
//! The count must equal the tokens, issued by any replica and answered `200`, that were accepted
//! before the cutoff and are refused after it. A token is answered only after its issuance
//! transaction committed, and that transaction took its issue instant `t` while holding the
//! issuance lock in shared mode. The cutoff's transaction holds the same lock exclusively, then
//! reads `T` from the same clock (the database's). So for every token answered `200`:
//!
//! - either its transaction committed before the cutoff took the lock: its row is visible to the
//!   count, and `t` was read before `T`, so `t <= T`; it is counted exactly when `t < T`, which
//!   is exactly when the cutoff refuses it;
//! - or its transaction took the lock after the cutoff committed: it read the clock after `T`,
//!   so `t >= T`, and the cutoff neither refuses nor counts it.
//!
//! No replica's own clock takes part, so clock skew between replicas cannot move a token to the
//! wrong side. Tokens already refused (by their `jti`, their grant, or an earlier cutoff that
//! covers them) are judged against the revocations stored in the same database, as of the count,
//! so a revocation committed at another replica a moment earlier is never counted twice.

use crate::{Record, RefreshTokenRecord, StoreFuture, TokenHash};
use std::fmt;
use std::time::Duration;
use tollgate_core::{CutoffScope, UnixMillis};

/// What replicas on one database need from it beyond storing records: issuance instants and
/// exact batch counts from one clock and one lock, refresh rotation as a compare-and-set, and
/// one sign-in throttle for all of them (see [the module](self)).
///
/// A store that implements it hands it out through [`Store::shared`](crate::Store::shared); it
/// works on the same database as that store's [`Store`](crate::Store) and
/// [`Outbox`](crate::Outbox) (a cutoff it records is a revocation with an outbox number).
pub trait SharedStore: Send + Sync + fmt::Debug + 'static {
    /// Chooses the issue instant from the store's clock, inside one transaction that holds the
    /// issuance lock in shared mode, commits the records `stamp` builds from it durably, and
    /// returns it. Concurrent calls may share a transaction and its flush.
    fn commit_issued(&self, stamp: Stamp) -> StoreFuture<'_, UnixMillis>;

    /// In one transaction holding the issuance lock exclusively, reads the store's clock `now`,
    /// cuts at `asked` (or `now`, whichever is earlier), counts the live tokens in `scope` issued
    /// before that instant that no stored revocation refuses yet (access tokens not expired at
    /// `now`; refresh tokens not expired, not rotated, whose grant is not revoked), and records
    /// the cutoff as a revocation with the next outbox number.
    fn cut_off(
        &self,
        scope: &CutoffScope,
        asked: Option<UnixMillis>,
    ) -> StoreFuture<'_, SharedCutOff>;

    /// The refresh token with this hash, rotated or not, unless it expired.
    fn refresh_token(&self, hash: &TokenHash) -> StoreFuture<'_, Option<RefreshTokenRecord>>;

    /// Marks the refresh token rotated if it is not, as one compare-and-set visible to every
    /// process at once, and says what it found.
    fn rotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, Rotation>;

    /// Undoes a [`rotate_refresh`](SharedStore::rotate_refresh) whose replacement was never
    /// issued (the user was disabled meanwhile, the issuance failed).
    fn unrotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, ()>;

    /// Counts one sign-in attempt for `key` before it is judged, atomically, and answers
    /// `Some(until)` instead when the key must wait until then (nothing is counted). A counted
    /// attempt that makes `policy.free_failures` or more makes the next one wait
    /// `policy.delay_after(failures)`; a key quiet for `policy.forget_after` starts afresh.
    fn throttle_take(
        &self,
        key: &str,
        now: UnixMillis,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, Option<UnixMillis>>;

    /// Settles an attempt counted by [`throttle_take`](SharedStore::throttle_take) under the
    /// same `policy`: a success forgets the key, a failure stays counted, and an undecided
    /// attempt is given back.
    fn throttle_settle(
        &self,
        key: &str,
        outcome: Settled,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, ()>;

    /// Counts the tokens every replica issued that have not expired by the store's clock:
    /// access tokens, and refresh tokens (exchanged ones included until they expire), as one
    /// process's issuer counts its own. Exact at the instant of the count; an access token
    /// written behind its answer counts once its row is written. For metrics: each replica's
    /// in-process figure sees only the tokens it issued itself.
    fn live_tokens(&self) -> StoreFuture<'_, LiveCount>;
}

/// Tokens not yet expired, as a shared store counts them (see [`SharedStore::live_tokens`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCount {
    /// Access tokens.
    pub access: u64,
    /// Refresh tokens, exchanged ones included.
    pub refresh: u64,
}

/// Builds the records of tokens about to be handed out from the issue instant the store chose
/// (see [`SharedStore::commit_issued`]). A store may call it more than
/// once (a transaction that failed and is retried reads its clock again); the records of the
/// call whose transaction committed are the ones stored, with the instant returned.
pub type Stamp = Box<dyn Fn(UnixMillis) -> Vec<Record> + Send + Sync>;

/// What a compare-and-set rotation of a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was not rotated, and now is: this caller exchanges it.
    Rotated(RefreshTokenRecord),
    /// It had been rotated already: a replay.
    Reused(RefreshTokenRecord),
    /// No such token (or it expired).
    Unknown,
}

/// What a shared cutoff did (see [`SharedStore::cut_off`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedCutOff {
    /// Live tokens (access tokens, and refresh tokens not yet exchanged) it turned from accepted
    /// to refused.
    pub count: u64,
    /// The instant it cuts at: the one asked for, or the store's clock if that is earlier.
    pub issued_before: UnixMillis,
}

/// How failed sign-ins are throttled; the store applies it atomically per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottlePolicy {
    /// Attempts allowed before each further one must wait.
    pub free_failures: u32,
    /// The first wait; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// A key with no failure for this long starts afresh.
    pub forget_after: Duration,
}

impl ThrottlePolicy {
    /// `free_failures` attempts allowed, then waits from `base_delay` doubling up to
    /// `max_delay`; a key with no failure for `forget_after` starts afresh.
    pub const fn new(
        free_failures: u32,
        base_delay: Duration,
        max_delay: Duration,
        forget_after: Duration,
    ) -> Self {
        ThrottlePolicy {
            free_failures,
            base_delay,
            max_delay,
            forget_after,
        }
    }

    /// How long the `failures`-th counted attempt makes the next one wait (zero while free).
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures < self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures).min(16);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// How a throttled attempt ended (see [`SharedStore::throttle_settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The password was right: the key starts afresh.
    Succeeded,
    /// It was wrong: the attempt stays counted.
    Failed,
    /// It was never judged (the directory failed): the attempt is given back.
    Undecided,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_counted_failure_up_to_the_ceiling() {
        let policy = ThrottlePolicy {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        };
        assert_eq!(policy.delay_after(4), Duration::ZERO);
        assert_eq!(policy.delay_after(5), Duration::from_secs(1));
        assert_eq!(policy.delay_after(6), Duration::from_secs(2));
        assert_eq!(policy.delay_after(13), Duration::from_secs(256));
        assert_eq!(policy.delay_after(14), Duration::from_secs(300));
        assert_eq!(policy.delay_after(u32::MAX), Duration::from_secs(300));
    }
}
