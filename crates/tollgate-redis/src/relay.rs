//! The relay: publishes the store's outbox into the stream, in order, and records how far it
//! got, so that every committed revocation reaches Redis, whenever Redis is there.
//!
//! Each round: read the Redis epoch (creating it if Redis is empty); if it is not the epoch the
//! relay last published into, Redis lost its data and everything still stored is published again
//! from the start; read the next batch of the outbox, and `XADD` it in one pipeline. How far it
//! got is recorded in the store (`outbox_mark`) at most once a second and whenever it is idle,
//! off the path from a commit to the stream; a crash before the mark publishes again what
//! followed the last one, which followers absorb (applying is idempotent). Failures are retried
//! with backoff; the revocation's `200` never waits for any of this.
//!
//! Before each round the relay asks the store for its publisher lease
//! (`Outbox::publisher_lease`): of several processes sharing one outbox (replicas on one
//! PostgreSQL) only the holder publishes; the others stand by, look again every
//! [`STAND_BY_CHECK`], and say so in their status. A relay that takes the lease resumes from the
//! position recorded in the store, not from what it remembered: the previous holder published
//! meanwhile.
//!
//! A batch counts as published only once the replicas the target requires hold it
//! ([`published`]: `WAIT` after the `XADD`s). Until then the relay waits for it again on the same
//! connection; after a failed connection, or five short waits in a row (a primary cut off from
//! its replicas, perhaps already replaced), it connects again and writes the batch again.

use crate::connect::{ConnectError, RedisTarget};
use crate::stream;
use crate::wire::Keys;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tollgate_core::UnixMillis;
use tollgate_store::{Outbox, OutboxPosition, StoreError};

/// Outbox entries published per round trip.
const BATCH: usize = 512;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// At most this between attempts: a failover elsewhere (Sentinel, Cluster) is noticed this soon.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// With nothing to do, the relay still looks this often (a missed wake-up costs at most this).
const IDLE_CHECK: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A relay standing by asks for the publisher lease this often: after its holder is gone, the
/// lease is taken within this long of the store releasing it.
pub const STAND_BY_CHECK: Duration = Duration::from_secs(1);

/// Configures a relay: `Relay::new(target, outbox)`, then [`start`](Relay::start).
#[derive(Debug)]
pub struct Relay {
    target: RedisTarget,
    store: Arc<dyn Outbox>,
    keys: Keys,
    wake: Arc<Notify>,
}

