//! Revocations between processes, through Redis: every validator in every process enforces
//! every revocation, within milliseconds, and misses none.
//!
//! ```text
//! token service ── ledger ── store: revocations with a sequence (the outbox)
//!                                     │
//!                                     └─ Relay ──XADD──▶ Redis stream ◀──XADD── `tollgate revoke`
//!                                                            │      + snapshot (state, stream id)
//!                    Follower (Layer in an app, gateway, token service) ◀─┘
//!                    loads the snapshot, XREADs from its id, resumes from its last id
//! ```
//!
//! - `Relay` (feature `relay`) publishes what the token service's store committed (its
//!   [outbox](https://docs.rs/tollgate-store)), in order, and marks it published; what was
//!   committed while Redis was down, or before a crash, is published later. A `200` never waits
//!   for Redis: the store is the source of truth.
//!
//! A follower depends on `tollgate-core` and `tollgate-layer` only: the relay, and with it the
//! store contract, is compiled only with the `relay` feature (`tollgate serve` enables it).
//! - [`Follower`] keeps a [`RevocationIndex`](tollgate_core::RevocationIndex) in step with the
//!   stream, and can write the [snapshot](wire) that lets the stream be trimmed.
//! - [`Feed::health`] turns the follower's state into the Layer's
//!   [`Readiness`](tollgate_layer::Readiness), under the operator's [`HealthPolicy`].
//! - [`OnUnreadable`] says what a follower does with an entry it cannot read (a newer
//!   producer's): stop there, not ready (the default), or skip it.
//! - [`publish`] puts events straight into the stream (`tollgate revoke`).
//!
//! The format is versioned and documented in [`wire`] so that other languages can produce and
//! consume it.
//!
//! # Example: a Layer that follows a remote token service
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tollgate_core::RevocationIndex;
//! use tollgate_layer::{ValidateBearerLayer, Verifier};
//! use tollgate_redis::{Follower, HealthPolicy, RedisTarget};
//!
//! let index = Arc::new(RevocationIndex::new());
//! let feed = Follower::new(RedisTarget::new("redis://127.0.0.1:6379/")?, index.clone())
//!     .start()
//!     .await?;
//! # let keys = tollgate_core::KeySet::new();
//! let verifier = Verifier::builder()
//!     .keys(keys)
//!     .issuer("https://id.example.com")
//!     .audience("api")
//!     .revocation_index(index)
//!     .build()?;
//! let layer = ValidateBearerLayer::new(verifier)
//!     .readiness(Arc::new(feed.health(HealthPolicy::default())));
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```

mod connect;
mod follower;
// Hidden as well as gated: the decoders stay crate-private for everyone else, and the fuzz
// target still runs exactly the code a follower runs.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "relay")]
mod relay;
mod snapshot;
mod stream;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
pub mod wire;

pub use connect::{ConnectError, RedisTarget, ReplicaAcks};
pub use follower::{
    DEFAULT_MAX_SILENCE, Feed, FeedHealth, FeedStatus, Follower, HealthPolicy, OnUnreadable,
    UnknownPolicy,
};
#[cfg(feature = "relay")]
#[cfg_attr(docsrs, doc(cfg(feature = "relay")))]
pub use relay::{Relay, RelayHandle, RelayStatus, STAND_BY_CHECK};
pub use stream::{PublishError, publish, publish_acked, wait_for_replicas};
