//! The wire format: how revocation events, stream entries, the snapshot and the keys look in
//! Redis. Versions 1 and 2, documented for other languages in `docs/replication.md`.
//!
//! One event is one line of UTF-8, fields separated by single spaces, the last field running to
//! the end of the line (so an id may contain spaces, never a control character):
//!
//! ```text
//! T <expires_at_ms> <jti>                    one access token, until it expires
//! G <expires_at_ms> <grant_id>               a refresh-token family and its access tokens
//! C <issued_before_ms> *                     every token issued before the instant
//! C <issued_before_ms> tenant <path>         ... of this tenant and its sub-tenants
//! C <issued_before_ms> subject <sub>         ... of this subject
//! C <issued_before_ms> client <client_id>    ... issued to this client
//! C <issued_before_ms> session <sid>         ... in this session (`sid`)              (version 2)
//! I <issued_before_ms> <issuer> *            every token of one issuer (`iss`)      (version 2)
//! I <issued_before_ms> <issuer> <kind> <v>   ... in a scope: tenant, subject, client or session
//! ```
//!
//! An issuer is one field: it never holds whitespace (issuer URLs have none).
//!
//! A stream entry has one field, named for the lowest format version that can carry its line
//! ([`Version::of`]), whose value is the publish instant (Unix milliseconds, for lag), a space,
//! and the event line: `XADD <stream> * 1 "1763805600123 T 1763809200000 <jti>"`. Lines of
//! version 1 keep the name `1`, so that followers of the previous release keep reading them
//! during a rolling upgrade; only lines they could not read are named `2`. The snapshot is a hash
//! with `v` (`2` if any of its lines needs version 2, else `1`), `id` (the stream id it covers:
//! every entry up to and including it is in the snapshot), `at` and `events` (event lines joined
//! by `\n`).

use std::fmt::{self, Write as _};
use tollgate_core::{CutoffScope, RevocationEvent, TenantPath, UnixMillis};

/// A format version: what a stream entry's field and a snapshot's `v` are named.
///
/// Each names the lowest version whose lines can carry what it holds, so that a follower reads
/// everything of the versions it knows and recognises what it does not (see
/// `docs/replication.md` for what a follower does then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// Tokens, grants, and cutoffs for every issuer by all, tenant, subject and client.
    V1,
    /// Adds session cutoffs (`C <ms> session <sid>`) and cutoffs of one issuer (`I` lines).
    V2,
}

impl Version {
    /// Every version this code reads, oldest first; it writes each where it is the lowest that
    /// carries the line.
    pub const ALL: [Version; 2] = [Version::V1, Version::V2];

    /// Its name on the wire: `1` or `2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "1",
            Version::V2 => "2",
        }
    }

    /// The version a field name or a snapshot's `v` names, if this code reads it.
    pub fn parse(name: &[u8]) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|v| v.as_str().as_bytes() == name)
    }

    /// The lowest version whose lines can carry `event`: version 1 unless it is a session cutoff
    /// or a cutoff of one issuer.
    pub fn of(event: &RevocationEvent) -> Version {
        match event.as_cutoff() {
            Some((Some(_), _, _)) | Some((None, CutoffScope::Session(_), _)) => Version::V2,
            _ => Version::V1,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest id (jti, grant id, subject, client id, session id, tenant path, issuer) an event
/// may carry, in bytes.
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

/// Checks an issuer carried by an `I` line: an id ([`check_id`]) without whitespace, since it is
/// one field of the line (issuer URLs have none).
pub fn check_issuer(issuer: &str) -> Result<(), WireError> {
    check_id("issuer", issuer)?;
    if issuer.chars().any(char::is_whitespace) {
        return Err(WireError::new("issuer contains whitespace"));
    }
    Ok(())
}

/// Encodes `event` as one line (no newline). Refuses what the format cannot carry: an id that
/// [`check_id`] refuses, an issuer that [`check_issuer`] refuses, an invalid tenant path, a kind
/// of event or scope this version does not know. [`Version::of`] says which version the line
/// needs.
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
        other => {
            let (issuer, scope, issued_before) = other
                .as_cutoff()
                .ok_or_else(|| WireError::new(format!("event {other:?} has no wire form")))?;
            match issuer {
                None => {
                    let _ = write!(line, "C {} ", issued_before.0);
                }
                Some(issuer) => {
                    check_issuer(issuer)?;
                    let _ = write!(line, "I {} {issuer} ", issued_before.0);
                }
            }
            encode_scope(scope, &mut line)?;
        }
    }
    Ok(line)
}

