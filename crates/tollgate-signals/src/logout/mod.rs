//! OpenID Connect Back-Channel Logout 1.0: the provider POSTs a signed logout token when a
//! session ends; the receiver validates it and publishes a cutoff of that issuer's tokens.
//!
//! What is checked, in order (§2.6 of the specification, plus what a validator at the edge
//! needs): a `POST` with an `application/x-www-form-urlencoded` body of at most 16 KiB holding one
//! `logout_token`; a compact JWS (encrypted logout tokens are not supported) with a known `alg`
//! and no `crit`, whose `typ`, when present, is `logout+jwt` or the generic `JWT`; an `iss` that
//! is a configured issuer, compared exactly; the signature by that issuer's keys and allowed
//! algorithms (an unknown `kid` makes a remote key set refetch once); `aud` naming the configured
//! client; `iat` within the freshness window (default 5 minutes, 30 s of clock skew); `exp`, when
//! present, not passed; a `jti`; an `events` object with the back-channel logout event; `sub` or
//! `sid`; no `nonce`; and a `jti` never accepted before from that issuer.
//!
//! What it revokes: with [`RevokeOnLogout::Session`] (the default) the tokens of that issuer
//! whose `sid` names the session, or, for a logout token without `sid` ("every session of this
//! user", §2.4), the subject's tokens of that issuer. Providers whose access tokens carry no `sid`
//! need [`RevokeOnLogout::Subject`]: a logout then revokes every token of the subject from that
//! issuer. The cutoff is the end of the second the logout token was issued in (its `iat` + 1 s),
//! on the provider's clock, the clock its access tokens' `iat` come from.
//!
//! Answers: `200` with `Cache-Control: no-store` once the cutoff is published; `400` with
//! `{"error": "invalid_request", "error_description": ...}` for anything invalid, and with
//! `"error": "temporarily_unavailable"` when the cutoff could not be published (or replays could
//! not be checked), in which case the `jti` is not spent and the provider may send it again (the
//! cutoff is applied wherever the publisher still can, such as the receiving process's own
//! index: it fails closed there);
//! `405` for another method; `413` for a larger body.

mod issuer;
mod response;
mod service;
mod token;

pub use issuer::{LogoutIssuer, RevokeOnLogout};
pub use service::{BackChannelLogout, BackChannelLogoutBuilder, BuildError};
pub use token::{LOGOUT_EVENT, LogoutToken, LogoutTokenError};
