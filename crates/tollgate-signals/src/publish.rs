//! Where a receiver's events go before it answers: the [`Publish`] trait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tollgate_core::{RevocationEvent, RevocationIndex};

/// A boxed future, as the receivers' traits return them (they are called once per signal, not
/// per request, so a box costs nothing that matters and keeps the traits object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes revocation events take effect: what a receiver waits for before it tells the provider
/// the signal was handled.
///
/// `publish` returns `Ok` only once the events are **durable and on their way to every
/// validator** the deployment has: for one process, applied to its index (the
/// `Arc<RevocationIndex>` implementation); with Redis, appended to the stream every follower
/// reads ([`crate::redis::RedisPublisher`]); in `tollgate serve`, committed to its store's outbox.
/// An `Err` makes the receiver answer that the signal failed, so that the provider may send it
/// again.
pub trait Publish: Send + Sync + 'static {
    /// Publishes `events`, all or none as far as the caller can tell (a partial failure is an
    /// error; publishing again is harmless, since applying events is idempotent).
    fn publish<'a>(
        &'a self,
        events: &'a [RevocationEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>>;
}

/// The events take effect in this process only: for an app whose validators all share this
/// index and that runs as a single process.
impl Publish for Arc<RevocationIndex> {
    fn publish<'a>(
        &'a self,
        events: &'a [RevocationEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            for event in events {
                if !event.is_valid() {
                    return Err(PublishError::new(format!(
                        "the index cannot apply the event {event:?}"
                    )));
                }
                self.apply(event);
            }
            Ok(())
        })
    }
}

/// Why events could not be published. The message names what failed and never carries a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError(String);

impl PublishError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PublishError(message.into())
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PublishError {}
