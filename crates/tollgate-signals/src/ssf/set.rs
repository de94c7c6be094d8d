//! Security Event Token validation: RFC 8417 as SSF 1.0 §4 profiles it, and what a valid SET asks
//! of the receiver.

use super::error::SetError;
use super::event_types::{self, Meaning};
use super::subject::{self, Subject};
use crate::http::{is_strict_json, numeric_date};
use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_core::jws::{self, Compact, JwsError};
use tollgate_core::{Audience, CutoffScope, KeySet, RevocationEvent, SigningAlgorithm, UnixMillis};
use tollgate_layer::RemoteJwks;

/// The longest SET read: they are a few hundred bytes, a complex subject included.
pub(crate) const MAX_SET_LEN: usize = 16 * 1024;

/// The keys the transmitter signs with: fixed, or fetched from its `jwks_uri` (refetched once
/// when a SET names an unknown `kid`).
#[derive(Debug, Clone)]
pub(crate) struct TransmitterKeys {
    pub(crate) keys: KeySet,
    pub(crate) remote: Option<RemoteJwks>,
}

/// What a valid SET asks of the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Publish these cutoffs.
    Revoke(Vec<RevocationEvent>),
    /// The stream's verification event, with the state the receiver asked for, if any.
    Verification { state: Option<String> },
    /// The stream is now `status` (`enabled`, `paused` or `disabled`).
    StreamUpdated {
        status: String,
        reason: Option<String>,
    },
    /// Another event type: acknowledged, never a cutoff.
    Ignored,
}

/// A SET that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidSet {
    pub(crate) jti: String,
    /// `iat`, Unix seconds on the transmitter's clock.
    pub(crate) issued_at: i64,
    pub(crate) event_type: String,
    /// For the stream's own events, the stream their `sub_id` names.
    pub(crate) stream_id: Option<String>,
    pub(crate) signal: Signal,
}

/// The transmitter, the audience and the rules a SET is judged by.
#[derive(Debug, Clone)]
pub(crate) struct SetValidator {
    pub(crate) transmitter: String,
    pub(crate) audience: String,
    /// The issuers whose tokens this transmitter may revoke; the first is the one an `opaque`
    /// subject belongs to.
    pub(crate) token_issuers: Vec<String>,
    pub(crate) algorithms: Vec<SigningAlgorithm>,
    pub(crate) max_age_secs: i64,
    pub(crate) leeway_secs: i64,
}

/// The claims a SET is judged by; a claim named twice does not deserialize.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub_id: Option<Value>,
    #[serde(default)]
    events: Option<Map<String, Value>>,
}

impl SetValidator {
    /// Validates `set` at `now` (Unix seconds), verified with `keys`; `critical` are the complex
    /// subject members the transmitter declared critical.
    pub(crate) async fn validate(
        &self,
        set: &str,
        keys: &TransmitterKeys,
        critical: &[String],
        now: i64,
    ) -> Result<ValidSet, SetError> {
        let compact = Compact::parse(set, MAX_SET_LEN).map_err(SetError::key)?;
        // SSF 1.0 §4.1.1: SETs MUST be explicitly typed. An untyped one is refused although RFC 8417
        // alone would allow it: the transmitter is often the identity provider itself, whose keys
        // also sign ID tokens and access tokens, and `typ` is what tells a SET from those.
        let typed = compact
            .header()
            .typ
            .as_deref()
            .is_some_and(|typ| jws::typ_is(typ, "secevent+jwt"));
        if !typed {
            return Err(SetError::request(
                "type",
                "the SET's typ must be secevent+jwt",
            ));
        }
        // Read before the signature is checked only to answer `invalid_issuer` rather than
        // `invalid_key` to a SET from someone else; nothing else is read until it verifies.
        #[derive(Deserialize)]
        struct Issuer {
            iss: String,
        }
        if !is_strict_json(compact.payload()) {
            return Err(SetError::request("malformed", "malformed SET claims"));
        }
        let claimed: Issuer = serde_json::from_slice(compact.payload())
            .map_err(|_| SetError::request("malformed", "malformed SET claims"))?;
        if claimed.iss != self.transmitter {
            return Err(SetError::issuer());
        }
        verify(&compact, keys, &self.algorithms).await?;
        let claims: RawClaims = serde_json::from_slice(compact.payload())
            .map_err(|_| SetError::request("malformed", "malformed SET claims"))?;
        self.check(claims, critical, now)
    }

