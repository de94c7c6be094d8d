//! The [`RequireScopeLayer`], which wraps services in [`RequireScope`] and carries the required
//! scopes and the rejection policy.

use super::RequireScope;
use crate::rejection::DefaultRejection;
use std::sync::Arc;
use tower_layer::Layer;

/// Requires every listed scope in the request's [`VerifiedClaims`](crate::VerifiedClaims); place
/// it inside a [`ValidateBearerLayer`](crate::validate_bearer::ValidateBearerLayer).
///
/// A request without claims (no token, in optional mode) gets 401; one whose token lacks a scope
/// gets 403 `insufficient_scope` with the required scopes (gRPC: status 7).
#[derive(Debug, Clone)]
pub struct RequireScopeLayer<R = DefaultRejection> {
    scopes: Arc<[Box<str>]>,
    joined: Arc<str>,
    on_rejection: R,
}

impl RequireScopeLayer {
    /// Requires every space-separated scope in `scopes`.
    pub fn new(scopes: &str) -> Self {
        let scopes: Arc<[Box<str>]> = scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Box::from)
            .collect();
        let joined = scopes.join(" ").into();
        RequireScopeLayer {
            scopes,
            joined,
            on_rejection: DefaultRejection::default(),
        }
    }
}

impl<R> RequireScopeLayer<R> {
    /// Shapes rejection responses with `on_rejection`.
    pub fn on_rejection<R2>(self, on_rejection: R2) -> RequireScopeLayer<R2> {
        RequireScopeLayer {
            scopes: self.scopes,
            joined: self.joined,
            on_rejection,
        }
    }
}

impl<S, R: Clone> Layer<S> for RequireScopeLayer<R> {
    type Service = RequireScope<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope::new(
            inner,
            self.scopes.clone(),
            self.joined.clone(),
            self.on_rejection.clone(),
        )
    }
}
