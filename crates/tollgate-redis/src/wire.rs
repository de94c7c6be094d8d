//! The wire format: how revocation events, stream entries, the snapshot and the keys look in
//! Redis. Version 1, documented for other languages in `docs/replication.md`.
//!
//! One event is one line of UTF-8, fields separated by single spaces, the last field running to
//! the end of the line (so an id may contain spaces, never a control character):
//!
//! ```text
//! T <expires_at_ms> <jti>                 one access token, until it expires
//! G <expires_at_ms> <grant_id>            a refresh-token family and its access tokens
//! C <issued_before_ms> *                  every token issued before the instant
//! C <issued_before_ms> tenant <path>      ... of this tenant and its sub-tenants
//! C <issued_before_ms> subject <sub>      ... of this subject
//! C <issued_before_ms> client <client_id> ... issued to this client
//! ```
//!
//! A stream entry has one field, named for the format version (`1`), whose value is the publish
//! instant (Unix milliseconds, for lag), a space, and the event line:
//! `XADD <stream> * 1 "1763805600123 T 1763809200000 <jti>"`. The snapshot is a hash with `v`, `id`
//! (the stream id it covers: every entry up to and including it is in the snapshot), `at` and
//! `events` (event lines joined by `\n`).

use std::fmt::{self, Write as _};
use tollgate_core::{CutoffScope, RevocationEvent, TenantPath, UnixMillis};

/// The format version this code writes and reads.
pub const VERSION: &str = "1";

/// The longest id (jti, grant id, subject, client id, tenant path) an event may carry, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// The Redis keys of one replication channel, all sharing a hash tag so that a Redis Cluster
/// keeps them in one slot (the snapshot script touches two of them atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The stream of events.
    pub stream: String,
    /// The snapshot hash.
    pub snapshot: String,
    /// The epoch: a random value that changes when Redis loses its data.
    pub epoch: String,
}

impl Keys {
    /// The keys under `prefix`: `{prefix}:revocations`, `{prefix}:snapshot`, `{prefix}:epoch`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            stream: format!("{{{prefix}}}:revocations"),
            snapshot: format!("{{{prefix}}}:snapshot"),
            epoch: format!("{{{prefix}}}:epoch"),
        }
    }
}

impl Default for Keys {
    /// The keys under the prefix `tollgate`.
    fn default() -> Self {
        Keys::new("tollgate")
    }
}

/// Why an event line or a stream entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(String);

