//! What every store operation answers: a future of a result, and the error that carries context.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: the store traits are object-safe so the issuer holds a
/// `Arc<dyn Store>` chosen at run time.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why the store could not do what was asked. The message is for logs (it may name files); the
/// issuer answers clients with a generic `503`.
#[derive(Debug)]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// An error with this context.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}
