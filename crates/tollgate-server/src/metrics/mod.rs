//! `[metrics]`: what `tollgate serve` exposes to Prometheus, on a listener of its own.
//!
//! Everything is measured from outside the token service, so that the issuer's request path is
//! the same with metrics on or off:
//!
//! - [`CountResponses`](responses::CountResponses) wraps the service and counts its responses by endpoint (the routing
//!   table's path) and status, and reads what a response did from its extensions
//!   ([`tollgate_issuer::outcome`]): the grant of an issued token, the count of a batch
//!   revocation.
//! - [`MeteredStore`] wraps the store: commit latency, commits by result, and revocations
//!   committed by kind.
//! - [`status`] reads the live token counts, and with `[replication]` the relay's and the
//!   follower's status, when Prometheus scrapes: nothing polls.
//!
//! Labels take values from fixed sets (paths of the routing table, status codes, grant types,
//! event kinds): never a client id, a subject or anything else a request chooses.
//! The list of metrics, with their meaning, is in docs/operations.md ("Metrics of `tollgate
//! serve`").

mod exporter;
mod responses;
pub(crate) mod status;
mod store;

pub(crate) use exporter::serve;
pub(crate) use responses::CountResponsesLayer;
pub(crate) use store::MeteredStore;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use tollgate_store::Store;

/// Upper bounds of the commit latency buckets, in seconds: from the memory store's
/// microseconds to an fsync on a loaded disk.
const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The labels of `tollgate_http_responses_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ResponseLabels {
    /// The routing table's path, or `unmatched` for a path no endpoint serves.
    pub(crate) endpoint: &'static str,
    pub(crate) status: u16,
}

/// The label of `tollgate_tokens_issued_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct GrantLabels {
    pub(crate) grant_type: &'static str,
}

/// The label of `tollgate_revocations_committed_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct KindLabels {
    /// `token`, `grant` or `cutoff`.
    pub(crate) kind: &'static str,
}

/// The label of `tollgate_store_commits_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    /// `ok` or `error`.
    pub(crate) result: &'static str,
}

/// What [`CountResponses`] counts. Clones share the counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseMetrics {
    pub(crate) responses: Family<ResponseLabels, Counter>,
    pub(crate) issued: Family<GrantLabels, Counter>,
    pub(crate) batch_revocations: Counter,
    pub(crate) batch_revoked_tokens: Counter,
}

/// What [`MeteredStore`] measures. Clones share the metrics.
#[derive(Debug, Clone)]
pub(crate) struct StoreMetrics {
    pub(crate) commit_seconds: Histogram,
    pub(crate) commits: Family<ResultLabels, Counter>,
    pub(crate) revocations: Family<KindLabels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
            commits: Family::default(),
            revocations: Family::default(),
        }
    }
}

/// Every metric of `tollgate serve`, registered; [`encode`](Metrics::encode) writes them out.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    responses: ResponseMetrics,
    store: StoreMetrics,
}

impl Metrics {
    /// The metrics of the token service and its store, registered; the status collectors are
    /// added with [`collect`](Metrics::collect) once what they read is running.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let responses = ResponseMetrics::default();
        let store = StoreMetrics::default();
        registry.register(
            "tollgate_http_responses",
            "Responses of the token service, by endpoint (the route's path, or `unmatched`) and status code",
            responses.responses.clone(),
        );
        registry.register(
            "tollgate_tokens_issued",
            "Successful token requests (200 from /connect/token), by grant type",
            responses.issued.clone(),
        );
        registry.register(
            "tollgate_batch_revocations",
            "Batch revocations answered 200",
            responses.batch_revocations.clone(),
        );
        registry.register(
            "tollgate_batch_revoked_tokens",
            "Live tokens revoked by batch revocations: the sum of the counts they answered",
            responses.batch_revoked_tokens.clone(),
        );
        registry.register(
            "tollgate_revocations_committed",
            "Revocation events committed to the store, by kind (token, grant, cutoff)",
            store.revocations.clone(),
        );
        registry.register(
            "tollgate_store_commits",
            "Durable commits to the store, by result (ok, error)",
            store.commits.clone(),
        );
        registry.register_with_unit(
            "tollgate_store_commit_duration",
            "Time from asking the store to commit to the commit being durable",
            Unit::Seconds,
            store.commit_seconds.clone(),
        );
        Metrics {
            registry,
            responses,
            store,
        }
    }

    /// `store`, measured.
    pub(crate) fn store(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(MeteredStore::new(store, self.store.clone()))
    }

    /// The layer that counts the token service's responses.
    pub(crate) fn count_responses(&self) -> CountResponsesLayer {
        CountResponsesLayer::new(self.responses.clone())
    }

    /// Adds values read at each scrape.
    pub(crate) fn collect(&mut self, collector: impl prometheus_client::collector::Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Every metric, in the OpenMetrics text format (ending with `# EOF`).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        // Writing into a `String` cannot fail, and the collectors never do.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        text
    }
}
