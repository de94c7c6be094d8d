//! The snapshot: the whole replicated state in one Redis hash, with the stream id it covers, so
//! that a follower can start (or recover from a trimmed stream) without the stream's history,
//! and the stream can be trimmed below it.

use crate::wire::{self, Keys, StreamId};
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};
use std::collections::HashMap;
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};

/// Writes the snapshot only if it covers more of the stream than the one in Redis, and only into
/// the epoch it was taken in; then trims the stream below it. Atomic, so a follower never sees
/// the stream trimmed past a snapshot that does not yet cover it.
///
/// KEYS: snapshot, stream, epoch. ARGV: id ms, id seq, version, written at, events, epoch.
/// Returns 1 if written, 0 if an equal or newer snapshot is there, -1 if the epoch changed.
const WRITE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[6] then return -1 end
local current = redis.call('HGET', KEYS[1], 'id')
if current then
  local dash = string.find(current, '-', 1, true)
  if dash then
    local ms = tonumber(string.sub(current, 1, dash - 1))
    local seq = tonumber(string.sub(current, dash + 1))
    local new_ms = tonumber(ARGV[1])
    local new_seq = tonumber(ARGV[2])
    if ms and seq and (ms > new_ms or (ms == new_ms and seq >= new_seq)) then return 0 end
  end
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
    let (payload, left_out) = wire::encode_snapshot(events);
    let now = UnixMillis::from(std::time::SystemTime::now());
    let outcome: i64 = Script::new(WRITE)
        .key(&keys.snapshot)
        .key(&keys.stream)
        .key(&keys.epoch)
        .arg(id.ms)
        .arg(id.seq)
        .arg(wire::VERSION)
        .arg(now.0)
        .arg(payload)
        .arg(epoch)
        .invoke_async(connection)
        .await?;
    let written = match outcome {
        1 => Written::Yes,
        0 => Written::Older,
        _ => Written::OtherEpoch,
    };
    Ok((written, left_out))
}

/// A snapshot as read from Redis.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The stream id it covers.
    pub(crate) id: StreamId,
    /// The payload: event lines.
    pub(crate) events: Vec<u8>,
}

/// Why a snapshot in Redis could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Written in a format version this code does not read.
    Version,
    /// A field is missing or malformed.
    Malformed(&'static str),
}

/// Reads the snapshot, if there is one.
pub(crate) async fn read(
    connection: &mut MultiplexedConnection,
    keys: &Keys,
) -> RedisResult<Option<Result<Snapshot, Unusable>>> {
    let mut fields: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
        .arg(&keys.snapshot)
        .query_async(connection)
        .await?;
    if fields.is_empty() {
        return Ok(None);
    }
    if fields.get("v").map(Vec::as_slice) != Some(wire::VERSION.as_bytes()) {
        return Ok(Some(Err(Unusable::Version)));
    }
    let Some(id) = fields
        .get("id")
        .and_then(|id| StreamId::parse(std::str::from_utf8(id).ok()?))
    else {
        return Ok(Some(Err(Unusable::Malformed("id"))));
    };
    let Some(events) = fields.remove("events") else {
        return Ok(Some(Err(Unusable::Malformed("events"))));
    };
    Ok(Some(Ok(Snapshot { id, events })))
}

/// Applies a snapshot's payload to `index`, line by line, split across the machine's cores (the
/// index takes concurrent inserts): returns how many events were applied and how many lines
/// were refused.
pub(crate) fn apply(payload: &[u8], index: &RevocationIndex) -> (usize, usize) {
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
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or((0, 0)))
            .fold((0, 0), |(a, s), (a2, s2)| (a + a2, s + s2))
    })
}

fn apply_lines(payload: &[u8], index: &RevocationIndex) -> (usize, usize) {
    let (mut applied, mut skipped) = (0, 0);
    for line in payload
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
    {
        match std::str::from_utf8(line)
            .ok()
            .and_then(|line| wire::decode(line).ok())
        {
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
        let (mut payload, _) = wire::encode_snapshot(&events);
        payload.push_str("\ngarbage line\n\nT 1");
        let index = RevocationIndex::new();
        assert_eq!(apply(payload.as_bytes(), &index), (10_001, 2));
        assert_eq!(index.stats().tokens, 10_001);
        assert_eq!(apply(b"", &index), (0, 0));
    }
}
