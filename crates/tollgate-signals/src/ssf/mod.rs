//! OpenID Shared Signals Framework 1.0: a receiver of one transmitter's Security Event Tokens
//! (SETs), pushed to it (RFC 8935) or polled by it (RFC 8936), that publishes a cutoff of that
//! issuer's tokens for every session revoked, credential changed or account disabled.
//!
//! # What is checked, in order
//!
//! For every SET, whichever way it came: a compact JWS of at most 16 KiB (encrypted SETs are not
//! supported) with a known `alg` and no `crit`; `typ` `secevent+jwt` (SSF 1.0 §4.1.1 requires
//! explicit typing; an untyped SET is refused, since the transmitter's keys often also sign ID
//! and access tokens); `iss` equal to the transmitter's issuer; the signature by the
//! transmitter's keys (from its `jwks_uri`, an unknown `kid` refetching once, or given keys);
//! `aud` naming the configured audience; `iat` no older than the freshness window (default
//! 24 hours, see [`SsfReceiverBuilder::max_age`]) and not in the future beyond the leeway (30 s);
//! `exp`, which SSF SETs should not carry, not passed; a `jti`; **exactly one** event in
//! `events`; for a revocation, a subject this receiver can match tokens with (below); and a
//! `jti` never accepted before from that transmitter (the [`ReplayGuard`](crate::ReplayGuard)).
//!
//! # Subjects
//!
//! The subject is the top-level `sub_id` (SSF 1.0 §3), or, from transmitters before it, the
//! event's `subject`. Tokens are matched by `sub` and `sid`, so a subject is one of: `iss_sub`
//! (a user of that issuer), `opaque` (a user, `sub`, of the first token issuer), or `complex`
//! with a `user` (either of those) and/or a `session` (`opaque`, its `id` the `sid`). Other
//! members of a complex subject (`tenant`, `device`, ...) are ignored, which revokes more rather
//! than less, unless the transmitter declared them critical. Every other format (`email`,
//! `phone_number`, `account`, `did`, `uri`, `aliases`, ...) is refused: "subject format email is
//! not supported: tokens are matched by sub". An `iss_sub` naming an issuer that is not among the
//! receiver's token issuers ([`SsfReceiverBuilder::token_issuers`], default the transmitter's
//! own) is refused (`access_denied`): a transmitter never revokes another provider's users.
//!
//! # What is revoked
//!
//! Every event becomes [`RevocationEvent::IssuerCutoff`](tollgate_core::RevocationEvent) for the
//! subject's issuer, at the end of the second of the event's `event_timestamp` (or, without one,
//! of the SET's `iat`), on the transmitter's clock:
//!
//! | event | cutoff |
//! |---|---|
//! | CAEP `session-revoked` with a session | that session's tokens (`sid`) |
//! | CAEP `session-revoked` with a user only | the user's tokens (`sub`) |
//! | CAEP `session-revoked` with a simple `opaque` id | both: the id as a `sid` and as a `sub` (CAEP's own example uses it for a session, most transmitters for a user) |
//! | CAEP `credential-change`; RISC `account-disabled`, `account-purged`, `credential-compromise`, `sessions-revoked` | the user's tokens |
//! | SSF `verification` | none: the stream is verified when its `state` is the one the receiver asked for (another state is refused, `invalid_state`) |
//! | SSF `stream-updated` | none: the stream's status, which readiness reports |
//! | any other type | none: acknowledged and counted as ignored |
//!
//! # Delivery and acknowledgement
//!
//! A SET is acknowledged only once its cutoff is published. Push ([`SsfPush`]): `202`; `400`
//! with RFC 8935's `{"err", "description"}` for an invalid SET; `401` when the configured
//! `Authorization` value is missing or wrong; `503` with `Retry-After` when the cutoff could not
//! be published (the `jti` is given back, so the transmitter's retry is accepted). Poll (started
//! by [`SsfReceiver::start`]): the SET's `jti` goes in the next poll's `ack`; an invalid SET's in
//! `setErrs`; one whose cutoff could not be published in neither, so the transmitter delivers it
//! again, and the receiver backs off before polling again. Polls ask `returnImmediately` (no
//! request waits at the transmitter past its timeout): at once again while SETs arrive, every
//! poll interval (default 5 s) when none did.
//!
//! # The stream
//!
//! [`SsfReceiver::start`] reads `{issuer}/.well-known/ssf-configuration` (its `issuer` must be
//! the configured one, and its `delivery_methods_supported`, when listed, the receiver's),
//! fetches the transmitter's `jwks_uri`, finds this receiver's stream (same issuer, audience and delivery) at
//! the `configuration_endpoint` or creates it (asking for the event types above), asks the
//! `verification_endpoint` for a verification event with a random `state` (again after a while
//! until it arrives), and then polls, or, for push delivery, reads the stream's status. Failures
//! are retried with a backoff (1 s doubling to 60 s by default); a stream the transmitter no
//! longer has is set up again. Streams configured by hand at a transmitter without a
//! configuration endpoint are not supported.
//!
//! Requests to the transmitter's API carry a bearer token: a fixed one
//! ([`SsfReceiverBuilder::bearer_token`]), or access tokens of the OAuth 2.0 client credentials
//! grant ([`SsfReceiverBuilder::client_credentials`]), renewed before they expire and at once
//! after a `401` (which retries that request once).
//!
//! # Health
//!
//! [`SsfReceiver::status`] reports the stream, whether it is verified, its status, the last poll,
//! push and contact, and the last error. [`SsfReceiver::ready`] is true when a stream is set up,
//! verified (when the transmitter offers verification), not paused or disabled, and the
//! transmitter answered within the longest silence allowed (default three poll or status
//! intervals plus the request timeout). Counters are in [`SsfReceiver::stats`], refusals by
//! reason in [`SignalStats::refused_by_reason`](crate::SignalStats::refused_by_reason).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tollgate_core::RevocationIndex;
//! use tollgate_signals::{MemoryReplayGuard, SsfReceiver};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let index = Arc::new(RevocationIndex::new());
//! let receiver = SsfReceiver::builder("https://ssf.id.example.com", "https://api.example.com")
//!     .bearer_token("token-for-the-transmitter's-management-api")
//!     // The SETs may revoke tokens of these issuers (default: the transmitter's own).
//!     .token_issuers(["https://id.example.com"])
//!     // Pushed to this URL, with this Authorization header; without `push`, it polls.
//!     .push(
//!         "https://api.example.com/ssf/events",
//!         Some("Bearer secret-the-transmitter-sends".to_owned()),
//!     )
//!     .publisher(index.clone())
//!     .replay_guard(MemoryReplayGuard::new())
//!     .build()?;
//! // Mount the push endpoint at /ssf/events, e.g. with axum:
//! // Router::new().route_service("/ssf/events", receiver.push_service())
//! let push = receiver.push_service();
//! // Set the stream up and keep it followed until `task` is dropped; `/readyz` asks `ready()`.
//! let task = receiver.start()?;
//! assert!(!receiver.ready(), "not before the stream is set up and verified");
//! # drop((push, task));
//! # Ok(())
//! # }
//! ```

mod builder;
mod client;
mod error;
pub mod event_types;
mod poll;
mod push;
mod receiver;
mod set;
mod status;
mod subject;
mod task;
mod token;
mod transmitter;

pub use builder::{SsfError, SsfReceiverBuilder};
pub use error::SetError;
pub use push::SsfPush;
pub use receiver::SsfReceiver;
pub use status::{SsfStatus, StreamState};
pub use task::SsfTask;
pub use token::ClientAuthentication;
