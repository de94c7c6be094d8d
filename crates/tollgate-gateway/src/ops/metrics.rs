//! The gateway's Prometheus metrics (prometheus-client, OpenMetrics text).
//!
//! Counted on the request path (each a pre-made handle, so counting is an atomic add):
//!
//! * `tollgate_gateway_requests_total{route, outcome}`
//! * `tollgate_gateway_request_duration_seconds{route}`: until the response head
//! * `tollgate_gateway_rejections_total{reason}`
//! * `tollgate_gateway_upstream_errors_total{upstream, kind}`
//!
//! Read at each scrape from their owners (the index, the feed, the JWKS fetcher):
//!
//! * `tollgate_gateway_revocation_index_{tokens,grants,cutoffs}`
//! * `tollgate_gateway_feed_synced`, `_feed_connected`, `_feed_lag_seconds`,
//!   `_feed_seconds_since_contact`, `_feed_events_applied_total`
//! * `tollgate_gateway_jwks_fetches_total`, `_jwks_fetch_failures_total`
//! * `tollgate_gateway_logout_total{outcome}`
//! * `tollgate_gateway_shared_signals_total{transmitter, outcome}`,
//!   `_shared_signals_refused_total{transmitter, reason}`, `_shared_signals_ready{transmitter}`
//! * `tollgate_gateway_ready`

use crate::shared_signals::SharedSignals;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::RevocationIndex;
use tollgate_layer::RemoteJwks;
use tollgate_program::metrics::{counter, counters, gauge, shared_signals};
use tollgate_redis::Feed;
use tollgate_signals::SignalStats;

/// What became of a request: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Proxied; the upstream answered (whatever its status).
    Forwarded,
    /// Forward-auth answered 200.
    Allowed,
    /// The Layer refused the token (400, 401) or was not ready (503).
    Rejected,
    /// A verified token without the route's scopes, roles or tenant (403).
    Forbidden,
    /// No route (403), or a path that cannot be routed safely (400).
    NoRoute,
    /// The client's rate cap (429).
    RateLimited,
    /// The upstream was unreachable (502) or slow (504).
    UpstreamError,
    /// The client's request was malformed past what routing sees (its body): 400.
    ClientError,
    /// A back-channel logout, answered by the receiver (its own counters say how).
    Logout,
    /// A pushed security event, answered by its Shared Signals receiver (its own counters say
    /// how).
    SharedSignals,
}

const OUTCOMES: [Outcome; 10] = [
    Outcome::Forwarded,
    Outcome::Allowed,
    Outcome::Rejected,
    Outcome::Forbidden,
    Outcome::NoRoute,
    Outcome::RateLimited,
    Outcome::UpstreamError,
    Outcome::ClientError,
    Outcome::Logout,
    Outcome::SharedSignals,
];

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Allowed => "allowed",
            Outcome::Rejected => "rejected",
            Outcome::Forbidden => "forbidden",
            Outcome::NoRoute => "no_route",
            Outcome::RateLimited => "rate_limited",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientError => "client_error",
            Outcome::Logout => "logout",
            Outcome::SharedSignals => "shared_signals",
        }
    }

    fn index(self) -> usize {
        OUTCOMES.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Every `reason` label of `tollgate_gateway_rejections_total`.
pub(crate) const REASONS: [&str; 17] = [
    "missing_token",
    "invalid_request",
    "invalid_token",
    "revoked",
    "not_ready",
    "insufficient_scope",
    "missing_role",
    "wrong_tenant",
    "no_route",
    "bad_path",
    "bad_method",
    "bad_host",
    "bad_method_override",
    "bad_request_body",
    "request_body_timeout",
    "rate_limited",
    "unforwardable_claims",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    kind: String,
}

/// One route's handles (the last one is for requests no route matched).
#[derive(Debug)]
struct RouteMetrics {
    requests: Vec<Counter>,
    latency: Histogram,
}

/// The registry and the handles the request path counts with.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    routes: Vec<RouteMetrics>,
    reasons: Vec<Counter>,
    /// Per upstream: unreachable, timeout.
    upstream_errors: Vec<[Counter; 2]>,
}

/// What the scrape-time collector reads.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) index: Arc<RevocationIndex>,
    pub(crate) feed: Option<Feed>,
    /// The remote JWKS of every issuer whose keys come from one.
    pub(crate) jwks: Vec<RemoteJwks>,
    pub(crate) ready: Arc<super::GatewayReadiness>,
    /// The back-channel logout receiver's counters, if it is configured.
    pub(crate) logout: Option<SignalStats>,
    /// The Shared Signals receivers (none without `[[shared_signals]]`).
    pub(crate) shared_signals: SharedSignals,
    /// The listener's TLS, with `[tls]`.
    pub(crate) tls: Option<tollgate_program::tls::TlsAcceptor>,
}

