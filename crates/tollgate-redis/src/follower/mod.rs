//! The follower: keeps a [`RevocationIndex`] in step with the stream, in any process.
//!
//! It loads the snapshot and applies it, then reads the stream from the snapshot's id with
//! blocking reads, and resumes from the last id it applied after any disconnect (never from `$`,
//! which would skip what it missed). Before each read it checks, in one atomic step, that Redis
//! still has the data it was following (the epoch) and that the stream lost nothing it has not
//! read (`XINFO STREAM`'s highest removed id, or before Redis 7 its first entry); otherwise it
//! loads the snapshot again. Applying is idempotent and commutative, so a reload, a duplicate or
//! a reordering changes nothing that was already right.
//!
//! It trusts a snapshot only if the stream bears it out (see [`snapshot::check`]): one that claims
//! ids the stream never generated, or a stream that lost entries no snapshot covers, is what
//! someone with write access to Redis leaves, never an honest producer, and loading it would
//! lose revocations. Then, and for a snapshot it cannot read, the follower refuses: it follows
//! nothing, reports why ([`FeedStatus::refused`]) and is not ready, and looks again every second.
//!
//! A stream entry it cannot read (a newer format version, a kind of event it does not know, a
//! malformed value) is never skipped silently: by default ([`OnUnreadable::Refuse`]) the
//! follower stops *at* it, applies nothing after it, reports it and is not ready, and reads again
//! from the same position every second; [`OnUnreadable::Skip`] skips it, counted and logged.

mod health;
mod state;
mod unreadable;

pub use health::{DEFAULT_MAX_SILENCE, FeedHealth, HealthPolicy};
pub use state::FeedStatus;
pub use unreadable::{OnUnreadable, UnknownPolicy};

use crate::connect::{ConnectError, RedisTarget};
use crate::snapshot::{self, Unusable, Written};
use crate::stream::{self, RawEntry};
use crate::wire::{Keys, StreamId};
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};
use state::FeedState;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tollgate_core::RevocationIndex;

/// Entries read per round trip.
const BATCH: usize = 4096;
/// Backoff between reconnection attempts: from this...
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// ...doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a blocking read waits for new entries: Redis answers at least this often, which
/// keeps "time since Redis last answered" meaningful on a quiet stream.
const DEFAULT_BLOCK: Duration = Duration::from_secs(1);
/// How often a follower that refuses what Redis holds looks again: a producer that rewrites a
/// consistent snapshot (or an operator who clears the keys) is noticed within this.
const REFUSED_RETRY: Duration = Duration::from_secs(1);

/// One atomic look at Redis: the epoch, the snapshot's version and id, what the stream says
/// about itself, and what follows the last id applied.
struct Look {
    epoch: Option<String>,
    /// The snapshot's id, or why it cannot be used; `None` without a snapshot.
    snapshot: Option<Result<StreamId, Unusable>>,
    stream: Option<snapshot::StreamInfo>,
    batch: Value,
}

/// Configures a follower: `Follower::new(target, index)`, then [`start`](Follower::start).
#[derive(Debug)]
pub struct Follower {
    target: RedisTarget,
    index: Arc<RevocationIndex>,
    keys: Keys,
    block: Duration,
    snapshot_every: Option<u64>,
    on_unreadable: OnUnreadable,
}

impl Follower {
    /// A follower feeding `index` from the Redis at `target`, under the default keys.
    pub fn new(target: RedisTarget, index: Arc<RevocationIndex>) -> Self {
        Follower {
            target,
            index,
            keys: Keys::default(),
            block: DEFAULT_BLOCK,
            snapshot_every: None,
            on_unreadable: OnUnreadable::default(),
        }
    }

    /// Follows the channel under these keys (see [`Keys::new`]).
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// Writes a snapshot of the index (and trims the stream below it) every `events` entries
    /// applied, and after finding Redis without one. The token service does; a Layer in an app
    /// usually leaves it to the token service. `0` turns it off (the default).
    pub fn write_snapshots(mut self, events: u64) -> Self {
        self.snapshot_every = (events > 0).then_some(events);
        self
    }

