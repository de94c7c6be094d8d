//! The verified claims a request carries in its extensions once the Layer accepted it.

use std::ops::Deref;
use std::sync::Arc;
use tollgate_core::Claims;

/// The claims of the request's verified access token, found in the request's extensions.
///
/// Cheap to clone (an `Arc`). Only [`ValidateBearer`](crate::ValidateBearer) inserts it; the Layer
/// removes any value a request carried in before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedClaims(Arc<Claims>);

impl VerifiedClaims {
    pub(crate) fn new(claims: Claims) -> Self {
        VerifiedClaims(Arc::new(claims))
    }

    /// The shared claims.
    pub fn into_inner(self) -> Arc<Claims> {
        self.0
    }
}

impl Deref for VerifiedClaims {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.0
    }
}
