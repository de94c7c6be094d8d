//! The [`ValidateBearerLayer`], which wraps services in [`ValidateBearer`] and carries its
//! configuration: the verifier, optional mode, the readiness policy and the rejection policy.

use super::ValidateBearer;
use crate::binding::Binding;
use crate::readiness::Readiness;
use crate::rejection::DefaultRejection;
use crate::verifier::Verifier;
use std::sync::Arc;
use tower_layer::Layer;

/// Wraps a service so that it only sees requests with a valid, unrevoked bearer access token.
/// See the [module documentation](super) for what is checked, in order.
#[derive(Debug, Clone)]
pub struct ValidateBearerLayer<R = DefaultRejection> {
    verifier: Verifier,
    optional: bool,
    binding: Binding,
    // `None` is always ready, and costs the request path nothing.
    readiness: Option<Arc<dyn Readiness>>,
    on_rejection: R,
}

impl ValidateBearerLayer {
    /// A layer that requires a valid token on every request and answers per RFC 6750 otherwise.
    pub fn new(verifier: Verifier) -> Self {
        ValidateBearerLayer {
            verifier,
            optional: false,
            binding: Binding::AsIssued,
            readiness: None,
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

    /// Refuses every token that is not bound to the request's client certificate (401
    /// `invalid_token`, "token is not bound to a client certificate"), for APIs that accept
    /// sender-constrained tokens only.
    ///
    /// Without this call, unbound tokens are accepted and a token bound to a certificate
    /// (`cnf.x5t#S256`, RFC 8705 §3) only on a request that came with that certificate: see
    /// [`client_cert`](crate::client_cert) for where the certificate comes from.
    pub fn require_bound_tokens(mut self) -> Self {
        self.binding = Binding::Required;
        self
    }

    /// Refuses every request with [`Rejection::Unavailable`](crate::Rejection::Unavailable)
    /// (503 with `Retry-After: 1`, or gRPC `UNAVAILABLE`) while `readiness` says the revocation
    /// state cannot be trusted; see [`readiness`](crate::readiness).
    ///
    /// The check comes before the token is looked at, so requests without a token, and in
    /// [optional](Self::optional) mode anonymous requests too, get 503 while not ready: the
    /// layer fails closed, and its answer reveals nothing about the token it cannot judge.
    /// Without this call the layer is always ready. `poll_ready` is unaffected.
    pub fn readiness(mut self, readiness: Arc<dyn Readiness>) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// Shapes rejection responses with `on_rejection` instead of [`DefaultRejection`].
    pub fn on_rejection<R2>(self, on_rejection: R2) -> ValidateBearerLayer<R2> {
        ValidateBearerLayer {
            verifier: self.verifier,
            optional: self.optional,
            binding: self.binding,
            readiness: self.readiness,
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
            self.binding,
            self.readiness.clone(),
            self.on_rejection.clone(),
        )
    }
}