impl WireError {
    fn new(message: impl Into<String>) -> Self {
        WireError(message.into())
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

/// Checks an id carried by an event: non-empty, at most [`MAX_ID_LEN`] bytes, no control
/// characters (they would break the line format, and no honest id has them).
pub fn check_id(what: &str, id: &str) -> Result<(), WireError> {
    if id.is_empty() {
        return Err(WireError::new(format!("empty {what}")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(WireError::new(format!(
            "{what} longer than {MAX_ID_LEN} bytes"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(WireError::new(format!(
            "{what} contains a control character"
        )));
    }
    Ok(())
}

/// Encodes `event` as one line (no newline). Refuses what the format cannot carry: an id that
/// [`check_id`] refuses, an invalid tenant path, a kind of event this version does not know.
pub fn encode(event: &RevocationEvent) -> Result<String, WireError> {
    let mut line = String::with_capacity(48);
    match event {
        RevocationEvent::Token { jti, expires_at } => {
            check_id("jti", jti)?;
            let _ = write!(line, "T {} {jti}", expires_at.0);
        }
        RevocationEvent::Grant {
            grant_id,
            expires_at,
        } => {
            check_id("grant id", grant_id)?;
            let _ = write!(line, "G {} {grant_id}", expires_at.0);
        }
        RevocationEvent::Cutoff {
            scope,
            issued_before,
        } => {
            let _ = write!(line, "C {} ", issued_before.0);
            match scope {
                CutoffScope::All => line.push('*'),
                CutoffScope::Tenant(path) if !TenantPath::is_valid(path) => {
                    return Err(WireError::new("invalid tenant path"));
                }
                CutoffScope::Tenant(_) => {}
                CutoffScope::Subject(sub) => check_id("subject", sub)?,
                CutoffScope::Client(client) => check_id("client id", client)?,
                other => {
                    return Err(WireError::new(format!(
                        "cutoff scope {other:?} has no wire form"
                    )));
                }
            }
            // The scope's name as every store spells it (`CutoffScope::kind`), then its value.
            if !matches!(scope, CutoffScope::All) {
                let _ = write!(line, "{} {}", scope.kind(), scope.value());
            }
        }
        other => {
            return Err(WireError::new(format!("event {other:?} has no wire form")));
        }
    }
    Ok(line)
}

/// Decodes one event line, validating everything [`encode`] guarantees.
pub fn decode(line: &str) -> Result<RevocationEvent, WireError> {
    let mut fields = line.splitn(3, ' ');
    let kind = fields.next().unwrap_or_default();
    let instant = fields
        .next()
        .ok_or_else(|| WireError::new("truncated event"))?;
    let instant = instant
        .parse::<i64>()
        .map(UnixMillis)
        .map_err(|_| WireError::new("the instant is not an integer"))?;
    let rest = fields
        .next()
        .ok_or_else(|| WireError::new("truncated event"))?;
    let event = match kind {
        "T" => {
            check_id("jti", rest)?;
            RevocationEvent::Token {
                jti: rest.to_owned(),
                expires_at: instant,
            }
        }
        "G" => {
            check_id("grant id", rest)?;
            RevocationEvent::Grant {
                grant_id: rest.to_owned(),
                expires_at: instant,
            }
        }
        "C" => {
            let scope = if rest == "*" {
                CutoffScope::All
            } else {
                let (kind, value) = rest
                    .split_once(' ')
                    .ok_or_else(|| WireError::new("cutoff without a scope value"))?;
                // `all` is spelled `*` on the wire, never by its name.
                match CutoffScope::from_parts(kind, value) {
                    Some(CutoffScope::Tenant(path)) if !TenantPath::is_valid(&path) => {
                        return Err(WireError::new("invalid tenant path"));
                    }
                    Some(scope @ CutoffScope::Tenant(_)) => scope,
                    Some(scope @ CutoffScope::Subject(_)) => {
                        check_id("subject", value)?;
                        scope
                    }
                    Some(scope @ CutoffScope::Client(_)) => {
                        check_id("client id", value)?;
                        scope
                    }
                    _ => return Err(WireError::new("unknown cutoff scope")),
                }
            };
            RevocationEvent::Cutoff {
                scope,
                issued_before: instant,
            }
        }
        _ => return Err(WireError::new("unknown event kind")),
    };
    Ok(event)
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// Parses `<ms>-<seq>` (or `<ms>`, which Redis reads as `<ms>-0`).
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Encodes events as a snapshot payload: one line each; events the format cannot carry are
/// left out (they could not have come through the stream either) and counted in the result.
pub fn encode_snapshot(events: &[RevocationEvent]) -> (String, usize) {
    let mut payload = String::with_capacity(events.len() * 40);
    let mut left_out = 0;
    for event in events {
        match encode(event) {
            Ok(line) => {
                if !payload.is_empty() {
                    payload.push('\n');
                }
                payload.push_str(&line);
            }
            Err(_) => left_out += 1,
        }
    }
    (payload, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<RevocationEvent> {
        let at = UnixMillis(1_732_000_000_123);
        vec![
            RevocationEvent::Token {
                jti: "AbC-_09xyzAbC-_09xyzAb".into(),
                expires_at: at,
            },
            RevocationEvent::Token {
                jti: "a jti with spaces".into(),
                expires_at: at,
            },
            RevocationEvent::Grant {
                grant_id: "g1".into(),
                expires_at: at,
            },
            RevocationEvent::Cutoff {
                scope: CutoffScope::All,
                issued_before: at,
            },
            RevocationEvent::Cutoff {
                scope: CutoffScope::Tenant("/Org/Sub".into()),
                issued_before: at,
            },
            RevocationEvent::Cutoff {
                scope: CutoffScope::Subject("alice@example.com".into()),
                issued_before: at,
            },
            RevocationEvent::Cutoff {
                scope: CutoffScope::Client("web app".into()),
                issued_before: UnixMillis(-5),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for event in every_kind() {
            let line = encode(&event).unwrap();
            assert_eq!(decode(&line).unwrap(), event, "{line}");
        }
    }

    #[test]
    fn the_lines_are_stable() {
        let lines: Vec<String> = every_kind().iter().map(|e| encode(e).unwrap()).collect();
        assert_eq!(
            lines,
            [
                "T 1732000000123 AbC-_09xyzAbC-_09xyzAb",
                "T 1732000000123 a jti with spaces",
                "G 1732000000123 g1",
                "C 1732000000123 *",
                "C 1732000000123 tenant /Org/Sub",
                "C 1732000000123 subject alice@example.com",
                "C -5 client web app",
            ]
        );
    }

    #[test]
    fn garbage_is_refused_never_guessed() {
        for line in [
            "",
            "T",
            "T 12",
            "T abc jti",
            "T 12 ",
            "X 12 id",
            "C 12",
            "C 12 tenant",
            "C 12 tenant not-a-path",
            "C 12 planet mars",
            "C 12 subject ",
            "T 99999999999999999999 j",
            "T 12 new\nline",
            "G 12 tab\there",
        ] {
            assert!(decode(line).is_err(), "{line:?} was accepted");
        }
        let long = format!("T 1 {}", "x".repeat(MAX_ID_LEN + 1));
        assert!(decode(&long).is_err());
    }

    #[test]
    fn what_the_format_cannot_carry_is_not_encoded() {
        let event = RevocationEvent::Token {
            jti: "new\nline".into(),
            expires_at: UnixMillis(1),
        };
        assert!(encode(&event).is_err());
        let (payload, left_out) = encode_snapshot(&[event, every_kind()[0].clone()]);
        assert_eq!(left_out, 1);
        assert_eq!(payload, "T 1732000000123 AbC-_09xyzAbC-_09xyzAb");
    }

    #[test]
    fn stream_ids_order_as_redis_does() {
        let a = StreamId::parse("1732-5").unwrap();
        let b = StreamId::parse("1732-10").unwrap();
        let c = StreamId::parse("1733").unwrap();
        assert!(a < b && b < c);
        assert_eq!(c.to_string(), "1733-0");
        assert!(StreamId::parse("x-1").is_none());
        assert!(StreamId::parse("1-").is_none());
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let keys = Keys::new("prod");
        assert_eq!(keys.stream, "{prod}:revocations");
        assert_eq!(keys.snapshot, "{prod}:snapshot");
        assert_eq!(keys.epoch, "{prod}:epoch");
    }
}