    fn check(
        &self,
        claims: RawClaims,
        critical: &[String],
        now: i64,
    ) -> Result<ValidSet, SetError> {
        if !claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains(&self.audience))
        {
            return Err(SetError::audience());
        }
        let issued_at = self.check_times(&claims, now)?;
        let jti = claims
            .jti
            .filter(|jti| !jti.is_empty())
            .ok_or_else(|| SetError::request("jti", "the SET has no jti"))?;
        let (event_type, event) = single_event(claims.events)?;
        let stream_id = claims.sub_id.as_ref().and_then(opaque_id);
        let signal = match event_types::meaning(&event_type) {
            Meaning::Verification => Signal::Verification {
                state: optional_string(&event, "state")?,
            },
            Meaning::StreamUpdated => stream_updated(&event)?,
            Meaning::Other => Signal::Ignored,
            meaning => {
                // SSF 1.0 §3.1: the top-level `sub_id`; transmitters before it put the subject
                // in the event.
                let subject = claims
                    .sub_id
                    .as_ref()
                    .or_else(|| event.get("subject"))
                    .ok_or_else(|| SetError::request("subject", "the SET names no subject"))?;
                let subject = subject::parse(subject, critical)?;
                let issued_before = self.instant(&event, issued_at)?;
                Signal::Revoke(self.cutoffs(meaning, subject, issued_before)?)
            }
        };
        Ok(ValidSet {
            jti,
            issued_at,
            event_type,
            stream_id,
            signal,
        })
    }

    /// `iat` within the freshness window and not in the future; `exp`, which SSF SETs should not
    /// carry, honoured when present.
    fn check_times(&self, claims: &RawClaims, now: i64) -> Result<i64, SetError> {
        let iat = claims
            .iat
            .as_ref()
            .and_then(numeric_date)
            .ok_or_else(|| SetError::request("stale", "the SET has no iat"))?;
        if iat < now.saturating_sub(self.max_age_secs) {
            return Err(SetError::request(
                "stale",
                "the SET is older than this receiver accepts (iat)",
            ));
        }
        if iat > now.saturating_add(self.leeway_secs) {
            return Err(SetError::request(
                "future",
                "the SET was issued in the future (iat)",
            ));
        }
        if let Some(exp) = &claims.exp {
            let exp = numeric_date(exp)
                .ok_or_else(|| SetError::request("malformed", "exp is not a NumericDate"))?;
            if now >= exp.saturating_add(self.leeway_secs) {
                return Err(SetError::request("expired", "the SET has expired (exp)"));
            }
        }
        Ok(iat)
    }

    /// The cutoff's instant: the end of the second the event happened in (`event_timestamp`),
    /// or, without one, of the second the SET was issued in; on the transmitter's clock, the
    /// clock its tokens' `iat` come from.
    fn instant(&self, event: &Map<String, Value>, iat: i64) -> Result<UnixMillis, SetError> {
        let at = match event.get("event_timestamp") {
            None => iat,
            Some(value) => numeric_date(value).ok_or_else(|| {
                SetError::request("malformed", "event_timestamp is not a NumericDate")
            })?,
        };
        // An event cannot happen after the SET telling of it was issued; a cutoff in the future
        // would refuse the user's new tokens until then.
        if at > iat.saturating_add(self.leeway_secs) {
            return Err(SetError::request(
                "future",
                "the event_timestamp is later than the SET's iat",
            ));
        }
        Ok(UnixMillis::from_secs(at.saturating_add(1)))
    }

    /// The cutoffs an event about `subject` means, for the token issuer it names.
    fn cutoffs(
        &self,
        meaning: Meaning,
        subject: Subject,
        issued_before: UnixMillis,
    ) -> Result<Vec<RevocationEvent>, SetError> {
        let issuer = subject
            .issuer
            .as_deref()
            .unwrap_or(self.token_issuers[0].as_str());
        // A transmitter speaks for the token issuers it is configured for, never for another
        // provider's users (who may have the same `sub`).
        if !self.token_issuers.iter().any(|allowed| allowed == issuer) {
            return Err(SetError::denied(
                "token_issuer",
                format!("tokens of {issuer} are not this transmitter's to revoke"),
            ));
        }
        let scopes = match (meaning, subject.session, subject.user) {
            (Meaning::SessionRevoked, Some(sid), _) => vec![CutoffScope::Session(sid)],
            // A simple opaque id in a session-revoked event is a session in CAEP's own example
            // and a user to most transmitters: both cutoffs, so that whichever was meant is
            // revoked (the other matches nothing unless a `sid` equals a `sub`).
            (Meaning::SessionRevoked, None, Some(id)) if subject.opaque => {
                vec![CutoffScope::Session(id.clone()), CutoffScope::Subject(id)]
            }
            (_, _, Some(sub)) => vec![CutoffScope::Subject(sub)],
            (_, _, None) => {
                return Err(SetError::request(
                    "subject",
                    "the event revokes a user and its subject names only a session",
                ));
            }
        };
        Ok(scopes
            .into_iter()
            .map(|scope| RevocationEvent::IssuerCutoff {
                issuer: issuer.to_owned(),
                scope,
                issued_before,
            })
            .collect())
    }
}

