//! Whether the revocation state behind a [`ValidateBearer`](crate::ValidateBearer) can be trusted
//! right now: the policy that lets a layer refuse requests while its revocation feed is unhealthy.
//!
//! A validator whose [`RevocationIndex`](tollgate_core::RevocationIndex) follows events published
//! by another process (a Redis stream, say) may be behind: before its first sync it has seen no
//! revocation at all, and after losing contact with the feed it misses every revocation made
//! since. Accepting tokens then means accepting tokens that may have been revoked. Whether to
//! serve anyway or to fail closed is the operator's choice; a [`Readiness`] given to
//! [`ValidateBearerLayer::readiness`](crate::ValidateBearerLayer::readiness) states it.
//!
//! While [`Readiness::check`] answers [`NotReady`], every request is refused with
//! [`Rejection::Unavailable`](crate::Rejection::Unavailable): HTTP 503 with `Retry-After: 1`, or
//! gRPC status 14 (`UNAVAILABLE`). The check comes before the token is looked at, so a request
//! without a token gets 503 too: the layer fails closed, and its answer says nothing about the
//! token while it cannot judge it.
//!
//! This is not tower's readiness: [`poll_ready`](tower_service::Service::poll_ready) still only
//! reports the inner service's capacity. A layer that cannot trust its revocation state answers
//! each request at once rather than holding back every caller, so clients and load balancers
//! see a 503 they can act on.
//!
//! The check runs on every request: implementations should read an atomic or two, never lock,
//! allocate or wait. [`AlwaysReady`] is the default, and any `Fn() -> Result<(), NotReady>` is
//! a `Readiness`.
//!
//! # Example
//!
//! A feed that sets a flag once its first sync is done:
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm};
//! use tollgate_layer::readiness::NotReady;
//! use tollgate_layer::{ValidateBearerLayer, Verifier};
//! use tower::{Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder()
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .keys(KeySet::generate(SigningAlgorithm::EdDSA, "k1")?)
//!     .revocation_index(Arc::new(RevocationIndex::new()))
//!     .build()?;
//!
//! let synced = Arc::new(AtomicBool::new(false));
//! let feed = synced.clone();
//! let layer = ValidateBearerLayer::new(verifier).readiness(Arc::new(move || {
//!     if feed.load(Ordering::Acquire) { Ok(()) } else { Err(NotReady::NotSynced) }
//! }));
//! let mut service = tower::ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     });
//!
//! // Before the first sync: 503, whatever the request carries.
//! let response = service.ready().await?.call(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()["retry-after"], "1");
//!
//! // Synced: the token is judged as usual (here there is none: 401).
//! synced.store(true, Ordering::Release);
//! let response = service.ready().await?.call(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

use std::fmt;

/// Whether the validator's revocation state can be trusted right now.
///
/// See the [module documentation](self). Implemented by [`AlwaysReady`] and by any
/// `Fn() -> Result<(), NotReady>` that is `Send + Sync + 'static`; a layer takes it as an
/// `Arc<dyn Readiness>`, so an `Arc` of a feed follower that implements it can be shared as is.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` to validate normally; `Err(NotReady)` to refuse every request with 503 /
    /// `UNAVAILABLE`.
    ///
    /// Called once per request, before the token is looked at: keep it to a few atomic loads.
    fn check(&self) -> Result<(), NotReady>;
}

impl<F> Readiness for F
where
    F: Fn() -> Result<(), NotReady> + Send + Sync + 'static,
{
    fn check(&self) -> Result<(), NotReady> {
        self()
    }
}

// Closures are not `Debug`; the layer and service that hold a readiness still are.
impl fmt::Debug for dyn Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Readiness")
    }
}

/// The default: revocation state is always trusted, as it is when the index is fed in-process.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn check(&self) -> Result<(), NotReady> {
        Ok(())
    }
}

/// Why the revocation state cannot be trusted right now.
///
/// Non-exhaustive: a feed may come to report other reasons, so a `match` needs a wildcard arm;
/// [`description`](Self::description) answers for every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotReady {
    /// The revocation feed has not completed its first sync: the index may lack any revocation.
    NotSynced,
    /// Out of contact with the revocation feed for longer than the configured bound: the index
    /// may lack every revocation made since.
    Stale,
    /// The revocation feed refuses what its source holds (a snapshot it cannot read, or one that
    /// the event log contradicts), so it is not following: the index may lack revocations until
    /// the source is consistent again. The feed's own status says exactly why.
    Inconsistent,
}

impl NotReady {
    /// A short description safe to show the client (it goes out as the `grpc-message`).
    pub fn description(self) -> &'static str {
        match self {
            NotReady::NotSynced => "revocation state not yet synchronised",
            NotReady::Stale => "revocation state is stale",
            NotReady::Inconsistent => "revocation state source is inconsistent",
        }
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for NotReady {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn closures_arcs_and_the_default_are_readiness_policies() {
        let always: Arc<dyn Readiness> = Arc::new(AlwaysReady);
        assert_eq!(always.check(), Ok(()));
        let stale: Arc<dyn Readiness> = Arc::new(|| Err(NotReady::Stale));
        assert_eq!(stale.check(), Err(NotReady::Stale));
        assert_eq!(format!("{stale:?}"), "dyn Readiness");
        assert_eq!(
            NotReady::NotSynced.to_string(),
            "revocation state not yet synchronised"
        );
    }
}
