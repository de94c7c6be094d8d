//! The [`ValidateBearerLayer`], which wraps services in [`ValidateBearer`] and carries its
//! configuration: the verifier, optional mode and the rejection policy.

use super::ValidateBearer;
use crate::rejection::DefaultRejection;
use crate::verifier::Verifier;
use tower_layer::Layer;

/// Wraps a service so that it only sees requests with a valid, unrevoked bearer access token.
/// See the [module documentation](super) for what is checked, in order.
#[derive(Debug, Clone)]
pub struct ValidateBearerLayer<R = DefaultRejection> {
    verifier: Verifier,
    optional: bool,
    on_rejection: R,
}

impl ValidateBearerLayer {
    /// A layer that requires a valid token on every request and answers per RFC 6750 otherwise.
    pub fn new(verifier: Verifier) -> Self {
        ValidateBearerLayer {
            verifier,
            optional: false,
            on_rejection: DefaultRejection::default(),
        }
    }
}

impl<R> ValidateBearerLayer<R> {
    /// Lets requests without an `Authorization` header through, with no claims in their
    /// extensions. A request that does present a token is still rejected if the token is bad.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Shapes rejection responses with `on_rejection` instead of [`DefaultRejection`].
    pub fn on_rejection<R2>(self, on_rejection: R2) -> ValidateBearerLayer<R2> {
        ValidateBearerLayer {
            verifier: self.verifier,
            optional: self.optional,
            on_rejection,
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

impl<S, R: Clone> Layer<S> for ValidateBearerLayer<R> {
    type Service = ValidateBearer<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ValidateBearer::new(
            inner,
            self.verifier.clone(),
            self.optional,
            self.on_rejection.clone(),
        )
    }
}
