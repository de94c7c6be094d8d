//! Target `replication_wire`: what a follower parses from Redis, the stream entries (and the
//! `XREAD` replies around them) and the snapshot.

use std::collections::{BTreeSet, HashMap};
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_redis::fuzzing::{self, Decoded};
use tollgate_redis::wire::{self, StreamId, Version};

/// The first byte picks what the rest is (modulo 4):
///
/// * `0`: a stream entry's fields, `name \0 value \0 name \0 value ...`;
/// * `1`: a raw Redis reply (RESP2 or RESP3) to `XREAD`;
/// * `2`: the snapshot hash's fields `v`, `id`, `events`, separated by `\0` (missing ones absent);
/// * `3`: a snapshot payload (event lines).
///
/// Panics unless: nothing panics; a decoded entry's event, of every kind (issuer and session
/// cutoffs included), re-encodes (`wire::encode` accepts whatever `decode` accepted) into a line
/// that decodes to the same event, and into an entry named for the lowest version that carries
/// it (version 2 exactly for `I` lines and session scopes) that decodes to the same event and
/// instant; an accepted snapshot's id prints as an id that parses to itself; a payload's decoded
/// events re-encode, none left out, into a payload of the highest version among them that
/// decodes to the same events; and applying a payload across threads, as the loader does,
/// applies every line exactly once, to the same state as applying its decoded events one by
/// one.
pub fn replication_wire(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let parts: Vec<&[u8]> = body.split(|&b| b == 0).collect();
            let fields: Vec<(Vec<u8>, Vec<u8>)> = parts
                .chunks_exact(2)
                .map(|pair| (pair[0].to_vec(), pair[1].to_vec()))
                .collect();
            entry_round_trips(&fuzzing::decode_entry(&fields));
        }
        1 => {
            for (_, decoded) in fuzzing::read_reply(body).unwrap_or_default() {
                entry_round_trips(&decoded);
            }
        }
        2 => {
            let mut fields = HashMap::new();
            for (name, value) in ["v", "id", "events"]
                .into_iter()
                .zip(body.split(|&b| b == 0))
            {
                fields.insert(name.to_owned(), value.to_vec());
            }
            if let Ok((id, payload)) = fuzzing::parse_snapshot(fields) {
                assert_eq!(StreamId::parse(&id.to_string()), Some(id), "{id}");
                payload_round_trips(&payload);
            }
        }
        _ => payload_round_trips(body),
    }
}

fn entry_round_trips(decoded: &Decoded) {
    let Ok((event, at)) = decoded else {
        return;
    };
    let line = wire::encode(event)
        .unwrap_or_else(|e| panic!("decoded {event:?} but cannot encode it: {e}"));
    assert_eq!(wire::decode(&line).as_ref(), Ok(event), "{line:?}");
    // Read off the line itself: an issuer's cutoff, or a cutoff whose scope is a session.
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    let needs_v2 = parts[0] == "I" || (parts[0] == "C" && parts.get(2) == Some(&"session"));
    let version = if needs_v2 { Version::V2 } else { Version::V1 };
    assert_eq!(Version::of(event), version, "{line:?}");
    let fields = fuzzing::entry_fields(event, *at)
        .unwrap_or_else(|e| panic!("decoded {event:?} but cannot publish it: {e}"));
    assert_eq!(fields[0].0, version.as_str().as_bytes(), "{line:?}");
    let again = fuzzing::decode_entry(&fields);
    assert_eq!(again.as_ref(), Ok(&(event.clone(), *at)), "{line:?}");
    let index = RevocationIndex::new();
    index.apply(event);
    match event {
        RevocationEvent::Token { jti, .. } => assert!(index.is_token_revoked(jti), "{line:?}"),
        RevocationEvent::Grant { grant_id, .. } => {
            assert!(index.is_grant_revoked(grant_id), "{line:?}")
        }
        _ => {}
    }
}

fn payload_round_trips(payload: &[u8]) {
    let decoded = fuzzing::decode_snapshot(payload);
    let events: Vec<RevocationEvent> = decoded.iter().flatten().cloned().collect();
    let refused = decoded.len() - events.len();
    let encoded = wire::encode_snapshot(&events);
    assert_eq!(
        encoded.left_out, 0,
        "decoded events the format cannot carry"
    );
    let highest = events.iter().map(Version::of).max().unwrap_or(Version::V1);
    assert_eq!(encoded.version, highest, "{events:?}");
    let again: Vec<Option<RevocationEvent>> = fuzzing::decode_snapshot(encoded.lines.as_bytes());
    assert_eq!(
        again,
        events.iter().cloned().map(Some).collect::<Vec<_>>(),
        "re-encoded payload {encoded:?}"
    );

    let sequential = RevocationIndex::new();
    for event in &events {
        sequential.apply(event);
    }
    let parallel = RevocationIndex::new();
    assert_eq!(
        fuzzing::apply_snapshot(payload, &parallel),
        Some((events.len(), refused)),
        "the split apply did not apply every line once"
    );
    assert_eq!(state(&parallel), state(&sequential));
    // Far in the future: purging never panics whatever the instants.
    parallel.purge_expired(UnixMillis(i64::MAX));
}

fn state(index: &RevocationIndex) -> BTreeSet<String> {
    index.snapshot().iter().map(|e| format!("{e:?}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_takes_valid_and_broken_input() {
        for input in [
            &b"\x001\x001763805600123 T 1763809200000 jti-1"[..],
            b"\x001\x00soon T 1 j",
            b"\x01*1\r\n*2\r\n$7\r\nstream1\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\n1\r\n$6\r\n5 G 9 g\r\n",
            b"\x021\x001-1\x00T 5 a\nC 3 *",
            b"\x022\x001-1\x00T 5 a\nI 3 https://id.example.com subject alice",
            b"\x03T 5 a\n\nC 3 tenant /Org\nX",
            b"\x002\x001 C 5 session s-1",
            b"\x002\x001 I 5 urn:idp *",
            b"\x003\x001 T 5 from-the-future",
            b"",
        ] {
            replication_wire(input);
        }
    }
}
