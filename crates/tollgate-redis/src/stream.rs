//! The Redis side of the format in [`crate::wire`]: the epoch, appending entries, and reading
//! them back out of Redis replies.

use crate::connect::ReplicaAcks;
use crate::wire::{self, Keys, StreamId, Version};
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};
use tollgate_core::{RevocationEvent, UnixMillis, random};

/// The epoch of the Redis data: created (at random) by whoever finds it missing, so that a Redis
/// that lost its data (restart without persistence, `FLUSHALL`, failover to an empty replica)
/// has a new one, and relays and followers notice.
pub(crate) async fn ensure_epoch(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
) -> RedisResult<String> {
    let (_, epoch): (Value, String) = redis::pipe()
        .cmd("SET")
        .arg(&keys.epoch)
        .arg(random::id())
        .arg("NX")
        .cmd("GET")
        .arg(&keys.epoch)
        .query_async(connection)
        .await?;
    Ok(epoch)
}

/// An event as a stream entry carries it: its line, and the lowest format version that carries
/// the line, which names the entry's one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryLine {
    pub(crate) version: Version,
    pub(crate) line: String,
}

impl EntryLine {
    /// `event` encoded, or why the wire format cannot carry it.
    pub(crate) fn encode(event: &RevocationEvent) -> Result<EntryLine, wire::WireError> {
        Ok(EntryLine {
            version: Version::of(event),
            line: wire::encode(event)?,
        })
    }
}

/// Adds `XADD <stream> * <version> "<now> <line>"` to `pipe`: one field, named for the format
/// version the line needs.
pub(crate) fn add_entry(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    entry: &EntryLine,
    now: UnixMillis,
) {
    pipe.cmd("XADD")
        .arg(&keys.stream)
        .arg("*")
        .arg(entry.version.as_str())
        .arg(entry_value(&entry.line, now));
}

/// The value of an entry's one field: the publish instant, a space, the event line.
pub(crate) fn entry_value(line: &str, now: UnixMillis) -> String {
    format!("{} {line}", now.0)
}

/// The step that makes a write count: waits (`WAIT`) until `acks.replicas` replicas hold every
/// write this connection made, or `acks.timeout` passed. `Ok(Err(acked))` when fewer did: the
/// write may vanish in a failover, so it must not count as published (writing it again is
/// harmless: followers apply idempotently).
///
/// Why this is enough, and what it does not cover, is argued in `docs/replication.md`.
pub(crate) async fn confirm(
    connection: &mut MultiplexedConnection,
    acks: ReplicaAcks,
) -> RedisResult<Result<(), u32>> {
    if acks.replicas == 0 {
        return Ok(Ok(()));
    }
    let timeout = u64::try_from(acks.timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let acked: u32 = redis::cmd("WAIT")
        .arg(acks.replicas)
        .arg(timeout)
        .query_async(connection)
        .await?;
    Ok(if acked >= acks.replicas {
        Ok(())
    } else {
        Err(acked)
    })
}

/// Waits until `acks.replicas` replicas hold every write made on `connection` so far (`WAIT`):
/// for a producer's other writes that must outlive a failover (a receiver's used `jti`s).
/// [`PublishError::NotReplicated`] when fewer did in time.
pub async fn wait_for_replicas(
    connection: &mut MultiplexedConnection,
    acks: ReplicaAcks,
) -> Result<(), PublishError> {
    confirm(connection, acks)
        .await
        .map_err(PublishError::Redis)?
        .map_err(|acked| PublishError::NotReplicated {
            acked,
            wanted: acks.replicas,
        })
}

/// Publishes `events` straight into the stream (no outbox): for events that exist nowhere else,
/// such as those of `tollgate revoke`. Returns the id each got, in order, once the primary
/// answered; [`publish_acked`] also waits for replicas.
pub async fn publish(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
    events: &[RevocationEvent],
) -> Result<Vec<StreamId>, PublishError> {
    publish_acked(connection, keys, events, ReplicaAcks::NONE).await
}

/// [`publish`], returning only once `acks.replicas` replicas hold the events (see
/// [`RedisTarget::replica_acks`](crate::RedisTarget::replica_acks)): what it returned `Ok` for
/// survives the failovers the docs describe. On [`PublishError::NotReplicated`] the events are
/// in the primary but may be lost: publish them again.
pub async fn publish_acked(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
    events: &[RevocationEvent],
    acks: ReplicaAcks,
) -> Result<Vec<StreamId>, PublishError> {
    let entries = events
        .iter()
        .map(EntryLine::encode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PublishError::Event)?;
    ensure_epoch(connection, keys)
        .await
        .map_err(PublishError::Redis)?;
    let mut pipe = redis::pipe();
    let now = UnixMillis::from(std::time::SystemTime::now());
    for entry in &entries {
        add_entry(&mut pipe, keys, entry, now);
    }
    let ids: Vec<String> = pipe
        .query_async(connection)
        .await
        .map_err(PublishError::Redis)?;
    wait_for_replicas(connection, acks).await?;
    Ok(ids.iter().filter_map(|id| StreamId::parse(id)).collect())
}

/// Why [`publish`] published nothing.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// An event the wire format cannot carry.
    Event(wire::WireError),
    /// Redis failed.
    Redis(redis::RedisError),
    /// The primary took the events, but fewer replicas than required acknowledged them in time:
    /// a failover could lose them.
    NotReplicated {
        /// Replicas that acknowledged.
        acked: u32,
        /// Replicas required.
        wanted: u32,
    },
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Event(e) => write!(f, "cannot publish the event: {e}"),
            PublishError::Redis(e) => write!(f, "Redis failed: {}", e.category()),
            PublishError::NotReplicated { acked, wanted } => write!(
                f,
                "only {acked} of the {wanted} replicas required acknowledged the events in time \
                 (a failover could lose them)"
            ),
        }
    }
}

