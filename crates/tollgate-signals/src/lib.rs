//! Revocations from the identity providers teams already run.
//!
//! tollgate validates the access tokens of Keycloak, Auth0, Okta, Entra or node-oidc-provider
//! through their JWKS, but a revocation index that only learns what tollgate itself revoked stays
//! empty for most users. Those providers already announce when a session ends: this crate turns
//! what they send into [`RevocationEvent`](tollgate_core::RevocationEvent)s that every validator
//! applies.
//!
//! * [`BackChannelLogout`]: a tower `Service` that receives OpenID Connect Back-Channel Logout 1.0
//!   logout tokens, validates them as the specification requires, and publishes a cutoff of that
//!   issuer's tokens for the ended session (or subject) before it answers `200`.
//! * [`SsfReceiver`]: an OpenID Shared Signals Framework 1.0 receiver of one transmitter's
//!   security event tokens, pushed (RFC 8935, the tower `Service` [`SsfPush`]) or polled
//!   (RFC 8936): it sets its stream up and verifies it, validates each SET, and publishes a
//!   cutoff of that issuer's tokens for CAEP `session-revoked` and `credential-change` and RISC
//!   account events before it acknowledges them; its health feeds `/readyz` ([`SsfReceiver::ready`]).
//!
//! Receivers are translators at the edge: they hold no state beyond replay protection
//! ([`ReplayGuard`]) and answer only once the event is [published](Publish): to the process's own
//! index ([`Arc<RevocationIndex>`](tollgate_core::RevocationIndex)), or, with the `redis`
//! feature, to the Redis stream every follower reads ([`redis::RedisPublisher`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tollgate_core::{KeySet, RevocationIndex};
//! use tollgate_signals::{BackChannelLogout, LogoutIssuer, MemoryReplayGuard};
//!
//! # fn keys_of_the_provider() -> KeySet { KeySet::new() }
//! let index = Arc::new(RevocationIndex::new());
//! let logout = BackChannelLogout::builder()
//!     // Logout tokens of this provider, addressed to this client (their `aud`).
//!     .issuer(LogoutIssuer::new("https://id.example.com", "orders-api", keys_of_the_provider()))
//!     .publisher(index.clone())
//!     .replay_guard(MemoryReplayGuard::new())
//!     .build()
//!     .expect("an issuer and a publisher");
//! // Mount `logout` at the URI registered at the provider, e.g. with axum:
//! // Router::new().route_service("/backchannel-logout", logout)
//! # let _ = logout;
//! ```
//!
//! # Cargo features
//!
//! * `rustls` (default): `https` transmitters for [`SsfReceiver`].
//! * `redis`: [`redis::RedisPublisher`] and [`redis::RedisReplayGuard`].
//! * `test-util`: `testing::Transmitter`, a Shared Signals transmitter for tests (not a stable
//!   API).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod http;
mod logout;
mod publish;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod replay;
pub mod ssf;
mod stats;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use logout::{
    BackChannelLogout, BackChannelLogoutBuilder, BuildError, LOGOUT_EVENT, LogoutIssuer,
    LogoutToken, LogoutTokenError, RevokeOnLogout,
};
pub use publish::{BoxFuture, Publish, PublishError};
pub use replay::{MemoryReplayGuard, ReplayError, ReplayGuard};
pub use ssf::{
    ClientAuthentication, SetError, SsfError, SsfPush, SsfReceiver, SsfReceiverBuilder, SsfStatus,
    SsfTask, StreamState,
};
pub use stats::{SignalStats, SignalStatsSnapshot};
