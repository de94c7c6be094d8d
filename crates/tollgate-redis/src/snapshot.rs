//! The snapshot: the whole replicated state in one Redis hash, with the stream id it covers, so
//! that a follower can start (or recover from a trimmed stream) without the stream's history,
//! and the stream can be trimmed below it.

use crate::wire::{self, Keys, StreamId};
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script, Value};
use std::collections::HashMap;
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};

/// Writes the snapshot only if it covers more of the stream than the one in Redis, and only into
/// the epoch it was taken in; then trims the stream below it. Atomic, so a follower never sees
/// the stream trimmed past a snapshot that does not yet cover it.
///
/// A snapshot in Redis that claims more of the stream than the stream ever had (an id beyond its
/// last generated id, or any id with no stream at all) was not written by this script: it is
/// replaced rather than kept, so that a planted snapshot does not block every honest one after
/// it (followers refuse it meanwhile).
///
/// KEYS: snapshot, stream, epoch. ARGV: id ms, id seq, version, written at, events, epoch.
/// Returns 1 if written, 0 if an equal or newer snapshot is there, -1 if the epoch changed.
const WRITE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[6] then return -1 end
local function parse(id)
  if not id then return nil end
  local dash = string.find(id, '-', 1, true)
  if not dash then return nil end
  local ms = tonumber(string.sub(id, 1, dash - 1))
  local seq = tonumber(string.sub(id, dash + 1))
  if ms and seq then return {ms, seq} end
  return nil
end
local function after(a, b) return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2]) end
local current = parse(redis.call('HGET', KEYS[1], 'id'))
local new = {tonumber(ARGV[1]), tonumber(ARGV[2])}
if current and not after(new, current) then
  local last = {0, 0}
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[2])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = parse(info[i + 1]) or last end
    end
  end
  if not after(current, last) then return 0 end
end
local id = ARGV[1] .. '-' .. ARGV[2]
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'id', id, 'at', ARGV[4], 'events', ARGV[5])
if id ~= '0-0' then redis.call('XTRIM', KEYS[2], 'MINID', id) end
return 1
";

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The snapshot is in Redis and the stream trimmed below it.
    Yes,
    /// Redis already had a snapshot at least as recent.
    Older,
    /// Redis lost its data since this state was read: nothing written.
    OtherEpoch,
}

/// Writes `events` as the snapshot covering the stream up to `id`, in `epoch`.
pub(crate) async fn write(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
    epoch: &str,
    id: StreamId,
    events: &[RevocationEvent],
) -> RedisResult<(Written, usize)> {
    let payload = wire::encode_snapshot(events);
    let now = UnixMillis::from(std::time::SystemTime::now());
    let outcome: i64 = Script::new(WRITE)
        .key(&keys.snapshot)
        .key(&keys.stream)
        .key(&keys.epoch)
        .arg(id.ms)
        .arg(id.seq)
        .arg(payload.version.as_str())
        .arg(now.0)
        .arg(payload.lines)
        .arg(epoch)
        .invoke_async(connection)
        .await?;
    let written = match outcome {
        1 => Written::Yes,
        0 => Written::Older,
        _ => Written::OtherEpoch,
    };
    Ok((written, payload.left_out))
}

/// A snapshot as read from Redis.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The stream id it covers.
    pub(crate) id: StreamId,
    /// The payload: event lines.
    pub(crate) events: Vec<u8>,
}

