//! An OAuth 2.0 token service whose JWT access tokens can be revoked: [`TokenService`], a tower
//! `Service` that serves `/connect/token` (password, client credentials, refresh with rotation),
//! `/connect/revocation`, `/connect/introspect`, `/connect/userinfo`, discovery and JWKS, plus the
//! Identity APIs' `/api/id/v1/auth/token/revoke` and admin
//! `/api/v2/identity/token/batch-revocation`.
//!
//! Every revocation is written to a durable [`Store`] and applied to a shared
//! [`RevocationIndex`](tollgate_core::RevocationIndex) before its `200`: give the same index and
//! [`KeySet`](tollgate_core::KeySet) to the `ValidateBearerLayer` of your app and a revoked token
//! is refused from the moment the revocation is answered.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tollgate_core::{KeySet, SigningAlgorithm};
//! use tollgate_issuer::{
//!     Client, ClientSecret, GrantType, MemoryStore, StaticDirectory, TokenService,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let directory = Arc::new(StaticDirectory::new(
//!     [Client::new("svc", ClientSecret::from_plaintext("svc-secret"))
//!         .with_grants([GrantType::ClientCredentials])
//!         .with_scopes(["orders:read"])],
//!     [],
//! )?);
//! let service = TokenService::builder()
//!     .issuer("https://id.example.com")
//!     .keys(KeySet::generate(SigningAlgorithm::EdDSA, "k1")?)
//!     .store(Arc::new(MemoryStore::new()))
//!     .clients(directory.clone())
//!     .users(directory)
//!     .build()
//!     .await?;
//! // `service` is a `tower::Service<http::Request<B>>`: serve it with hyper, or mount it in axum.
//! # let _ = service;
//! # Ok(())
//! # }
//! ```

mod auth;
mod digest;
mod directory;
mod endpoints;
mod issuer;
mod ledger;
pub mod outcome;
mod protocol;
mod secret;
mod service;
/// The store contract (`tollgate-store`): [`Store`], [`Outbox`], [`SharedStore`], the records,
/// [`MemoryStore`], and (feature `test-util`) the contract test kit `store::testing`. The
/// embedded durable store is `tollgate_sqlite::SqliteStore`.
pub use tollgate_store as store;

pub use auth::{InvalidSubjectDn, PeerAddr, SignInThrottle, SubjectDn, UnknownSignInThrottle};
pub use directory::{
    CertificateName, Client, ClientAuthentication, Clients, DirectoryError, DirectoryFuture,
    DuplicateEntry, GrantType, StaticDirectory, User, Users,
};
/// For `benches/live_memory.rs` only (feature `test-util`): not part of the API.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub use ledger::LiveTokensBench;
pub use protocol::response::ResponseBody;
pub use secret::{ClientSecret, InvalidHash, PasswordHash};
pub use service::{BuildError, LiveTokens, TokenService, TokenServiceBuilder, TokenServiceFuture};
pub use store::{
    MemoryStore, Outbox, OutboxEntry, OutboxPosition, OutboxStatus, SharedStore, Store, StoreError,
};