impl Metrics {
    /// Registers every metric, with a handle per route (labelled by prefix) and per upstream.
    pub(crate) fn new(route_labels: &[String], upstreams: &[String], sources: Sources) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            // 100 µs to ~26 s.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 19,
            ))
        });
        let rejections = Family::<ReasonLabel, Counter>::default();
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "tollgate_gateway_requests",
            "Requests by route (its prefix, or `none`) and outcome",
            requests.clone(),
        );
        registry.register(
            "tollgate_gateway_request_duration_seconds",
            "Time from the request to its response head, by route",
            latency.clone(),
        );
        registry.register(
            "tollgate_gateway_rejections",
            "Requests refused, by reason",
            rejections.clone(),
        );
        registry.register(
            "tollgate_gateway_upstream_errors",
            "Upstream failures, by upstream and kind (unreachable: 502, timeout: 504)",
            upstream_errors.clone(),
        );
        registry.register_collector(Box::new(ScrapeCollector(sources)));
        let routes = route_labels
            .iter()
            .map(String::as_str)
            .chain(["none"])
            .map(|route| RouteMetrics {
                requests: OUTCOMES
                    .iter()
                    .map(|o| {
                        requests.get_or_create_owned(&RequestLabels {
                            route: route.to_owned(),
                            outcome: o.label().to_owned(),
                        })
                    })
                    .collect(),
                latency: latency.get_or_create_owned(&RouteLabel {
                    route: route.to_owned(),
                }),
            })
            .collect();
        let reasons = REASONS
            .iter()
            .map(|r| {
                rejections.get_or_create_owned(&ReasonLabel {
                    reason: (*r).to_owned(),
                })
            })
            .collect();
        let upstream_errors = upstreams
            .iter()
            .map(|u| {
                ["unreachable", "timeout"].map(|kind| {
                    upstream_errors.get_or_create_owned(&UpstreamLabels {
                        upstream: u.clone(),
                        kind: kind.to_owned(),
                    })
                })
            })
            .collect();
        Metrics {
            registry,
            routes,
            reasons,
            upstream_errors,
        }
    }

    /// Counts a request of route `route` (`None`: no route) and the time to its response head.
    pub(crate) fn request(&self, route: Option<usize>, outcome: Outcome, elapsed: Duration) {
        let last = self.routes.len() - 1;
        let Some(m) = self.routes.get(route.unwrap_or(last)) else {
            return;
        };
        if let Some(c) = m.requests.get(outcome.index()) {
            c.inc();
        }
        m.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts a refusal; `reason` is one of [`REASONS`].
    pub(crate) fn rejection(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.reasons[i].inc();
        }
    }

    /// Counts an upstream failure.
    pub(crate) fn upstream_error(&self, upstream: usize, error: crate::proxy::UpstreamError) {
        if let Some(counters) = self.upstream_errors.get(upstream) {
            let i = usize::from(error == crate::proxy::UpstreamError::Slow);
            counters[i].inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Reads the values other components own at each scrape.
#[derive(Debug)]
struct ScrapeCollector(Sources);

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.0;
        let stats = s.index.stats();
        let e = &mut encoder;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            e,
            "tollgate_gateway_revocation_index_tokens",
            "Revoked token ids in the index",
            None,
            count(stats.tokens),
        )?;
        gauge(
            e,
            "tollgate_gateway_revocation_index_grants",
            "Revoked grants in the index",
            None,
            count(stats.grants),
        )?;
        gauge(
            e,
            "tollgate_gateway_revocation_index_cutoffs",
            "Revocation cutoffs in the index",
            None,
            count(stats.cutoffs),
        )?;
        gauge(
            e,
            "tollgate_gateway_ready",
            "1 when keys are loaded and the revocation feed is healthy",
            None,
            i64::from(s.ready.check().is_ok()),
        )?;
        if let Some(feed) = &s.feed {
            let status = feed.status();
            gauge(
                e,
                "tollgate_gateway_feed_synced",
                "1 once the revocation feed's first sync is done",
                None,
                i64::from(status.synced),
            )?;
            gauge(
                e,
                "tollgate_gateway_feed_connected",
                "1 while the last exchange with Redis succeeded",
                None,
                i64::from(status.connected),
            )?;
            gauge(
                e,
                "tollgate_gateway_feed_lag_seconds",
                "For the last revocation applied: applied minus published",
                None,
                status.lag.map_or(0.0, |d| d.as_secs_f64()),
            )?;
            gauge(
                e,
                "tollgate_gateway_feed_seconds_since_contact",
                "Seconds since Redis last answered (-1: never)",
                None,
                status.since_contact.map_or(-1.0, |d| d.as_secs_f64()),
            )?;
            counter(
                e,
                "tollgate_gateway_feed_events_applied",
                "Revocation events applied from the stream",
                status.applied,
            )?;
        }
        if let Some(logout) = &s.logout {
            let seen = logout.snapshot();
            counters(
                e,
                "tollgate_gateway_logout",
                "Back-channel logouts, by outcome (applied: published; replayed, invalid: \
                 refused; unavailable: Redis did not take it, the provider may retry)",
                "outcome",
                &[
                    ("applied", seen.applied),
                    ("replayed", seen.replayed),
                    ("invalid", seen.invalid),
                    ("unavailable", seen.unavailable),
                ],
            )?;
        }
        let receivers = s.shared_signals.each();
        if !receivers.is_empty() {
            shared_signals(e, "tollgate_gateway", &receivers)?;
        }
        if let Some(tls) = &s.tls {
            tollgate_program::metrics::tls(e, "tollgate_gateway", tls.stats())?;
        }
        if !s.jwks.is_empty() {
            let (succeeded, failed) = s.jwks.iter().fold((0, 0), |(ok, failed), jwks| {
                let counts = jwks.fetch_counts();
                (ok + counts.succeeded, failed + counts.failed)
            });
            counter(
                e,
                "tollgate_gateway_jwks_fetches",
                "JWKS fetches that installed keys (every issuer's)",
                succeeded,
            )?;
            counter(
                e,
                "tollgate_gateway_jwks_fetch_failures",
                "JWKS fetches that failed, keys kept (every issuer's)",
                failed,
            )?;
        }
        Ok(())
    }
}
