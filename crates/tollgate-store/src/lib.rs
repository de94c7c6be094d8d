//! Durable state: what the issuer must not forget across restarts and crashes.
//!
//! The issuer keeps its working state in memory (the revocation index, the live tokens it has
//! issued, the refresh tokens by hash) and writes every change to a [`Store`] as a [`Record`].
//! On start it reads the live records back with [`Store::load`] and rebuilds that state, so a
//! restart forgets nothing.
//!
//! Two implementations: [`SqliteStore`], an embedded SQLite database in a data directory, and
//! [`MemoryStore`], which keeps everything in the process (for tests, or by explicit choice).
//! A third-party store checks itself against the same contract with `testing::check_store`
//! (feature `test-util`).
//!
//! A store that several issuer processes share (replicas on one database, such as
//! `tollgate_postgres::PostgresStore`) says so with [`Store::is_shared`] and takes over what
//! in-process locks cannot do across processes: see [`shared`], and
//! `testing::check_shared_store` for its contract.
//!
//! # The outbox
//!
//! Every revocation a store commits also takes the next number of a durable sequence, in the
//! same transaction. A relay (`tollgate-redis`) reads what lies beyond the position it last
//! published ([`Store::outbox_read`]), publishes it, then records the new position
//! ([`Store::outbox_mark`]). So an event that was committed while Redis was down, or just before
//! the process died, is still published later: nothing committed is ever missing from the
//! stream. The position carries the *epoch* of the Redis data it was published into; when Redis
//! comes back empty (a new epoch), the relay publishes everything still stored, from the start.
//! An event that is revised (a cutoff moved later, a revocation's expiry extended) takes a new
//! number and is published again; applying events is idempotent, so republishing is harmless.

mod memory;
pub mod shared;
mod sqlite;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use memory::MemoryStore;
pub use shared::{Rotation, Settled, SharedCutOff, Stamp, ThrottlePolicy};
pub use sqlite::SqliteStore;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};

/// A boxed, sendable future: the [`Store`] trait is object-safe so the issuer holds a
/// `Arc<dyn Store>` chosen at run time.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// SHA-256 of a refresh token: the only form in which refresh tokens are stored.
pub type TokenHash = [u8; 32];

/// An access token the issuer signed: enough to count it in a batch revocation and to judge it
/// against the revocation index. The token itself is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// `jti`.
    pub jti: String,
    /// The refresh-token family it was minted from, if any.
    pub grant_id: Option<String>,
    /// Tenant path.
    pub tenant: String,
    /// `sub`.
    pub subject: String,
    /// `client_id`.
    pub client_id: String,
    /// Issue instant, millisecond precision.
    pub issued_at: UnixMillis,
    /// Expiry.
    pub expires_at: UnixMillis,
}

/// A refresh token, stored by hash, with what is needed to mint access tokens from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the opaque token.
    pub hash: TokenHash,
    /// The family (grant) it belongs to; rotation keeps the grant id.
    pub grant_id: String,
    /// The client it is bound to.
    pub client_id: String,
    /// The resource owner's subject.
    pub subject: String,
    /// Tenant path.
    pub tenant: String,
    /// Space-separated scopes granted.
    pub scope: String,
    /// Issue instant.
    pub issued_at: UnixMillis,
    /// Expiry.
    pub expires_at: UnixMillis,
    /// Set once the token has been exchanged for a new one: presenting it again is reuse.
    pub rotated: bool,
}

/// One change to durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An access token was issued.
    AccessToken(AccessTokenRecord),
    /// A refresh token was issued.
    RefreshToken(RefreshTokenRecord),
    /// The refresh token with this hash was rotated (exchanged); it stays stored, marked, until
    /// it expires so that a replay is recognised.
    RefreshRotated(TokenHash),
    /// A revocation: stored as the event itself. Token and grant events are kept until their
    /// `expires_at`; cutoffs (one per scope, the latest instant wins) until no token they bind
    /// can still be accepted.
    Revocation(RevocationEvent),
}

/// What [`Store::purge`] forgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purge {
    /// Tokens and token or grant revocations that expired before this instant.
    pub expired_before: UnixMillis,
    /// Cutoffs at or before this instant: every token they could bind has expired.
    pub cutoffs_before: UnixMillis,
}

impl Purge {
    /// Forgets what expired before `expired_before` and the cutoffs at or before
    /// `cutoffs_before`.
    pub fn new(expired_before: UnixMillis, cutoffs_before: UnixMillis) -> Self {
        Purge {
            expired_before,
            cutoffs_before,
        }
    }
}

/// Everything live, as read back on start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Access tokens that had not expired.
    pub access_tokens: Vec<AccessTokenRecord>,
    /// Refresh tokens that had not expired, rotated ones included.
    pub refresh_tokens: Vec<RefreshTokenRecord>,
    /// Every revocation event still stored (token and grant events not yet purged, every cutoff).
    pub revocations: Vec<RevocationEvent>,
}

/// A revocation as the outbox holds it: the event and its place in the store's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its number in the store's sequence: later commits have larger numbers.
    pub seq: u64,
    /// The revocation.
    pub event: RevocationEvent,
}

/// How far a relay has published the outbox: everything numbered up to `published_through` has
/// reached the Redis data identified by `epoch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxPosition {
    /// The epoch of the Redis data published into; empty before the first publication.
    pub epoch: String,
    /// The highest sequence number published into that epoch (0: nothing yet).
    pub published_through: u64,
}

/// The outbox at a glance: where the relay stands and how much is left to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStatus {
    /// The position last recorded with [`Store::outbox_mark`].
    pub position: OutboxPosition,
    /// Stored revocations numbered after that position: the relay's backlog.
    pub pending: u64,
}

