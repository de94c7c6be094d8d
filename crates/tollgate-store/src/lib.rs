//! The store contract of tollgate's token service: what it must not forget across restarts and
//! crashes, as three small traits, one per kind of caller.
//!
//! - [`Store`]: what one token-service process needs. The issuer keeps its working state in
//!   memory (the revocation index, the live tokens it has issued, the refresh tokens by hash) and
//!   writes every change as a [`Record`]; on start it reads the live records back with
//!   [`Store::load`] and rebuilds that state, so a restart forgets nothing.
//! - [`Outbox`]: what a relay (`tollgate-redis`) reads to publish revocations to other
//!   processes: the revocations with their sequence numbers, how far they were published, the
//!   backlog. See [the outbox](#the-outbox).
//! - [`SharedStore`]: what several token-service replicas on one database need on top: the
//!   issuance instant and exact batch counts, refresh rotation as a compare-and-set, the sign-in
//!   throttle. See [`shared`].
//!
//! A store says which of the last two it keeps through [`Store::outbox`] and [`Store::shared`],
//! so that the issuer, holding an `Arc<dyn Store>` chosen at run time, knows at start what it
//! may rely on; nothing in the contract fails at run time for want of an implementation.
//!
//! Implementations: [`MemoryStore`] here (everything in the process: tests, or an explicit
//! choice to forget on restart), `tollgate_sqlite::SqliteStore` (the embedded durable store) and
//! `tollgate_postgres::PostgresStore` (replicas on one database). A third-party store checks
//! itself against the same contract with the kit in `testing` (feature `test-util`).
//!
//! # The outbox
//!
//! Every revocation a store commits also takes the next number of a durable sequence, in the
//! same transaction. A relay reads what lies beyond the position it last published
//! ([`Outbox::outbox_read`]), publishes it, then records the new position
//! ([`Outbox::outbox_mark`]). So an event that was committed while Redis was down, or just before
//! the process died, is still published later: nothing committed is ever missing from the
//! stream. The position carries the *epoch* of the Redis data it was published into; when Redis
//! comes back empty (a new epoch), the relay publishes everything still stored, from the start.
//! An event that is revised (a cutoff moved later, a revocation's expiry extended) takes a new
//! number and is published again; applying events is idempotent, so republishing is harmless.
//!
//! Processes sharing one outbox (replicas on one database) would each publish all of it; the
//! relay therefore publishes only while its store grants it the publisher lease
//! ([`Outbox::publisher_lease`]), which one process holds at a time.

mod error;
mod memory;
mod outbox;
mod record;
pub mod shared;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use error::{StoreError, StoreFuture};
pub use memory::MemoryStore;
pub use outbox::{Outbox, OutboxEntry, OutboxPosition, OutboxStatus};
pub use record::{AccessTokenRecord, Loaded, Purge, Record, RefreshTokenRecord, TokenHash};
pub use shared::{LiveCount, Rotation, Settled, SharedCutOff, SharedStore, Stamp, ThrottlePolicy};

use std::fmt;
use std::sync::Arc;
use tollgate_core::UnixMillis;

/// Durable storage for one token-service process: records written, read back on start, purged
/// once expired.
///
/// Implementations must make [`commit`](Store::commit) durable (on disk, flushed) before its
/// future resolves, and should let concurrent commits share one flush (group commit) rather than
/// flushing once per call.
///
/// The trait is object-safe: the issuer holds an `Arc<dyn Store>` chosen at run time.
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

    /// This store's [outbox](crate#the-outbox), if it numbers its revocations for a relay:
    /// `None` for a store that can serve one process but not feed replication.
    ///
    /// No default: a decorator that wraps a store must forward it, or a relay could not be
    /// started on the decorated store.
    fn outbox(self: Arc<Self>) -> Option<Arc<dyn Outbox>>;

    /// What this store does for replicas sharing it, if several token-service processes may use
    /// it at once: the issuer then leaves issuance instants, batch counts, refresh rotation and
    /// the sign-in throttle to it (see [`shared`]). `None` for a store of one process, whose
    /// issuer keeps those promises with in-process locks.
    ///
    /// No default: a decorator that forgot to forward it would silently turn replicas'
    /// coordination back into per-process locks, which cannot keep their promises.
    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>>;
}
