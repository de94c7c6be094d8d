//! Operations: `/healthz` (the process answers), `/readyz` (every issuer's keys loaded, the
//! revocation feed healthy under its policy, every Shared Signals receiver ready) and `/metrics`
//! ([`metrics`]), on a listener of their own so that neither collides with an upstream's paths
//! nor is reachable from where clients are.

pub mod metrics;

use crate::shared_signals::SharedSignals;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::borrow::Cow;
use std::sync::Arc;
use tollgate_core::KeySet;
use tollgate_layer::Readiness;

/// Whether the gateway can judge tokens: keys loaded for every issuer, the revocation feed
/// healthy under its policy (the same check the Layer makes on every request), and every Shared
/// Signals receiver hearing from its transmitter.
#[derive(Debug)]
pub(crate) struct GatewayReadiness {
    /// Each issuer's key set.
    pub(crate) keys: Vec<KeySet>,
    pub(crate) feed: Option<Arc<dyn Readiness>>,
    /// Not ready while one cannot reach its transmitter: the revocations it would deliver are
    /// missed meanwhile. (Only `/readyz` and the metrics say so: protected requests are still
    /// judged, by an index that holds every revocation delivered before the outage.)
    pub(crate) shared_signals: SharedSignals,
}

impl GatewayReadiness {
    pub(crate) fn check(&self) -> Result<(), Cow<'static, str>> {
        // One issuer without keys is one whose every token would be refused.
        if self.keys.iter().any(|keys| keys.kids().is_empty()) {
            return Err("no verification key loaded yet".into());
        }
        if let Some(feed) = &self.feed {
            feed.check().map_err(|n| n.description())?;
        }
        self.shared_signals.check().map_err(Cow::Owned)
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