/// Why a follower refuses what Redis holds: a snapshot it cannot read, or a snapshot and a
/// stream that contradict each other. Honest producers never leave Redis in any of these states;
/// trusting one could lose revocations (a snapshot that claims entries it does not hold makes a
/// follower skip them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Written in a format version this code does not read (a newer tollgate's, or not
    /// tollgate's).
    Version,
    /// A field is missing or malformed.
    Malformed(&'static str),
    /// Lines of the payload that are not events this version reads.
    Lines(usize),
    /// Applying the payload failed (a worker thread panicked).
    Apply,
    /// The snapshot covers the stream up to `covered`, but there is no stream.
    NoStream { covered: StreamId },
    /// The snapshot covers the stream up to `covered`, beyond the last id the stream ever
    /// generated: it claims entries that never were.
    Ahead { covered: StreamId, last: StreamId },
    /// Entries were removed from the stream that the snapshot does not cover (`covered`,
    /// `0-0` when there is no snapshot): whatever they revoked is lost. With what the stream
    /// says: its first entry and its highest deleted id.
    Removed {
        covered: StreamId,
        first: Option<StreamId>,
        deleted: Option<StreamId>,
    },
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Version => {
                let known: Vec<&str> = wire::Version::ALL.iter().map(|v| v.as_str()).collect();
                write!(
                    f,
                    "the snapshot is not in a format version this follower reads ({}): written \
                     by a newer tollgate or not by tollgate",
                    known.join(" or ")
                )
            }
            Unusable::Malformed(field) => {
                write!(f, "the snapshot's `{field}` field is missing or malformed")
            }
            Unusable::Lines(n) => write!(f, "{n} line(s) of the snapshot are not events"),
            Unusable::Apply => f.write_str("applying the snapshot failed"),
            Unusable::NoStream { covered } => write!(
                f,
                "the snapshot covers the stream up to {covered}, but the stream does not exist"
            ),
            Unusable::Ahead { covered, last } => write!(
                f,
                "the snapshot covers the stream up to {covered}, beyond the last id the stream \
                 ever generated ({last})"
            ),
            Unusable::Removed {
                covered,
                first,
                deleted,
            } => {
                if *covered == StreamId::ZERO {
                    f.write_str("stream entries were removed, but there is no snapshot")?;
                } else {
                    write!(
                        f,
                        "stream entries were removed beyond what the snapshot covers ({covered})"
                    )?;
                }
                let show =
                    |id: &Option<StreamId>| id.map_or("none".to_owned(), |id| id.to_string());
                write!(
                    f,
                    " (first entry {}, highest deleted id {})",
                    show(first),
                    show(deleted)
                )
            }
        }
    }
}

/// What the stream says about itself (`XINFO STREAM`), to hold a snapshot against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamInfo {
    /// The id of the last entry ever added, whether or not it is still there.
    pub(crate) last_generated: StreamId,
    /// The highest id removed by `XDEL` (trims do not count; Redis 7 and later, `None` before).
    pub(crate) max_deleted: Option<StreamId>,
    /// The first entry's id, if the stream has entries.
    pub(crate) first: Option<StreamId>,
    /// How many entries it holds.
    pub(crate) length: u64,
    /// How many entries were ever added (Redis 7 and later): more than `length` when some were
    /// removed, by a trim or `XDEL`.
    pub(crate) entries_added: Option<u64>,
}

impl StreamInfo {
    /// Whether any entry was ever removed; `None` if this Redis does not say (before 7).
    pub(crate) fn removed_any(&self) -> Option<bool> {
        let deleted = self.max_deleted.is_some_and(|d| d != StreamId::ZERO);
        self.entries_added
            .map(|added| deleted || added > self.length)
    }
}

