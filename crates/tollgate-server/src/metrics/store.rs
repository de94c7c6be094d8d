//! [`MeteredStore`]: a [`Store`] that measures the store it wraps (commit latency, commits by
//! result, revocations committed by kind) and otherwise only forwards; a shared store's
//! coordination is measured too ([`MeteredShared`]).

use super::{KindLabels, ResultLabels, StoreMetrics};
use std::sync::Arc;
use std::time::Instant;
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};
use tollgate_store::{
    LiveCount, Loaded, Outbox, Purge, Record, RefreshTokenRecord, Rotation, Settled, SharedCutOff,
    SharedStore, Stamp, Store, StoreError, StoreFuture, ThrottlePolicy, TokenHash,
};

/// The store of the token service, measured. Every method forwards to the inner store; its
/// outbox is the inner store's (a relay reads it unmeasured), and its shared coordination, if
/// any, is the inner store's, measured.
#[derive(Debug)]
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: StoreMetrics,
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn Store>, metrics: StoreMetrics) -> Self {
        MeteredStore { inner, metrics }
    }
}

/// The label of a revocation event.
fn kind(event: &RevocationEvent) -> &'static str {
    match event {
        RevocationEvent::Token { .. } => "token",
        RevocationEvent::Grant { .. } => "grant",
        RevocationEvent::Cutoff { .. } | RevocationEvent::IssuerCutoff { .. } => "cutoff",
        _ => "other",
    }
}

impl Store for MeteredStore {
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()> {
        // Counted before the records move into the store, added once the commit is durable:
        // a failed commit revoked nothing.
        let revocations: Vec<&'static str> = records
            .iter()
            .filter_map(|record| match record {
                Record::Revocation(event) => Some(kind(event)),
                _ => None,
            })
            .collect();
        Box::pin(async move {
            let started = Instant::now();
            let outcome = self.inner.commit(records).await;
            self.observe(started, outcome.is_ok(), &revocations);
            outcome
        })
    }

    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError> {
        self.inner.write_behind(records)
    }

    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded> {
        self.inner.load(now)
    }

    fn purge(&self, horizon: Purge) -> StoreFuture<'_, u64> {
        self.inner.purge(horizon)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.inner.flush()
    }

    fn outbox(self: Arc<Self>) -> Option<Arc<dyn Outbox>> {
        self.inner.clone().outbox()
    }

    // A shared store's coordination is forwarded too: without it the issuer would fall back to
    // its in-process gates, which cannot keep replicas' promises.
    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>> {
        let inner = self.inner.clone().shared()?;
        Some(Arc::new(MeteredShared { inner, store: self }))
    }
}

/// A shared store's coordination, measured: issuance and cutoffs are commits.
#[derive(Debug)]
pub(crate) struct MeteredShared {
    inner: Arc<dyn SharedStore>,
    /// Whose metrics it adds to.
    store: Arc<MeteredStore>,
}

impl SharedStore for MeteredShared {
    fn commit_issued(&self, stamp: Stamp) -> StoreFuture<'_, UnixMillis> {
        Box::pin(async move {
            let started = Instant::now();
            let outcome = self.inner.commit_issued(stamp).await;
            self.store.observe(started, outcome.is_ok(), &[]);
            outcome
        })
    }

    fn cut_off(
        &self,
        scope: &CutoffScope,
        asked: Option<UnixMillis>,
    ) -> StoreFuture<'_, SharedCutOff> {
        let scope = scope.clone();
        Box::pin(async move {
            let started = Instant::now();
            let outcome = self.inner.cut_off(&scope, asked).await;
            self.store.observe(started, outcome.is_ok(), &["cutoff"]);
            outcome
        })
    }

    fn refresh_token(&self, hash: &TokenHash) -> StoreFuture<'_, Option<RefreshTokenRecord>> {
        self.inner.refresh_token(hash)
    }

    fn rotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, Rotation> {
        self.inner.rotate_refresh(hash)
    }

    fn unrotate_refresh(&self, hash: &TokenHash) -> StoreFuture<'_, ()> {
        self.inner.unrotate_refresh(hash)
    }

    fn throttle_take(
        &self,
        key: &str,
        now: UnixMillis,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, Option<UnixMillis>> {
        self.inner.throttle_take(key, now, policy)
    }

    fn live_tokens(&self) -> StoreFuture<'_, LiveCount> {
        self.inner.live_tokens()
    }

    fn throttle_settle(
        &self,
        key: &str,
        outcome: Settled,
        policy: ThrottlePolicy,
    ) -> StoreFuture<'_, ()> {
        self.inner.throttle_settle(key, outcome, policy)
    }
}

impl MeteredStore {
    /// Records a commit that started at `started`, and the revocations of `kinds` it made durable
    /// if it succeeded.
    fn observe(&self, started: Instant, ok: bool, kinds: &[&'static str]) {
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        let result = if ok { "ok" } else { "error" };
        self.metrics
            .commits
            .get_or_create(&ResultLabels { result })
            .inc();
        if ok {
            for &kind in kinds {
                self.metrics
                    .revocations
                    .get_or_create(&KindLabels { kind })
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_store::MemoryStore;

    fn count(
        family: &prometheus_client::metrics::family::Family<
            KindLabels,
            prometheus_client::metrics::counter::Counter,
        >,
        kind: &'static str,
    ) -> u64 {
        family.get_or_create(&KindLabels { kind }).get()
    }

    #[tokio::test]
    async fn commits_are_timed_and_revocations_counted_by_kind() {
        let metrics = StoreMetrics::default();
        let store = Arc::new(MeteredStore::new(
            Arc::new(MemoryStore::new()),
            metrics.clone(),
        ));
        let token = RevocationEvent::Token {
            jti: "j".into(),
            expires_at: UnixMillis(i64::MAX / 2),
        };
        let cutoff = RevocationEvent::Cutoff {
            scope: CutoffScope::All,
            issued_before: UnixMillis(1),
        };
        let issuer_cutoff = RevocationEvent::cutoff(
            Some("https://id.example.com"),
            CutoffScope::All,
            UnixMillis(1),
        );
        store
            .commit(vec![
                Record::Revocation(token.clone()),
                Record::Revocation(cutoff),
                Record::Revocation(issuer_cutoff),
            ])
            .await
            .unwrap();
        store.commit(vec![Record::Revocation(token)]).await.unwrap();
        assert_eq!(count(&metrics.revocations, "token"), 2);
        assert_eq!(count(&metrics.revocations, "cutoff"), 2);
        assert_eq!(count(&metrics.revocations, "grant"), 0);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("commit", "", metrics.commit_seconds.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("commit_count 2\n"), "{text}");
        let ok = metrics
            .commits
            .get_or_create(&ResultLabels { result: "ok" })
            .get();
        assert_eq!(ok, 2);
        // The outbox is the inner store's.
        let outbox = store.clone().outbox().expect("the memory store's outbox");
        assert!(outbox.outbox_status().await.unwrap().pending > 0);
        // A store of one process stays one.
        assert!(store.shared().is_none());
    }

    /// The decorator keeps the store contract, the outbox's included.
    #[tokio::test]
    async fn keeps_the_store_contract() {
        let metered =
            || async { MeteredStore::new(Arc::new(MemoryStore::new()), StoreMetrics::default()) };
        tollgate_store::testing::check_store(metered).await;
        tollgate_store::testing::check_outbox(metered).await;
    }
}