/// Appends a cutoff's scope: `*`, or its name as every store spells it
/// ([`CutoffScope::kind`]), a space and its value.
fn encode_scope(scope: &CutoffScope, line: &mut String) -> Result<(), WireError> {
    match scope {
        CutoffScope::All => {
            line.push('*');
            return Ok(());
        }
        CutoffScope::Tenant(path) if !TenantPath::is_valid(path) => {
            return Err(WireError::new("invalid tenant path"));
        }
        CutoffScope::Tenant(_) => {}
        CutoffScope::Subject(sub) => check_id("subject", sub)?,
        CutoffScope::Client(client) => check_id("client id", client)?,
        CutoffScope::Session(sid) => check_id("session id", sid)?,
        other => {
            return Err(WireError::new(format!(
                "cutoff scope {other:?} has no wire form"
            )));
        }
    }
    let _ = write!(line, "{} {}", scope.kind(), scope.value());
    Ok(())
}

/// Decodes one event line (of any version this code reads), validating everything [`encode`]
/// guarantees.
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
        "C" => RevocationEvent::cutoff(None, decode_scope(rest)?, instant),
        "I" => {
            let (issuer, scope) = rest
                .split_once(' ')
                .ok_or_else(|| WireError::new("issuer cutoff without a scope"))?;
            check_issuer(issuer)?;
            RevocationEvent::cutoff(Some(issuer), decode_scope(scope)?, instant)
        }
        _ => return Err(WireError::new("unknown event kind")),
    };
    Ok(event)
}

/// A cutoff's scope: `*`, or a scope name and its value.
fn decode_scope(text: &str) -> Result<CutoffScope, WireError> {
    if text == "*" {
        return Ok(CutoffScope::All);
    }
    let (kind, value) = text
        .split_once(' ')
        .ok_or_else(|| WireError::new("cutoff without a scope value"))?;
    // `all` is spelled `*` on the wire, never by its name.
    let scope = match CutoffScope::from_parts(kind, value) {
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
        Some(scope @ CutoffScope::Session(_)) => {
            check_id("session id", value)?;
            scope
        }
        _ => return Err(WireError::new("unknown cutoff scope")),
    };
    Ok(scope)
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

/// A snapshot payload, from [`encode_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPayload {
    /// The event lines joined by `\n`.
    pub lines: String,
    /// The snapshot's `v`: the highest version any of its lines needs (version 1 when empty), so
    /// that a follower that cannot read every line refuses the whole snapshot.
    pub version: Version,
    /// Events the format cannot carry, left out.
    pub left_out: usize,
}