impl StreamInfo {
    /// From an `XINFO STREAM` reply (a map in RESP3, a flat list of names and values in RESP2);
    /// `None` without a readable `last-generated-id`.
    fn from_reply(reply: Value) -> Option<StreamInfo> {
        let pairs: Vec<(Value, Value)> = match reply {
            Value::Map(pairs) => pairs,
            Value::Array(items) => {
                let mut items = items.into_iter();
                std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
            }
            _ => return None,
        };
        let id = |value: &Value| match value {
            Value::BulkString(b) => StreamId::parse(std::str::from_utf8(b).ok()?),
            Value::SimpleString(s) => StreamId::parse(s),
            _ => None,
        };
        let count = |value: &Value| match value {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        let (mut last_generated, mut max_deleted, mut first) = (None, None, None);
        let (mut length, mut entries_added) = (None, None);
        for (name, value) in &pairs {
            let name = match name {
                Value::BulkString(b) => b.as_slice(),
                Value::SimpleString(s) => s.as_bytes(),
                _ => continue,
            };
            match name {
                b"last-generated-id" => last_generated = id(value),
                b"max-deleted-entry-id" => max_deleted = id(value),
                b"length" => length = count(value),
                b"entries-added" => entries_added = count(value),
                b"first-entry" => {
                    first = match value {
                        Value::Array(entry) => entry.first().and_then(id),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        Some(StreamInfo {
            last_generated: last_generated?,
            max_deleted,
            first,
            length: length?,
            entries_added,
        })
    }
}

/// A reply that is not what the command returns.
pub(crate) fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply from Redis",
    ))
}

/// What the stream says about itself, from the replies to `EXISTS <stream>` and
/// `XINFO STREAM <stream>` (which fails when there is no stream): `None` without a stream.
pub(crate) fn stream_info(
    exists: RedisResult<Value>,
    info: RedisResult<Value>,
) -> RedisResult<Option<StreamInfo>> {
    let exists: bool = redis::from_redis_value(exists?).map_err(|_| unexpected())?;
    if !exists {
        return Ok(None);
    }
    StreamInfo::from_reply(info?)
        .map(Some)
        .ok_or_else(unexpected)
}

/// What a follower reads to (re)start, in one atomic step.
#[derive(Debug)]
pub(crate) struct Found {
    /// The epoch, if any producer created it yet.
    pub(crate) epoch: Option<String>,
    /// The snapshot, if there is one.
    pub(crate) snapshot: Option<Result<Snapshot, Unusable>>,
    /// What the stream says about itself; `None` when there is no stream.
    pub(crate) stream: Option<StreamInfo>,
}

/// Reads the epoch, the snapshot and what the stream says about itself, atomically (so that a
/// snapshot written meanwhile, with its trim, cannot look like a contradiction).
pub(crate) async fn read(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
) -> RedisResult<Found> {
    let replies: Vec<RedisResult<Value>> = redis::pipe()
        .atomic()
        // `XINFO STREAM` fails on a missing stream; `EXISTS` says whether that is why.
        .ignore_errors()
        .cmd("GET")
        .arg(&keys.epoch)
        .cmd("HGETALL")
        .arg(&keys.snapshot)
        .cmd("EXISTS")
        .arg(&keys.stream)
        .cmd("XINFO")
        .arg("STREAM")
        .arg(&keys.stream)
        .query_async(connection)
        .await?;
    let [epoch, fields, exists, info]: [RedisResult<Value>; 4] =
        replies.try_into().map_err(|_| unexpected())?;
    let epoch: Option<String> = redis::from_redis_value(epoch?).map_err(|_| unexpected())?;
    let fields: HashMap<String, Vec<u8>> =
        redis::from_redis_value(fields?).map_err(|_| unexpected())?;
    let stream = stream_info(exists, info)?;
    let snapshot = (!fields.is_empty()).then(|| parse(fields));
    Ok(Found {
        epoch,
        snapshot,
        stream,
    })
}

/// A snapshot from its hash's fields (`v`, `id`, `events`): of any version this code reads,
/// whose lines it reads with the newest grammar.
pub(crate) fn parse(mut fields: HashMap<String, Vec<u8>>) -> Result<Snapshot, Unusable> {
    if fields
        .get("v")
        .and_then(|v| wire::Version::parse(v))
        .is_none()
    {
        return Err(Unusable::Version);
    }
    let id = fields
        .get("id")
        .and_then(|id| StreamId::parse(std::str::from_utf8(id).ok()?))
        .ok_or(Unusable::Malformed("id"))?;
    let events = fields
        .remove("events")
        .ok_or(Unusable::Malformed("events"))?;
    Ok(Snapshot { id, events })
}

/// Holds a snapshot covering the stream up to `covered` (`None`: there is no snapshot) against
/// what the stream says about itself (`None`: there is no stream).
///
/// Honest producers keep three things true, which this checks: the snapshot covers only ids the
/// stream generated (it is written from entries read from it); a snapshot that covers anything
/// has a stream beside it (trims keep the entry at the snapshot's id, and Redis never deletes an
/// empty stream); and only entries the snapshot covers are ever removed (the one trim is
/// `XTRIM MINID <snapshot id>`, in the same script as the snapshot).
pub(crate) fn check(
    covered: Option<StreamId>,
    stream: Option<&StreamInfo>,
) -> Result<(), Unusable> {
    let covered = covered.unwrap_or(StreamId::ZERO);
    let Some(stream) = stream else {
        return if covered == StreamId::ZERO {
            Ok(())
        } else {
            Err(Unusable::NoStream { covered })
        };
    };
    if covered > stream.last_generated {
        return Err(Unusable::Ahead {
            covered,
            last: stream.last_generated,
        });
    }
    let removed = if covered == StreamId::ZERO {
        // Without a snapshot, nothing may ever have been removed (Redis 7 says; before it,
        // there is no telling).
        stream.removed_any() == Some(true)
    } else {
        // `XDEL` above the snapshot, or a trim past it: the entry at its id is never trimmed,
        // so the stream starts at or before it.
        stream.max_deleted.is_some_and(|d| d >= covered)
            || stream.first.is_none_or(|first| first > covered)
    };
    if removed {
        return Err(Unusable::Removed {
            covered,
            first: stream.first,
            deleted: stream.max_deleted,
        });
    }
    Ok(())
}

/// Applies a snapshot's payload to `index`, line by line, split across the machine's cores (the
/// index takes concurrent inserts): returns how many events were applied and how many lines
/// were refused, or `None` if a worker failed (then an unknown part was applied).
pub(crate) fn apply(payload: &[u8], index: &RevocationIndex) -> Option<(usize, usize)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut chunks = Vec::with_capacity(threads);
    let mut rest = payload;
    for i in (1..=threads).rev() {
        // Cut near an equal share, at the next line end.
        let cut = if i == 1 {
            rest.len()
        } else {
            let at = rest.len() / i;
            rest[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| at + p + 1)
        };
        let (chunk, tail) = rest.split_at(cut);
        chunks.push(chunk);
        rest = tail;
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || apply_lines(chunk, index)))
            .collect();
        // A worker that panicked applied an unknown part of its share: the whole load fails,
        // rather than passing for a snapshot with nothing in it.
        workers.into_iter().try_fold((0, 0), |(a, s), worker| {
            let (a2, s2) = worker.join().ok()?;
            Some((a + a2, s + s2))
        })
    })
}