    /// What to do with a stream entry this follower cannot read (default
    /// [`OnUnreadable::Refuse`]: stop at it, not ready, until it can be read).
    ///
    /// [`OnUnreadable::Skip`] with [`write_snapshots`](Self::write_snapshots) writes snapshots
    /// that lack what the skipped entries revoked, and trims the stream below them: followers
    /// that could read those entries then never see them.
    pub fn on_unreadable(mut self, policy: OnUnreadable) -> Self {
        self.on_unreadable = policy;
        self
    }

    /// How long a blocking read waits for new entries (default 1 s).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(10));
        self
    }

    /// Connects once, then follows in a background task on the current Tokio runtime.
    ///
    /// Fails only if Redis refuses the credentials or the target is unusable: a Redis that is
    /// out of reach is retried in the background (the feed is then not synced, which the
    /// [`HealthPolicy`] decides about).
    pub async fn start(self) -> Result<Feed, ConnectError> {
        let state = Arc::new(FeedState::new());
        let first = match self
            .target
            .connect_for(&self.keys, self.response_timeout())
            .await
        {
            Ok(connection) => Some(connection),
            Err(e) if e.is_refused() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "revocation feed: Redis out of reach; retrying");
                None
            }
        };
        let task = Task {
            follower: self,
            state: state.clone(),
            epoch: None,
            last_id: None,
            since_snapshot: 0,
        };
        let handle = tokio::spawn(task.run(first));
        Ok(Feed {
            state,
            task: Arc::new(handle),
        })
    }

    fn response_timeout(&self) -> Duration {
        self.block + Duration::from_secs(2)
    }
}

/// A running follower: its status, its health for the Layer, and a way to stop it. Clones share
/// the task; it runs until [`stop`](Feed::stop) (dropping every handle leaves it running).
#[derive(Debug, Clone)]
pub struct Feed {
    state: Arc<FeedState>,
    task: Arc<JoinHandle<()>>,
}

impl Feed {
    /// The follower's state now.
    pub fn status(&self) -> FeedStatus {
        self.state.status()
    }

    /// Whether the first sync is done.
    pub fn is_synced(&self) -> bool {
        self.state.is_synced()
    }

    /// The feed's health under `policy`, for the Layer.
    pub fn health(&self, policy: HealthPolicy) -> FeedHealth {
        FeedHealth {
            state: self.state.clone(),
            policy,
        }
    }