impl Relay {
    /// A relay publishing `outbox` (a store's, from `Store::outbox`) to the Redis at `target`,
    /// under the default keys.
    pub fn new(target: RedisTarget, outbox: Arc<dyn Outbox>) -> Self {
        Relay {
            target,
            store: outbox,
            keys: Keys::default(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Publishes under these keys.
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// Wakes the relay when notified (`TokenService::outbox_notify`), instead of waiting for
    /// its next check.
    pub fn wake_on(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Connects once (failing if Redis refuses the credentials), then publishes in a background
    /// task on the current Tokio runtime.
    pub async fn start(self) -> Result<RelayHandle, ConnectError> {
        let first = match self.target.connect_for(&self.keys, RESPONSE_TIMEOUT).await {
            Ok(connection) => Some(connection),
            Err(e) if e.is_refused() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "revocation relay: Redis out of reach; retrying");
                None
            }
        };
        let state = Arc::new(RelayState::default());
        let task = tokio::spawn(run(self, state.clone(), first));
        Ok(RelayHandle {
            state,
            task: Arc::new(task),
        })
    }
}

#[derive(Debug, Default)]
struct RelayState {
    published: AtomicU64,
    backlog: AtomicU64,
    healthy: AtomicBool,
    standby: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl RelayState {
    fn failed(&self, error: String) {
        self.healthy.store(false, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// How the relay is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// Events published since start (republished ones included).
    pub published: u64,
    /// Revocations committed but not yet published, as the store last counted them: after a
    /// round that caught up or recorded its position, and after each failed attempt to reach
    /// Redis (so it grows while Redis is out of reach).
    pub backlog: u64,
    /// The last round succeeded (or, standing by, the last look at the lease did).
    pub healthy: bool,
    /// Another process holds the store's publisher lease and publishes; this relay stands by.
    pub standby: bool,
    /// The last failure, for logs and status pages (no secrets: it names Redis without its
    /// password).
    pub last_error: Option<String>,
}

/// A running relay. Clones share the task; it runs until [`stop`](RelayHandle::stop).
#[derive(Debug, Clone)]
pub struct RelayHandle {
    state: Arc<RelayState>,
    task: Arc<JoinHandle<()>>,
}

impl RelayHandle {
    /// The relay's state now.
    pub fn status(&self) -> RelayStatus {
        RelayStatus {
            published: self.state.published.load(Ordering::Relaxed),
            backlog: self.state.backlog.load(Ordering::Relaxed),
            healthy: self.state.healthy.load(Ordering::Relaxed),
            standby: self.state.standby.load(Ordering::Relaxed),
            last_error: self.state.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Stops publishing; what is left stays in the store's outbox for the next start.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn run(relay: Relay, state: Arc<RelayState>, mut first: Option<MultiplexedConnection>) {
    let mut backoff = MIN_BACKOFF;
    let mut connection: Option<MultiplexedConnection> = None;
    let mut progress = Progress::default();
    // Whether this relay held the publisher lease at its last look (`None`: not known).
    let mut holds: Option<bool> = None;
    loop {
        match relay.store.publisher_lease().await {
            Ok(true) => {
                if holds != Some(true) {
                    // Whoever held the lease before published meanwhile: resume from the
                    // position recorded in the store, not from what this relay remembers.
                    progress = Progress::default();
                    state.standby.store(false, Ordering::Relaxed);
                    holds = Some(true);
                }
            }
            Ok(false) => {
                if holds != Some(false) {
                    tracing::info!(
                        "revocation relay: standing by (another process holds the publisher lease)"
                    );
                    progress = Progress::default();
                    holds = Some(false);
                }
                state.standby.store(true, Ordering::Relaxed);
                state.healthy.store(true, Ordering::Relaxed);
                backoff = MIN_BACKOFF;
                // The backlog of the shared outbox, as the store counts it, on every replica.
                progress.save(&relay, &state);
                tokio::time::sleep(STAND_BY_CHECK).await;
                continue;
            }
            Err(e) => {
                if state.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "revocation relay: cannot ask the store for the publisher lease; will retry");
                }
                state.failed(e.to_string());
                progress = Progress::default();
                holds = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        if connection.is_none() {
            connection = match first.take() {
                Some(c) => Some(c),
                None => match relay
                    .target
                    .connect_for(&relay.keys, RESPONSE_TIMEOUT)
                    .await
                {
                    Ok(c) => Some(c),
                    Err(e) => {
                        state.failed(e.to_string());
                        tracing::debug!(error = %e, "revocation relay: reconnecting");
                        // Revocations keep being committed while Redis is away: the backlog
                        // must count them, or the alert on it stays silent through the outage.
                        progress.save(&relay, &state);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        match round(&relay, &state, conn, &mut progress).await {
            Ok(published) => {
                if !state.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("revocation relay: publishing");
                }
                backoff = MIN_BACKOFF;
                let mut save = progress.due();
                if published < BATCH {
                    // Caught up: wait for the next commit, or look again in a while (and then
                    // record how far it got: the relay is idle).
                    let woken = tokio::time::timeout(IDLE_CHECK, relay.wake.notified()).await;
                    save |= woken.is_err();
                }
                if save {
                    progress.save(&relay, &state);
                }
            }
            Err(Failure::Unconfirmed { acked, wanted }) => {
                let e = format!(
                    "only {acked} of the {wanted} replicas required acknowledged the last batch; \
                     waiting for them"
                );
                if state.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "revocation relay: not safe yet; will retry");
                }
                state.failed(e);
                if progress.short_waits() {
                    // Perhaps a primary cut off from its replicas, or one already replaced: ask
                    // the Sentinels or the Cluster again, and write the batch to the one named.
                    connection = None;
                }
                progress.save(&relay, &state);
                // No growing backoff: `WAIT` already waited, and followers read the batch
                // meanwhile.
                tokio::time::sleep(MIN_BACKOFF).await;
            }
            Err(Failure::Redis(e)) => {
                // Written to a connection that failed: write it again to the next one.
                progress.unconfirmed = None;
                let e = relay.target.error(&e);
                if state.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "revocation relay: Redis failed; will retry");
                }
                state.failed(e.to_string());
                connection = None;
                progress.save(&relay, &state);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(Failure::Store(e)) => {
                if state.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "revocation relay: the store failed; will retry");
                }
                state.failed(e.to_string());
                // Start again from what the store says.
                progress = Progress::default();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

enum Failure {
    Redis(redis::RedisError),
    /// The batch reached the primary, but not enough replicas: it stays unpublished.
    Unconfirmed {
        acked: u32,
        wanted: u32,
    },
    Store(StoreError),
}

/// How far the relay has published. It lives in memory and reaches the store (`outbox_mark`)
/// when the relay is idle, or at least every [`MARK_EVERY`] while it is busy: a mark is only
/// what a restart resumes from, and republishing a little after a crash is harmless, so the
/// path from a commit to the stream never waits for a write.
#[derive(Default)]
struct Progress {
    /// Where the relay stands; read from the store once (`None`: not yet).
    position: Option<OutboxPosition>,
    /// The last position handed to the store.
    saved: Option<OutboxPosition>,
    saved_at: Option<tokio::time::Instant>,
    /// The write in flight: it runs beside the relay, so that publishing never waits for it.
    saving: Option<JoinHandle<()>>,
    /// A batch written on the current connection that too few replicas acknowledged yet: the
    /// position it reaches and its size. The next round waits for it again (`WAIT` counts this
    /// connection's writes) rather than writing it again.
    unconfirmed: Option<(OutboxPosition, usize)>,
    /// How many `WAIT`s in a row fell short for it.
    short: u32,
}

/// After this many `WAIT`s in a row fall short (a second each), the relay connects again and
/// writes the batch again: the primary may be cut off from its replicas, and replaced.
const SHORT_WAITS_BEFORE_REWRITE: u32 = 5;

/// While the relay is busy, its position is recorded at least this often.
const MARK_EVERY: Duration = Duration::from_secs(1);

impl Progress {
    /// Records the position in the store, if the store does not have it yet, then refreshes the
    /// backlog from the store's count; in the background, at most one such task at a time.
    ///
    /// Also called while Redis fails: the position reached before the failure is recorded first,
    /// so the store counts exactly what is committed and not yet published, and the backlog
    /// grows with every revocation committed during the outage. Before the first round (Redis
    /// out of reach since start) there is no position to record, and the store counts from the
    /// one it has.
    fn save(&mut self, relay: &Relay, state: &Arc<RelayState>) {
        if self.saving.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        self.saved_at = Some(tokio::time::Instant::now());
        let mark = self
            .position
            .clone()
            .filter(|position| self.saved.as_ref() != Some(position));
        if mark.is_some() {
            self.saved.clone_from(&mark);
        }
        let (store, state) = (relay.store.clone(), state.clone());
        self.saving = Some(tokio::spawn(async move {
            if let Some(position) = mark
                && let Err(e) = store.outbox_mark(position).await
            {
                tracing::warn!(error = %e, "revocation relay: cannot record its position");
                return;
            }
            // The backlog as the store counts it, now that it knows where the relay stands.
            if let Ok(status) = store.outbox_status().await {
                state.backlog.store(status.pending, Ordering::Relaxed);
            }
        }));
    }

    /// Counts a `WAIT` that fell short; `true` (and the batch forgotten, to be written again)
    /// once they are too many in a row.
    fn short_waits(&mut self) -> bool {
        self.short += 1;
        if self.short < SHORT_WAITS_BEFORE_REWRITE {
            return false;
        }
        self.short = 0;
        self.unconfirmed = None;
        true
    }

    fn due(&self) -> bool {
        self.saved_at.is_none_or(|at| at.elapsed() >= MARK_EVERY)
    }
}

/// Publishes one batch; returns how many outbox entries it covered.
async fn round(
    relay: &Relay,
    state: &RelayState,
    connection: &mut MultiplexedConnection,
    progress: &mut Progress,
) -> Result<usize, Failure> {
    if let Some((reached, count)) = progress.unconfirmed.clone() {
        published(relay, connection).await?;
        return Ok(progress.confirmed(state, reached, count));
    }
    let epoch = stream::ensure_epoch(connection, &relay.keys)
        .await
        .map_err(Failure::Redis)?;
    let position = match &progress.position {
        Some(position) => position.clone(),
        None => {
            let stored = relay.store.outbox_status().await.map_err(Failure::Store)?;
            state.backlog.store(stored.pending, Ordering::Relaxed);
            progress.saved = Some(stored.position.clone());
            progress.position = Some(stored.position.clone());
            stored.position
        }
    };
    let after = if position.epoch == epoch {
        position.published_through
    } else {
        if !position.epoch.is_empty() {
            tracing::warn!(
                "revocation relay: Redis lost its data (new epoch); publishing every stored \
                 revocation again"
            );
        }
        progress.position = Some(OutboxPosition {
            epoch: epoch.clone(),
            published_through: 0,
        });
        0
    };
    let entries = relay
        .store
        .outbox_read(after, BATCH)
        .await
        .map_err(Failure::Store)?;
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let mut pipe = redis::pipe();
    let now = UnixMillis::from(std::time::SystemTime::now());
    for entry in &entries {
        match stream::EntryLine::encode(&entry.event) {
            Ok(line) => stream::add_entry(&mut pipe, &relay.keys, &line, now),
            // Only an id no honest issuer makes (a control character) gets here; the store's own
            // validators enforce it, other processes cannot be told.
            Err(e) => {
                tracing::error!(seq = entry.seq, error = %e, "revocation relay: cannot publish");
            }
        }
    }
    pipe.query_async::<()>(connection)
        .await
        .map_err(Failure::Redis)?;
    let reached = OutboxPosition {
        epoch,
        published_through: last,
    };
    progress.unconfirmed = Some((reached.clone(), entries.len()));
    published(relay, connection).await?;
    Ok(progress.confirmed(state, reached, entries.len()))
}

impl Progress {
    /// A batch of `count` entries reaching `reached` is safe: the relay stands after it.
    fn confirmed(&mut self, state: &RelayState, reached: OutboxPosition, count: usize) -> usize {
        self.unconfirmed = None;
        self.short = 0;
        self.position = Some(reached);
        state.published.fetch_add(count as u64, Ordering::Relaxed);
        count
    }
}

/// When a batch the primary took counts as published: once the replicas the target requires
/// hold it ([`stream::confirm`]). Until then the position stays before it and the next round
/// writes it again, to this primary or to the one promoted after a failover.
async fn published(relay: &Relay, connection: &mut MultiplexedConnection) -> Result<(), Failure> {
    let acks = relay.target.replica_acks();
    stream::confirm(connection, acks)
        .await
        .map_err(Failure::Redis)?
        .map_err(|acked| Failure::Unconfirmed {
            acked,
            wanted: acks.replicas,
        })
}
