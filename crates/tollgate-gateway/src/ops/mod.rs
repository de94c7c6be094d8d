//! Operations: `/healthz` (the process answers), `/readyz` (every issuer's keys loaded and the
//! revocation feed healthy under its policy) and `/metrics` ([`metrics`]), on a listener of their own so that
//! neither collides with an upstream's paths nor is reachable from where clients are.

pub mod metrics;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;
use tollgate_core::KeySet;
use tollgate_layer::Readiness;

/// Whether the gateway can judge tokens: keys loaded for every issuer, and the revocation feed
/// healthy under its policy (the same check the Layer makes on every request).
#[derive(Debug)]
pub(crate) struct GatewayReadiness {
    /// Each issuer's key set.
    pub(crate) keys: Vec<KeySet>,
    pub(crate) feed: Option<Arc<dyn Readiness>>,
}

impl GatewayReadiness {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        // One issuer without keys is one whose every token would be refused.
        if self.keys.iter().any(|keys| keys.kids().is_empty()) {
            return Err("no verification key loaded yet");
        }
        match &self.feed {
            Some(feed) => feed.check().map_err(|n| n.description()),
            None => Ok(()),
        }
    }
}

/// The answers of the ops listener.
#[derive(Debug, Clone)]
pub(crate) struct Ops {
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) readiness: Arc<GatewayReadiness>,
}

impl Ops {
    /// Answers one request of the ops listener.
    pub(crate) fn answer<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics.encode());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
