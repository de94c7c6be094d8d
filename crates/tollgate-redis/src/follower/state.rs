//! What a follower knows about itself, shared lock-free with the request path.

use crate::wire::StreamId;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tollgate_core::UnixMillis;

/// The follower's state, written by its task and read by health checks on every request.
#[derive(Debug, Default)]
pub(crate) struct FeedState {
    synced: AtomicBool,
    connected: AtomicBool,
    /// When Redis last answered, Unix ms (0: never).
    last_contact: AtomicI64,
    /// The lag of the last event applied, ms (-1: none yet).
    lag: AtomicI64,
    applied: AtomicU64,
    skipped: AtomicU64,
    snapshot_loads: AtomicU64,
    snapshots_written: AtomicU64,
    last_id: Mutex<StreamId>,
    /// Set while the follower refuses what Redis holds; read on every request, so an atomic
    /// beside the reason (which only status pages and logs read).
    refusing: AtomicBool,
    refused: Mutex<Option<String>>,
}

pub(crate) fn now() -> UnixMillis {
    UnixMillis::from(std::time::SystemTime::now())
}

impl FeedState {
    pub(crate) fn new() -> Self {
        FeedState {
            lag: AtomicI64::new(-1),
            ..FeedState::default()
        }
    }

    /// Redis answered.
    pub(crate) fn touch(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.last_contact.store(now().0, Ordering::Relaxed);
    }

    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How long since Redis last answered; `None` if it never has.
    pub(crate) fn since_contact(&self) -> Option<Duration> {
        let last = self.last_contact.load(Ordering::Relaxed);
        (last > 0).then(|| Duration::from_millis(u64::try_from(now().0 - last).unwrap_or(0)))
    }

    pub(crate) fn applied(
        &self,
        id: StreamId,
        count: u64,
        skipped: u64,
        published: Option<UnixMillis>,
    ) {
        self.applied.fetch_add(count, Ordering::Relaxed);
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
        if let Some(at) = published {
            self.lag.store((now().0 - at.0).max(0), Ordering::Relaxed);
        }
        self.set_last_id(id);
    }

    pub(crate) fn set_last_id(&self, id: StreamId) {
        if let Ok(mut last) = self.last_id.lock() {
            *last = id;
        }
    }

    pub(crate) fn snapshot_loaded(&self, skipped: u64) {
        self.snapshot_loads.fetch_add(1, Ordering::Relaxed);
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
    }

    /// The follower refuses what Redis holds, for `reason`: it is not following until a load
    /// succeeds.
    pub(crate) fn refuse(&self, reason: String) {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(reason);
        }
        self.refusing.store(true, Ordering::Release);
    }

    /// A load succeeded: whatever was refused before is over.
    pub(crate) fn accept(&self) {
        self.refusing.store(false, Ordering::Release);
        if let Ok(mut refused) = self.refused.lock() {
            *refused = None;
        }
    }

    pub(crate) fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot_written(&self) {
        self.snapshots_written.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status(&self) -> FeedStatus {
        let lag = self.lag.load(Ordering::Relaxed);
        FeedStatus {
            synced: self.is_synced(),
            connected: self.connected.load(Ordering::Relaxed),
            last_id: self.last_id.lock().map(|id| *id).unwrap_or_default(),
            lag: u64::try_from(lag).ok().map(Duration::from_millis),
            since_contact: self.since_contact(),
            applied: self.applied.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            snapshot_loads: self.snapshot_loads.load(Ordering::Relaxed),
            snapshots_written: self.snapshots_written.load(Ordering::Relaxed),
            refused: self.refused.lock().ok().and_then(|r| r.clone()),
        }
    }
}

/// A follower's state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStatus {
    /// The first sync is done: the snapshot was applied and the stream read up to its end. Once
    /// true it stays true (the index never forgets); staleness is `since_contact`'s business.
    pub synced: bool,
    /// The last exchange with Redis succeeded.
    pub connected: bool,
    /// The id of the last stream entry applied (or of the snapshot loaded).
    pub last_id: StreamId,
    /// For the last event applied: when it was applied minus when it was published (clocks of
    /// two hosts: skew shows up here).
    pub lag: Option<Duration>,
    /// How long since Redis last answered; `None` if it never has.
    pub since_contact: Option<Duration>,
    /// Stream entries applied.
    pub applied: u64,
    /// Stream entries it could not read and skipped, logged, under
    /// [`OnUnreadable::Skip`](crate::OnUnreadable::Skip) (under the default policy it stops at
    /// them instead: see `refused`).
    pub skipped: u64,
    /// Snapshots loaded: at start, after Redis lost its data, after the stream was trimmed past
    /// this follower.
    pub snapshot_loads: u64,
    /// Snapshots this follower wrote.
    pub snapshots_written: u64,
    /// Why the follower refuses what Redis holds, while it does: a snapshot it cannot read, or
    /// one that the stream contradicts (it claims entries the stream never had, or the stream
    /// lost entries it does not cover), which honest producers never write and trusting could
    /// un-revoke tokens; or, under [`OnUnreadable::Refuse`](crate::OnUnreadable::Refuse), the
    /// stream entry it cannot read and stopped at (by id), written by a newer tollgate or not by
    /// tollgate. Meanwhile it follows nothing, retries every second, and its health is
    /// [`NotReady::Inconsistent`](tollgate_layer::NotReady::Inconsistent) under any policy but
    /// [`HealthPolicy::always_serve`](crate::HealthPolicy::always_serve).
    pub refused: Option<String>,
}