impl std::error::Error for PublishError {}

/// One stream entry as read: its id and its fields, not yet validated.
#[derive(Debug, Default)]
pub(crate) struct RawEntry {
    pub(crate) id: Option<StreamId>,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEntry {
    /// The event and its publish instant, validated: an unknown version or a malformed entry is
    /// an error naming what is wrong (never the entry's content).
    ///
    /// An entry of any version this code reads is read with the newest grammar, which takes every
    /// line of the older ones: the version tells older followers what they cannot read, and
    /// nothing this follower could misread.
    pub(crate) fn decode(&self) -> Result<(RevocationEvent, UnixMillis), String> {
        let value = match self.fields.as_slice() {
            [(name, value)] if Version::parse(name).is_some() => value,
            [] => return Err("no fields".into()),
            [_] => return Err("unknown format version".into()),
            _ => return Err("more than one field".into()),
        };
        let value = std::str::from_utf8(value).map_err(|_| "entry is not UTF-8")?;
        let (at, line) = value.split_once(' ').ok_or("no publish instant")?;
        let at = at
            .parse()
            .map_err(|_| "the publish instant is not an integer")?;
        let event = wire::decode(line).map_err(|e| e.to_string())?;
        Ok((event, UnixMillis(at)))
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

/// One `[id, [field, value, ...]]` of an XREAD reply, taken apart without copying.
/// Anything malformed yields an entry without an id or fields, which the caller skips.
fn entry(value: Value) -> RawEntry {
    let mut parts = items(value).into_iter();
    let id = parts
        .next()
        .and_then(bytes)
        .and_then(|b| StreamId::parse(std::str::from_utf8(&b).ok()?));
    let fields = match parts.next() {
        Some(Value::Map(pairs)) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
            .collect(),
        Some(list) => {
            let mut fields = Vec::with_capacity(1);
            let mut flat = items(list).into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                if let (Some(k), Some(v)) = (bytes(k), bytes(v)) {
                    fields.push((k, v));
                }
            }
            fields
        }
        None => Vec::new(),
    };
    RawEntry { id, fields }
}

/// The entries of an XREAD reply for one stream (`Nil` when the read timed out).
pub(crate) fn read_entries(reply: Value) -> Vec<RawEntry> {
    let streams: Vec<Value> = match reply {
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        other => items(other)
            .into_iter()
            .filter_map(|s| items(s).into_iter().nth(1))
            .collect(),
    };
    streams
        .into_iter()
        .flat_map(|entries| items(entries).into_iter().map(entry))
        .collect()
}