/// Encodes events as a snapshot payload: one line each; events the format cannot carry are
/// left out (they could not have come through the stream either) and counted.
pub fn encode_snapshot(events: &[RevocationEvent]) -> SnapshotPayload {
    let mut payload = SnapshotPayload {
        lines: String::with_capacity(events.len() * 40),
        version: Version::V1,
        left_out: 0,
    };
    for event in events {
        match encode(event) {
            Ok(line) => {
                if !payload.lines.is_empty() {
                    payload.lines.push('\n');
                }
                payload.lines.push_str(&line);
                payload.version = payload.version.max(Version::of(event));
            }
            Err(_) => payload.left_out += 1,
        }
    }
    payload
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
            RevocationEvent::Cutoff {
                scope: CutoffScope::Session("sid 1".into()),
                issued_before: at,
            },
            RevocationEvent::cutoff(Some(ISSUER), CutoffScope::All, at),
            RevocationEvent::cutoff(Some(ISSUER), CutoffScope::Tenant("/Org".into()), at),
            RevocationEvent::cutoff(
                Some(ISSUER),
                CutoffScope::Subject("248289761001".into()),
                at,
            ),
            RevocationEvent::cutoff(Some(ISSUER), CutoffScope::Client("web app".into()), at),
            RevocationEvent::cutoff(Some("urn:idp"), CutoffScope::Session("s-1".into()), at),
        ]
    }

    const ISSUER: &str = "https://id.example.com/realms/acme";

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
                "C 1732000000123 session sid 1",
                "I 1732000000123 https://id.example.com/realms/acme *",
                "I 1732000000123 https://id.example.com/realms/acme tenant /Org",
                "I 1732000000123 https://id.example.com/realms/acme subject 248289761001",
                "I 1732000000123 https://id.example.com/realms/acme client web app",
                "I 1732000000123 urn:idp session s-1",
            ]
        );
    }

    /// Only what a format-1 follower cannot read is named version 2: the lines of version 1
    /// keep their name through a rolling upgrade.
    #[test]
    fn each_line_names_the_lowest_version_that_carries_it() {
        let versions: Vec<Version> = every_kind().iter().map(Version::of).collect();
        let (v1, v2) = versions.split_at(7);
        assert!(v1.iter().all(|v| *v == Version::V1), "{versions:?}");
        assert!(v2.iter().all(|v| *v == Version::V2), "{versions:?}");
        for version in Version::ALL {
            assert_eq!(Version::parse(version.as_str().as_bytes()), Some(version));
        }
        for unknown in [&b"0"[..], b"3", b"", b"v2", b"02"] {
            assert_eq!(Version::parse(unknown), None, "{unknown:?}");
        }
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
            "C 12 session ",
            "C 12 all ",
            "T 99999999999999999999 j",
            "T 12 new\nline",
            "G 12 tab\there",
            "I 12",
            "I 12 https://id.example.com",
            "I 12  *",
            "I 12 https://id.example.com all ",
            "I 12 https://id.example.com planet mars",
            "I 12 https://id.example.com tenant Org",
            "I 12 https://id.example.com session ",
            "I 12 https://id\u{1}.example.com *",
            "I 12 https://id\u{a0}.example.com *",
        ] {
            assert!(decode(line).is_err(), "{line:?} was accepted");
        }
        let long = format!("T 1 {}", "x".repeat(MAX_ID_LEN + 1));
        assert!(decode(&long).is_err());
        let long_issuer = format!("I 1 {} *", "x".repeat(MAX_ID_LEN + 1));
        assert!(decode(&long_issuer).is_err());
    }

    /// An issuer is one field: encode refuses what decode would read as something else.
    #[test]
    fn issuers_are_refused_by_encode_as_by_decode() {
        for issuer in [
            "",
            "https://id.example.com two",
            "tab\there",
            "nbsp\u{a0}here",
            "new\nline",
            "bell\u{7}",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            let event = RevocationEvent::cutoff(Some(issuer), CutoffScope::All, UnixMillis(1));
            assert!(encode(&event).is_err(), "{issuer:?} was encoded");
            assert!(check_issuer(issuer).is_err(), "{issuer:?}");
        }
        let session = CutoffScope::Session("new\nline".into());
        assert!(encode(&RevocationEvent::cutoff(None, session, UnixMillis(1))).is_err());
    }

    #[test]
    fn what_the_format_cannot_carry_is_not_encoded() {
        let event = RevocationEvent::Token {
            jti: "new\nline".into(),
            expires_at: UnixMillis(1),
        };
        assert!(encode(&event).is_err());
        let payload = encode_snapshot(&[event, every_kind()[0].clone()]);
        assert_eq!(payload.left_out, 1);
        assert_eq!(payload.lines, "T 1732000000123 AbC-_09xyzAbC-_09xyzAb");
    }

    /// A snapshot is version 2 as soon as one of its lines is: a follower that reads version 1
    /// only must refuse it whole rather than skip what it revokes.
    #[test]
    fn a_snapshot_names_the_highest_version_of_its_lines() {
        let events = every_kind();
        assert_eq!(encode_snapshot(&[]).version, Version::V1);
        assert_eq!(encode_snapshot(&events[..7]).version, Version::V1);
        for event in &events[7..] {
            let mut some = events[..3].to_vec();
            some.push(event.clone());
            assert_eq!(encode_snapshot(&some).version, Version::V2, "{event:?}");
        }
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