    /// Waits until the first sync is done, or `timeout` has passed (then returns `false`).
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_synced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops following. The index keeps what it was given.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// One atomic look: is this still the data we follow (the epoch), was the stream trimmed past
/// us (the snapshot's id and what the stream says about itself), and what follows `last`.
async fn look(
    mut connection: MultiplexedConnection,
    keys: Keys,
    last: StreamId,
) -> RedisResult<Look> {
    let replies: Vec<RedisResult<Value>> = redis::pipe()
        .atomic()
        // `XINFO STREAM` fails on a missing stream; `EXISTS` says whether that is why.
        .ignore_errors()
        .cmd("GET")
        .arg(&keys.epoch)
        .cmd("HMGET")
        .arg(&keys.snapshot)
        .arg("v")
        .arg("id")
        .cmd("EXISTS")
        .arg(&keys.stream)
        .cmd("XINFO")
        .arg("STREAM")
        .arg(&keys.stream)
        .cmd("XREAD")
        .arg("COUNT")
        .arg(BATCH)
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(last.to_string())
        .query_async(&mut connection)
        .await?;
    let [epoch, snapshot, exists, info, batch]: [RedisResult<Value>; 5] =
        replies.try_into().map_err(|_| snapshot::unexpected())?;
    let epoch: Option<String> =
        redis::from_redis_value(epoch?).map_err(|_| snapshot::unexpected())?;
    let (version, id): (Option<String>, Option<String>) =
        redis::from_redis_value(snapshot?).map_err(|_| snapshot::unexpected())?;
    let snapshot = match (version, id) {
        (None, None) => None,
        (Some(v), _) if crate::wire::Version::parse(v.as_bytes()).is_none() => {
            Some(Err(Unusable::Version))
        }
        (_, id) => Some(
            id.as_deref()
                .and_then(StreamId::parse)
                .ok_or(Unusable::Malformed("id")),
        ),
    };
    Ok(Look {
        epoch,
        snapshot,
        stream: snapshot::stream_info(exists, info)?,
        batch: batch?,
    })
}

/// Whether a follower that applied up to `last` is past what this Redis's stream ever
/// generated: it is not the Redis the follower read (a replica promoted without the tail), and
/// entries written next may get ids below `last` that a read from `last` would never return.
/// Same epoch, so only this tells. A stream that does not exist (deleted, or not yet written)
/// is not this case: the next entry recreates it with an id from the clock, as the trust checks
/// of [`lost_past`](Task::lost_past) expect.
fn past_the_end(last: StreamId, info: Option<&snapshot::StreamInfo>) -> bool {
    info.is_some_and(|info| info.last_generated < last)
}

/// The follower's task state.
struct Task {
    follower: Follower,
    state: Arc<FeedState>,
    /// The epoch of the data followed; `None` before the first load.
    epoch: Option<String>,
    /// The last id applied; `None` when the snapshot must be loaded (again).
    last_id: Option<StreamId>,
    since_snapshot: u64,
}

impl Task {
    async fn run(mut self, mut first: Option<MultiplexedConnection>) {
        let mut backoff = MIN_BACKOFF;
        let timeout = self.follower.response_timeout();
        loop {
            let mut connection = match first.take() {
                Some(connection) => connection,
                None => match self
                    .follower
                    .target
                    .connect_for(&self.follower.keys, timeout)
                    .await
                {
                    Ok(connection) => connection,
                    Err(e) => {
                        self.state.disconnected();
                        tracing::debug!(error = %e, "revocation feed: reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            self.state.touch();
            backoff = MIN_BACKOFF;
            if let Err(e) = self.follow(&mut connection).await {
                self.state.disconnected();
                tracing::warn!(
                    error = %self.follower.target.error(&e),
                    last_id = %self.last_id.unwrap_or_default(),
                    "revocation feed: Redis failed; resuming from the last id applied"
                );
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// Follows until Redis fails.
    async fn follow(&mut self, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        let keys = self.follower.keys.clone();
        // The next look, already sent while the previous batch is applied: while there is a
        // backlog, Redis reads the next batch as this task applies the last one.
        let mut ahead: Option<(StreamId, JoinHandle<RedisResult<Look>>)> = None;
        loop {
            let Some(last) = self.last_id else {
                ahead = None;
                self.load(connection).await?;
                continue;
            };
            let seen = match ahead.take() {
                Some((from, next)) if from == last => next.await.map_err(|_| {
                    redis::RedisError::from(std::io::Error::other("read aborted"))
                })??,
                _ => look(connection.clone(), keys.clone(), last).await?,
            };
            let Look {
                epoch,
                snapshot,
                stream: info,
                batch,
            } = seen;
            self.state.touch();
            if epoch != self.epoch {
                tracing::warn!(
                    "revocation feed: Redis lost its data (new epoch); loading the snapshot again \
                     and reading the stream from its start"
                );
                self.last_id = None;
                continue;
            }
            if past_the_end(last, info.as_ref()) {
                tracing::warn!(
                    %last,
                    end = %info.map(|i| i.last_generated).unwrap_or_default(),
                    "revocation feed: this follower is past the end of the stream (a failover to \
                     a replica that lacked the tail); loading the snapshot and reading again"
                );
                self.last_id = None;
                continue;
            }
            match self.lost_past(last, snapshot, info.as_ref()) {
                None => {}
                Some(None) => {
                    tracing::warn!(
                        %last,
                        "revocation feed: the stream was trimmed past this follower; loading \
                         the snapshot"
                    );
                    self.last_id = None;
                    continue;
                }
                Some(Some(why)) => {
                    self.refuse(why).await?;
                    continue;
                }
            }
            let entries = stream::read_entries(batch);
            let caught_up = entries.len() < BATCH;
            if !caught_up && let Some(next) = entries.iter().filter_map(|e| e.id).max() {
                let read = look(connection.clone(), keys.clone(), next);
                ahead = Some((next.max(last), tokio::spawn(read)));
            }
            if let Some(refusal) = self.apply(&entries) {
                ahead = None;
                self.stop_at(refusal).await;
                continue;
            }
            if caught_up && !self.state.is_synced() {
                self.state.set_synced();
                tracing::info!(last_id = %self.last_id.unwrap_or_default(), "revocation feed synced");
            }
            self.maybe_snapshot(connection).await?;
            if !entries.is_empty() {
                continue;
            }
            // Nothing new: wait for it. Entries that arrive while blocked are newer than any
            // trim (trims only follow snapshots of what was already in the stream).
            let Some(last) = self.last_id else { continue };
            let block_ms = u64::try_from(self.follower.block.as_millis()).unwrap_or(1000);
            let batch: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&keys.stream)
                .arg(last.to_string())
                .query_async(connection)
                .await?;
            self.state.touch();
            let entries = stream::read_entries(batch);
            if let Some(refusal) = self.apply(&entries) {
                self.stop_at(refusal).await;
                continue;
            }
            self.maybe_snapshot(connection).await?;
        }
    }

    /// Whether entries after `last` (which this follower has not read) are gone from the stream:
    /// `None` if not; `Some(None)` if the snapshot covers them (an honest trim: load it);
    /// `Some(Some(why))` if nothing trustworthy does (refuse). A stream that lost nothing is
    /// followed whatever the snapshot looks like: a running follower does not need it.
    fn lost_past(
        &self,
        last: StreamId,
        snapshot: Option<Result<StreamId, Unusable>>,
        info: Option<&snapshot::StreamInfo>,
    ) -> Option<Option<Unusable>> {
        let info = info?;
        // An entry after `last` deleted, or a trim past `last` (the first entry is after it, or
        // the stream is empty while it generated ids after it) when anything was ever removed
        // (which Redis 7 says; before it, a follower past `0-0` assumes so).
        let trimmed = info.removed_any().unwrap_or(last != StreamId::ZERO)
            && info
                .first
                .map_or(last < info.last_generated, |first| first > last);
        let lost = info.max_deleted.is_some_and(|d| d > last) || trimmed;
        if !lost {
            return None;
        }
        let verdict = match snapshot {
            None => snapshot::check(None, Some(info)),
            Some(Err(why)) => Err(why),
            Some(Ok(covered)) if covered <= last => Err(Unusable::Removed {
                covered,
                first: info.first,
                deleted: info.max_deleted,
            }),
            Some(Ok(covered)) => snapshot::check(Some(covered), Some(info)),
        };
        Some(verdict.err())
    }

    /// Applies entries in order. An entry it cannot read is skipped (counted, logged) under
    /// [`OnUnreadable::Skip`]; under [`OnUnreadable::Refuse`] nothing from it on is applied, the
    /// position stays before it, and the refusal is returned for [`stop_at`](Self::stop_at).
    fn apply(&mut self, entries: &[RawEntry]) -> Option<String> {
        let mut last = self.last_id?;
        let (mut applied, mut skipped, mut published) = (0, 0, None);
        let mut refused = None;
        for entry in entries {
            let decoded = match entry.id {
                Some(_) => entry.decode(),
                None => Err("no id".to_owned()),
            };
            match (decoded, self.follower.on_unreadable) {
                (Ok((event, at)), _) => {
                    self.follower.index.apply(&event);
                    applied += 1;
                    published = Some(at);
                }
                (Err(why), OnUnreadable::Skip) => {
                    skipped += 1;
                    let id = entry.id.map(|id| id.to_string()).unwrap_or_default();
                    tracing::warn!(%id, reason = %why, "revocation feed: skipped an entry it cannot read");
                }
                (Err(why), OnUnreadable::Refuse) => {
                    refused = Some(unreadable::refusal(entry.id, last, &why));
                    break;
                }
            }
            last = entry.id.map_or(last, |id| last.max(id));
        }
        self.last_id = Some(last);
        self.since_snapshot += applied;
        self.state.applied(last, applied, skipped, published);
        if refused.is_none() && self.state.is_refusing() {
            tracing::info!(%last, "revocation feed: past the entry it could not read; following");
            self.state.accept();
        }
        refused
    }

    /// Stops at an entry it cannot read, for `refusal`: the position stays before it (the next
    /// round reads it again), not ready, the reason in the status and, once per entry, in the
    /// log; a second before the next try.
    async fn stop_at(&mut self, refusal: String) {
        if self.state.status().refused.as_deref() != Some(refusal.as_str()) {
            tracing::error!(
                reason = %refusal,
                "revocation feed: stopped at an entry it cannot read (skipping it could accept a \
                 token it revokes); not ready, reading it again every second"
            );
        }
        self.state.refuse(refusal);
        tokio::time::sleep(REFUSED_RETRY).await;
    }

    /// Loads the snapshot (if any) into the index and positions the follower after it; or, if
    /// the snapshot is unreadable or the stream contradicts it, refuses it (see [`Unusable`]):
    /// the follower then stays without a position, not ready, and tries again a second later.
    async fn load(&mut self, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        let keys = &self.follower.keys;
        // Only a follower that writes snapshots creates a missing epoch (it writes into it);
        // the others need no write access at all. For them a missing epoch is "nothing
        // published yet", and the producer creating it a change of epoch: a reload.
        if self.follower.snapshot_every.is_some() {
            stream::ensure_epoch(connection, keys).await?;
        }
        let found = snapshot::read(connection, keys).await?;
        self.state.touch();
        let checked = match found.snapshot {
            None => snapshot::check(None, found.stream.as_ref()).map(|()| None),
            Some(Err(why)) => Err(why),
            Some(Ok(snapshot)) => {
                snapshot::check(Some(snapshot.id), found.stream.as_ref()).map(|()| Some(snapshot))
            }
        };
        let id = match checked {
            Err(why) => return self.refuse(why).await,
            Ok(None) => StreamId::ZERO,
            Ok(Some(found)) => {
                let index = self.follower.index.clone();
                let applied =
                    tokio::task::spawn_blocking(move || snapshot::apply(&found.events, &index))
                        .await
                        .ok()
                        .flatten();
                // What was applied stays applied (revocations only ever add), but a snapshot
                // with lines this version cannot read may lack what those lines revoke.
                let (applied, skipped) = match applied {
                    None => return self.refuse(Unusable::Apply).await,
                    Some((_, skipped)) if skipped > 0 => {
                        return self.refuse(Unusable::Lines(skipped)).await;
                    }
                    Some(counts) => counts,
                };
                self.state.snapshot_loaded(skipped as u64);
                tracing::info!(id = %found.id, applied, "revocation feed: snapshot loaded");
                found.id
            }
        };
        if self.state.is_refusing() {
            tracing::info!("revocation feed: Redis is consistent again; following");
            self.state.accept();
        }
        let fresh_redis =
            matches!((&self.epoch, &found.epoch), (Some(old), Some(new)) if old != new);
        self.epoch = found.epoch;
        self.last_id = Some(id);
        self.state.set_last_id(id);
        // A Redis that lost its data gets this follower's whole state back at once, events that
        // existed only in Redis (`tollgate revoke`) included.
        if fresh_redis && id == StreamId::ZERO && self.follower.snapshot_every.is_some() {
            self.write_snapshot(connection).await?;
        }
        Ok(())
    }

    /// Refuses what Redis holds, for `why`: no position (so the next round loads again), not
    /// ready, the reason in the status and, when it changes, in the log.
    async fn refuse(&mut self, why: Unusable) -> RedisResult<()> {
        let reason = why.to_string();
        if self.state.status().refused.as_deref() != Some(reason.as_str()) {
            tracing::error!(
                %reason,
                "revocation feed: refusing what Redis holds (honest producers never leave it so; \
                 trusting it could lose revocations); not ready, retrying every second"
            );
        }
        self.state.refuse(reason);
        self.last_id = None;
        tokio::time::sleep(REFUSED_RETRY).await;
        Ok(())
    }

    async fn maybe_snapshot(&mut self, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        match self.follower.snapshot_every {
            Some(every) if self.since_snapshot >= every => self.write_snapshot(connection).await,
            _ => Ok(()),
        }
    }

    async fn write_snapshot(&mut self, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        let (Some(id), Some(epoch)) = (self.last_id, self.epoch.clone()) else {
            return Ok(());
        };
        // Taken after `id` was applied: it holds every entry up to `id` (and perhaps more, which
        // is harmless).
        let events = self.follower.index.snapshot();
        let (written, left_out) =
            snapshot::write(connection, &self.follower.keys, &epoch, id, &events).await?;
        self.since_snapshot = 0;
        match written {
            Written::Yes => {
                self.state.snapshot_written();
                tracing::info!(%id, events = events.len(), left_out, "revocation feed: snapshot written");
            }
            Written::Older => {}
            Written::OtherEpoch => self.last_id = None,
        }
        Ok(())
    }
}
