//! Who an event is about (RFC 9493 subject identifiers, SSF 1.0 §3 complex subjects), as far as
//! access tokens can tell: a user is matched by `sub`, a session by `sid`, nothing else is.

use super::error::SetError;
use serde_json::{Map, Value};

/// A subject the receiver can match tokens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    /// The token issuer an `iss_sub` identifier names; `None` for the default token issuer.
    pub(crate) issuer: Option<String>,
    /// The user: the `sub` of that issuer's tokens.
    pub(crate) user: Option<String>,
    /// The session: the `sid` of that issuer's tokens.
    pub(crate) session: Option<String>,
    /// A simple `opaque` identifier: its `id` is in `user`, but what it identifies is the
    /// transmitter's to say (CAEP's session-revoked example uses one for a session).
    pub(crate) opaque: bool,
}

/// Reads a subject: a simple `iss_sub` or `opaque` identifier, or a `complex` subject whose
/// `user` (`iss_sub` or `opaque`) and `session` (`opaque`, the `sid`) members are read. Other
/// members of a complex subject (`tenant`, `device`, ...) narrow what the event is about; they are
/// ignored, which revokes more rather than less, unless the transmitter declared them critical
/// (SSF 1.0 §3.6: an event with a critical member the receiver cannot process is discarded).
pub(crate) fn parse(value: &Value, critical: &[String]) -> Result<Subject, SetError> {
    let identifier = value
        .as_object()
        .ok_or_else(|| SetError::request("subject", "the subject is not a JSON object"))?;
    let format = format(identifier)?;
    if format == "complex" {
        return complex(identifier, critical);
    }
    let (issuer, user) = user(identifier, &format)?;
    Ok(Subject {
        issuer,
        user: Some(user),
        session: None,
        opaque: format == "opaque",
    })
}

/// The identifier's format: `format` (RFC 9493), or `subject_type` with hyphens (`iss-sub`) as
/// transmitters before SSF 1.0 wrote it.
fn format(identifier: &Map<String, Value>) -> Result<String, SetError> {
    if let Some(format) = identifier.get("format") {
        return format
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SetError::request("subject", "the subject's format is not a string"));
    }
    match identifier.get("subject_type").and_then(Value::as_str) {
        Some(legacy) => Ok(legacy.replace('-', "_")),
        None => Err(SetError::request("subject", "the subject has no format")),
    }
}

/// A user identifier: the issuer it names (for `iss_sub`) and the `sub`.
fn user(
    identifier: &Map<String, Value>,
    format: &str,
) -> Result<(Option<String>, String), SetError> {
    match format {
        "iss_sub" => Ok((Some(member(identifier, "iss")?), member(identifier, "sub")?)),
        "opaque" => Ok((None, member(identifier, "id")?)),
        other => Err(SetError::request(
            "subject_format",
            format!("subject format {other} is not supported: tokens are matched by sub"),
        )),
    }
}

fn complex(identifier: &Map<String, Value>, critical: &[String]) -> Result<Subject, SetError> {
    let mut subject = Subject {
        issuer: None,
        user: None,
        session: None,
        opaque: false,
    };
    for (name, value) in identifier {
        let member = || {
            value.as_object().ok_or_else(|| {
                SetError::request("subject", format!("the subject's {name} is not an object"))
            })
        };
        match name.as_str() {
            "format" => {}
            "user" => {
                let user_id = member()?;
                let (issuer, user) = user(user_id, &format(user_id)?)?;
                subject.issuer = issuer;
                subject.user = Some(user);
            }
            "session" => subject.session = Some(session(member()?)?),
            other if critical.iter().any(|c| c == other) => {
                return Err(SetError::request(
                    "subject",
                    format!("the subject's {other} is critical and this receiver cannot match it"),
                ));
            }
            _ => {}
        }
    }
    if subject.user.is_none() && subject.session.is_none() {
        return Err(SetError::request(
            "subject",
            "the complex subject names neither a user nor a session",
        ));
    }
    Ok(subject)
}

/// A session identifier: `opaque`, its `id` the `sid` of the session's tokens.
fn session(identifier: &Map<String, Value>) -> Result<String, SetError> {
    match format(identifier)?.as_str() {
        "opaque" => member(identifier, "id"),
        other => Err(SetError::request(
            "subject_format",
            format!("session subject format {other} is not supported: sessions are matched by sid"),
        )),
    }
}

/// A non-empty string member of an identifier.
fn member(identifier: &Map<String, Value>, name: &str) -> Result<String, SetError> {
    match identifier.get(name).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(SetError::request(
            "subject",
            format!("the subject identifier has no {name}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> Result<Subject, String> {
        parse(&value, &["tenant".to_owned()]).map_err(|e| e.description().to_owned())
    }

    #[test]
    fn users_sessions_and_their_issuer_are_read() {
        let s = read(json!({"format": "iss_sub", "iss": "https://id", "sub": "alice"})).unwrap();
        assert_eq!(
            (s.issuer.as_deref(), s.user.as_deref(), s.opaque),
            (Some("https://id"), Some("alice"), false)
        );
        let s = read(json!({"format": "opaque", "id": "alice"})).unwrap();
        assert_eq!(
            (s.issuer, s.user.as_deref(), s.opaque),
            (None, Some("alice"), true)
        );
        let s = read(json!({"subject_type": "iss-sub", "iss": "https://id", "sub": "bob"}));
        assert_eq!(
            s.unwrap().user.as_deref(),
            Some("bob"),
            "the pre-SSF spelling"
        );
        let s = read(json!({
            "format": "complex",
            "user": {"format": "iss_sub", "iss": "https://id", "sub": "alice"},
            "session": {"format": "opaque", "id": "s-1"},
            "device": {"format": "opaque", "id": "laptop"},
        }))
        .unwrap();
        assert_eq!(
            (s.issuer.as_deref(), s.user.as_deref(), s.session.as_deref()),
            (Some("https://id"), Some("alice"), Some("s-1"))
        );
    }

    #[test]
    fn what_tokens_cannot_be_matched_by_is_refused_with_its_reason() {
        for (value, reason) in [
            (
                json!({"format": "email", "email": "a@example.com"}),
                "subject format email is not supported: tokens are matched by sub",
            ),
            (
                json!({"format": "phone_number", "phone_number": "+1"}),
                "subject format phone_number is not supported",
            ),
            (
                json!({"format": "aliases", "identifiers": []}),
                "subject format aliases is not supported",
            ),
            (
                json!({"format": "iss_sub", "iss": "https://id"}),
                "has no sub",
            ),
            (json!({"format": "opaque", "id": ""}), "has no id"),
            (json!({"id": "x"}), "has no format"),
            (json!("alice"), "not a JSON object"),
            (
                json!({"format": "complex", "user": {"format": "email", "email": "a@b"}}),
                "subject format email is not supported",
            ),
            (
                json!({"format": "complex", "session": {"format": "iss_sub", "iss": "i", "sub": "s"}}),
                "sessions are matched by sid",
            ),
            (
                json!({"format": "complex", "device": {"format": "opaque", "id": "d"}}),
                "neither a user nor a session",
            ),
            (
                json!({"format": "complex", "user": {"format": "opaque", "id": "a"}, "tenant": {"format": "opaque", "id": "t"}}),
                "tenant is critical",
            ),
        ] {
            let error = read(value.clone()).unwrap_err();
            assert!(error.contains(reason), "{value}: {error}");
        }
    }
}