/// The one event of `events` (SSF 1.0 §4.2.1 and the CAEP interoperability profile: one event
/// per SET; several would make one acknowledgement mean several outcomes).
fn single_event(
    events: Option<Map<String, Value>>,
) -> Result<(String, Map<String, Value>), SetError> {
    let mut events = events
        .ok_or_else(|| SetError::request("events", "the SET has no events claim"))?
        .into_iter();
    let (Some((event_type, event)), None) = (events.next(), events.next()) else {
        return Err(SetError::request(
            "events",
            "a SET must carry exactly one event",
        ));
    };
    match event {
        Value::Object(event) => Ok((event_type, event)),
        _ => Err(SetError::request(
            "events",
            "the event is not a JSON object",
        )),
    }
}

fn stream_updated(event: &Map<String, Value>) -> Result<Signal, SetError> {
    let status = optional_string(event, "status")?;
    match status.as_deref() {
        Some("enabled" | "paused" | "disabled") => Ok(Signal::StreamUpdated {
            status: status.unwrap_or_default(),
            reason: optional_string(event, "reason")?,
        }),
        _ => Err(SetError::request(
            "events",
            "a stream-updated event's status must be enabled, paused or disabled",
        )),
    }
}

fn optional_string(event: &Map<String, Value>, name: &str) -> Result<Option<String>, SetError> {
    match event.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(SetError::request(
            "malformed",
            format!("the event's {name} is not a string"),
        )),
    }
}

/// The `id` of a simple `opaque` identifier: how the stream's own events name the stream.
fn opaque_id(sub_id: &Value) -> Option<String> {
    let identifier = sub_id.as_object()?;
    if identifier.get("format")?.as_str()? != "opaque" {
        return None;
    }
    identifier.get("id")?.as_str().map(str::to_owned)
}

/// Checks the signature with the transmitter's keys; a key set fetched remotely is refetched once
/// when the `kid` is unknown (the transmitter may have just rotated).
async fn verify(
    compact: &Compact<'_>,
    keys: &TransmitterKeys,
    algorithms: &[SigningAlgorithm],
) -> Result<(), SetError> {
    match compact.verify(&keys.keys, algorithms) {
        Err(JwsError::UnknownKey) => {
            let refetched = keys.remote.as_ref().and_then(RemoteJwks::refetch);
            let Some(refetched) = refetched else {
                return Err(SetError::key(JwsError::UnknownKey));
            };
            refetched.await;
            compact
                .verify(&keys.keys, algorithms)
                .map_err(SetError::key)
        }
        other => other.map_err(SetError::key),
    }
}
