//! What a follower parses from Redis, reachable by the `replication_wire` fuzz target
//! (`crates/tollgate-fuzz`) under the feature `fuzzing`: thin entry points to the crate-private
//! decoders, so that they need not become public API. Not a stable API.

use crate::snapshot;
use crate::stream::{self, RawEntry};
use crate::wire::{self, StreamId};
use std::collections::HashMap;
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};

/// A decoded stream entry: the event and its publish instant, or why it was skipped.
pub type Decoded = Result<(RevocationEvent, UnixMillis), String>;

/// A stream entry's fields, names and values, as Redis holds them.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes a stream entry from its fields, as a follower does.
pub fn decode_entry(fields: &[(Vec<u8>, Vec<u8>)]) -> Decoded {
    RawEntry {
        id: None,
        fields: fields.to_vec(),
    }
    .decode()
}

/// The fields a producer `XADD`s for `event` published at `at` (the field named for the version
/// its line needs), or why the format cannot carry it.
pub fn entry_fields(event: &RevocationEvent, at: UnixMillis) -> Result<Fields, wire::WireError> {
    let entry = stream::EntryLine::encode(event)?;
    Ok(vec![(
        entry.version.as_str().as_bytes().to_vec(),
        stream::entry_value(&entry.line, at).into_bytes(),
    )])
}

/// Parses `resp` as a Redis reply (RESP2 or RESP3) and takes it apart as the reply to an
/// `XREAD` (each entry's id, and the entry decoded); `None` if it is not a reply at all.
pub fn read_reply(resp: &[u8]) -> Option<Vec<(Option<StreamId>, Decoded)>> {
    let value = redis::parse_redis_value(resp).ok()?;
    Some(
        stream::read_entries(value)
            .into_iter()
            .map(|entry| (entry.id, entry.decode()))
            .collect(),
    )
}

/// A snapshot from its hash's fields: the stream id it covers and its payload, or why a follower
/// refuses it.
pub fn parse_snapshot(fields: HashMap<String, Vec<u8>>) -> Result<(StreamId, Vec<u8>), String> {
    snapshot::parse(fields)
        .map(|s| (s.id, s.events))
        .map_err(|why| why.to_string())
}

/// A snapshot payload's lines decoded one by one (`None`: not an event), as the loader does.
pub fn decode_snapshot(payload: &[u8]) -> Vec<Option<RevocationEvent>> {
    snapshot::decode_lines(payload).collect()
}

/// Applies a snapshot payload to `index` as the loader does (split across threads): events
/// applied and lines refused, `None` if a worker failed.
pub fn apply_snapshot(payload: &[u8], index: &RevocationIndex) -> Option<(usize, usize)> {
    snapshot::apply(payload, index)
}
