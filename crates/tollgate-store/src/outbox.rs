//! The outbox: what a relay reads to publish a store's revocations to other processes (see
//! [the outbox](crate#the-outbox)).

use crate::StoreFuture;
use std::fmt;
use tollgate_core::RevocationEvent;

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
    /// The position last recorded with [`Outbox::outbox_mark`].
    pub position: OutboxPosition,
    /// Stored revocations numbered after that position: the relay's backlog.
    pub pending: u64,
}

/// A store's revocations in commit order, and how far a relay has published them: everything a
/// relay needs, and nothing else.
///
/// A store that keeps an outbox numbers every revocation it commits (new, or moved later) in the
/// same transaction; [`Store::outbox`](crate::Store::outbox) hands it to whoever starts the
/// relay.
pub trait Outbox: Send + Sync + fmt::Debug + 'static {
    /// Where the relay stands and how many revocations wait to be published.
    fn outbox_status(&self) -> StoreFuture<'_, OutboxStatus>;

    /// At most `limit` stored revocations numbered after `after`, in sequence order.
    fn outbox_read(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// Records that everything up to `position.published_through` reached `position.epoch`,
    /// durably. Within one epoch the position only moves forward (a late, smaller mark is
    /// ignored); a new epoch replaces the old one.
    fn outbox_mark(&self, position: OutboxPosition) -> StoreFuture<'_, ()>;

    /// Whether this process may publish the outbox now: takes the publisher lease if nobody
    /// holds it, and says whether it holds it. A relay asks before every round and stands by
    /// while the answer is `false`, so that of several processes sharing one outbox exactly one
    /// publishes (the others would only publish copies). A store of one process always holds it.
    ///
    /// A lease that was held can be lost (the holder's session with the database died); the
    /// relay then stands by, and whoever takes it next resumes from the recorded position.
    ///
    /// No default: a store shared by several processes that forgot it would let every one of
    /// them publish the whole outbox.
    fn publisher_lease(&self) -> StoreFuture<'_, bool>;
}
