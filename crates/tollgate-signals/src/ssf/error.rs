//! Why a security event token was refused, in the words RFC 8935 §2.4 gives a receiver.

use std::fmt;
use tollgate_core::jws::JwsError;

/// Why a SET was refused: an RFC 8935 §2.4 error code for the transmitter (in a push answer's
/// body or a poll request's `setErrs`), a description safe to send back (it never echoes the SET),
/// and a short reason for metrics ([`SignalStats::refused_by_reason`](crate::SignalStats)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetError {
    err: &'static str,
    reason: &'static str,
    description: String,
}

impl SetError {
    fn new(err: &'static str, reason: &'static str, description: impl Into<String>) -> Self {
        SetError {
            err,
            reason,
            description: description.into(),
        }
    }

    /// `invalid_request`: not a SET this receiver accepts (malformed, wrong type, claims or event).
    pub(crate) fn request(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new("invalid_request", reason, description)
    }

    /// `invalid_issuer`: `iss` is not the transmitter's.
    pub(crate) fn issuer() -> Self {
        Self::new(
            "invalid_issuer",
            "issuer",
            "the SET's iss is not this stream's transmitter",
        )
    }

    /// `invalid_audience`: `aud` does not name this receiver.
    pub(crate) fn audience() -> Self {
        Self::new(
            "invalid_audience",
            "audience",
            "the SET's aud does not name this receiver",
        )
    }

    /// `invalid_key`: the signature, its algorithm or its key.
    pub(crate) fn key(error: JwsError) -> Self {
        match error {
            JwsError::Malformed => Self::request("malformed", "malformed SET"),
            JwsError::CriticalHeader => Self::request("malformed", "unsupported critical header"),
            other => Self::new("invalid_key", "signature", other.to_string()),
        }
    }

    /// `invalid_state` (SSF 1.0 §8.1.4.1): a verification event whose state this receiver did not
    /// ask for.
    pub(crate) fn state() -> Self {
        Self::new(
            "invalid_state",
            "state",
            "the verification state is not the one this receiver requested",
        )
    }

    /// `access_denied`: the transmitter may not revoke what it names.
    pub(crate) fn denied(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new("access_denied", reason, description)
    }

    /// The RFC 8935 §2.4 error code: `invalid_request`, `invalid_key`, `invalid_issuer`,
    /// `invalid_audience`, `access_denied`, or SSF's `invalid_state`.
    pub fn err(&self) -> &'static str {
        self.err
    }

    /// A short name for metrics: `malformed`, `type`, `signature`, `issuer`, `audience`, `stale`,
    /// `future`, `expired`, `jti`, `events`, `subject`, `subject_format`, `token_issuer`,
    /// `stream`, `state`, `replayed`.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// What was wrong, for the transmitter's logs.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.err, self.description)
    }
}

impl std::error::Error for SetError {}