/// The events of a snapshot payload, line by line: `None` for a line that is not one.
pub(crate) fn decode_lines(payload: &[u8]) -> impl Iterator<Item = Option<RevocationEvent>> + '_ {
    payload
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            std::str::from_utf8(line)
                .ok()
                .and_then(|line| wire::decode(line).ok())
        })
}

fn apply_lines(payload: &[u8], index: &RevocationIndex) -> (usize, usize) {
    let (mut applied, mut skipped) = (0, 0);
    for event in decode_lines(payload) {
        match event {
            Some(event) => {
                index.apply(&event);
                applied += 1;
            }
            None => skipped += 1,
        }
    }
    (applied, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_split_across_threads_applies_every_line_once() {
        let events: Vec<RevocationEvent> = (0..10_001)
            .map(|i| RevocationEvent::Token {
                jti: format!("jti-{i}"),
                expires_at: UnixMillis(4_000_000_000_000),
            })
            .collect();
        let mut payload = wire::encode_snapshot(&events).lines;
        payload.push_str("\ngarbage line\n\nT 1");
        let index = RevocationIndex::new();
        assert_eq!(apply(payload.as_bytes(), &index), Some((10_001, 2)));
        assert_eq!(index.stats().tokens, 10_001);
        assert_eq!(apply(b"", &index), Some((0, 0)));
    }
}
