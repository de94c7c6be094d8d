//! The event types the receiver knows, by their URIs, and what each one revokes.

/// SSF 1.0 §8.1.4: the transmitter answers a verification request with this event on the stream.
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// SSF 1.0 §8.1.5: the transmitter enabled, paused or disabled the stream.
pub const STREAM_UPDATED: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";
/// CAEP 1.0 §3.1: a session (or every session of a user) was revoked.
pub const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP 1.0 §3.3: a credential of the user was created, changed, revoked or deleted.
pub const CAEP_CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC 1.0: the account was disabled.
pub const RISC_ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC 1.0: the account was deleted.
pub const RISC_ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// RISC 1.0: a credential of the account was compromised.
pub const RISC_CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";
/// RISC 1.0 (superseded by CAEP's session-revoked, still sent): every session of the account was
/// revoked.
pub const RISC_SESSIONS_REVOKED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked";

/// Every event type the receiver acts on, as it asks for them when it creates a stream
/// (`events_requested`): the revocations, then the stream's own events.
pub const SUPPORTED: [&str; 8] = [
    CAEP_SESSION_REVOKED,
    CAEP_CREDENTIAL_CHANGE,
    RISC_ACCOUNT_DISABLED,
    RISC_ACCOUNT_PURGED,
    RISC_CREDENTIAL_COMPROMISE,
    RISC_SESSIONS_REVOKED,
    VERIFICATION,
    STREAM_UPDATED,
];

/// What an event of a type means to the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// A session ended: the session's tokens, or the user's when no session is named.
    SessionRevoked,
    /// Every token of the user (the account or its credentials can no longer be trusted).
    UserRevoked,
    /// The stream's verification event.
    Verification,
    /// The stream's status changed.
    StreamUpdated,
    /// Any other type: acknowledged, counted, never a cutoff.
    Other,
}

pub(crate) fn meaning(event_type: &str) -> Meaning {
    match event_type {
        CAEP_SESSION_REVOKED => Meaning::SessionRevoked,
        // A user's sessions revoked, a credential changed, the account disabled, deleted or
        // compromised: whatever tokens the user holds were issued under what is no longer true.
        CAEP_CREDENTIAL_CHANGE
        | RISC_ACCOUNT_DISABLED
        | RISC_ACCOUNT_PURGED
        | RISC_CREDENTIAL_COMPROMISE
        | RISC_SESSIONS_REVOKED => Meaning::UserRevoked,
        VERIFICATION => Meaning::Verification,
        STREAM_UPDATED => Meaning::StreamUpdated,
        _ => Meaning::Other,
    }
}