/// Why the store could not do what was asked. The message is for logs (it may name files); the
/// issuer answers clients with a generic `503`.
#[derive(Debug)]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// An error with this context.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// Durable storage for the issuer's records.
///
/// Implementations must make [`commit`](Store::commit) durable (on disk, flushed) before its
/// future resolves, and should let concurrent commits share one flush (group commit) rather than
/// flushing once per call.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Writes `records` atomically and durably; resolves once they survive a crash.
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()>;

    /// Queues `records` to be written with the next commit, without waiting: used for facts whose
    /// loss in a crash costs accuracy of batch-revocation counts but never weakens a revocation
    /// (issued access tokens). Returns an error only when the store can no longer write.
    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError>;

    /// Reads back everything live at `now` (called once, on start).
    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded>;

    /// Forgets access and refresh tokens, and token and grant revocations, whose expiry is before
    /// `horizon.expired_before`, and cutoffs whose instant is at or before
    /// `horizon.cutoffs_before`; returns how many records went.
    fn purge(&self, horizon: Purge) -> StoreFuture<'_, u64>;

    /// Makes everything written so far (written-behind records included) durable: called on
    /// shutdown.
    fn flush(&self) -> StoreFuture<'_, ()>;

    /// Where the relay stands and how many revocations wait to be published (see
    /// [the outbox](self#the-outbox)).
    ///
    /// The default answers that this store keeps no outbox: it can serve one process, but not
    /// feed replication.
    fn outbox_status(&self) -> StoreFuture<'_, OutboxStatus> {
        Box::pin(std::future::ready(Err(no_outbox())))
    }

    /// At most `limit` stored revocations numbered after `after`, in sequence order.
    fn outbox_read(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        let _ = (after, limit);
        Box::pin(std::future::ready(Err(no_outbox())))
    }

    /// Records that everything up to `position.published_through` reached `position.epoch`,
    /// durably. Within one epoch the position only moves forward (a late, smaller mark is
    /// ignored); a new epoch replaces the old one.
    fn outbox_mark(&self, position: OutboxPosition) -> StoreFuture<'_, ()> {
        let _ = position;
        Box::pin(std::future::ready(Err(no_outbox())))
    }

    /// Whether several issuer processes may share this store at once. A shared store implements
    /// every method below, and the issuer then leaves issuance instants, batch counts, refresh
    /// rotation and the sign-in throttle to it (see [`shared`]); a store for one process (the
    /// default) never sees those calls.
    fn is_shared(&self) -> bool {
        false
    }

    /// Shared stores: chooses the issue instant from the store's clock, inside one transaction
    /// that holds the issuance lock in shared mode, commits the records `stamp` builds from it
    /// durably, and returns it. Concurrent calls may share a transaction and its flush.
    fn commit_issued(&self, stamp: Stamp) -> StoreFuture<'_, UnixMillis> {
        drop(stamp);
        Box::pin(std::future::ready(Err(not_shared())))
    }

    /// Shared stores: in one transaction holding the issuance lock exclusively, reads the store's
    /// clock `now`, cuts at `asked` (or `now`, whichever is earlier), counts the live tokens in
    /// `scope` issued before that instant that no stored revocation refuses yet (access tokens
    /// not expired at `now`; refresh tokens not expired, not rotated, whose grant is not revoked),
    /// and records the cutoff as a revocation with the next outbox number.
    fn cut_off(
        &self,
        scope: &CutoffScope,
        asked: Option<UnixMillis>,
    ) -> StoreFuture<'_, SharedCutOff> {
        let _ = (scope, asked);
        Box::pin(std::future::ready(Err(not_shared())))
    }

    /// Shared stores: the refresh token with this hash, rotated or not, unless it expired.
    fn refresh_token(&self, hash: &TokenHash) -> StoreFuture<'_, Option<RefreshTokenRecord>> {
        let _ = hash;
        Box::pin(std::future::ready(Err(not_shared())))
    }

    /// Shared stores: marks the refresh token rotated if it is not, as one compare-and-set
    /// visible to every process at once, and says what it found.
    fn rotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, Rotation> {
        let _ = hash;
        Box::pin(std::future::ready(Err(not_shared())))
    }

    /// Shared stores: undoes a [`rotate_refresh`](Store::rotate_refresh) whose replacement was
    /// never issued (the user was disabled meanwhile, the issuance failed).
    fn unrotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, ()> {
        let _ = hash;
        Box::pin(std::future::ready(Err(not_shared())))
    }

    /// Shared stores: counts one sign-in attempt for `key` before it is judged, atomically, and
    /// answers `Some(until)` instead when the key must wait until then (nothing is counted).
    /// A counted attempt that makes `policy.free_failures` or more makes the next one wait
    /// `policy.delay_after(failures)`; a key quiet for `policy.forget_after` starts afresh.
    fn throttle_take(
        &self,
        key: &str,
        now: UnixMillis,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, Option<UnixMillis>> {
        let _ = (key, now, policy);
        Box::pin(std::future::ready(Err(not_shared())))
    }

    /// Shared stores: settles an attempt counted by [`throttle_take`](Store::throttle_take)
    /// under the same `policy`: a success forgets the key, a failure stays counted, and an
    /// undecided attempt is given back.
    fn throttle_settle(
        &self,
        key: &str,
        outcome: Settled,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, ()> {
        let _ = (key, outcome, policy);
        Box::pin(std::future::ready(Err(not_shared())))
    }
}

fn not_shared() -> StoreError {
    StoreError::new("this store serves one process: it cannot coordinate replicas")
}

fn no_outbox() -> StoreError {
    StoreError::new("this store keeps no outbox, so it cannot feed replication")
}
