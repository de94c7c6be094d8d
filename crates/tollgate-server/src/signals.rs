//! `tollgate serve` with `[[shared_signals]]`: one Shared Signals receiver per transmitter, whose
//! cutoffs go through this server's store as its own revocations do: committed durably (into the
//! outbox) before the transmitter's SET is acknowledged, applied to the index, then published to
//! Redis by the relay for every follower, even if Redis was away when the SET arrived. Pushes are
//! answered on the server's listener before the token service.

use std::sync::Arc;
use tokio::sync::Notify;
use tollgate_core::{RevocationEvent, RevocationIndex};
use tollgate_issuer::TokenService;
use tollgate_program::signals::SharedSignalsConfig;
use tollgate_signals::{
    BoxFuture, MemoryReplayGuard, Publish, PublishError, SsfPush, SsfReceiver, SsfTask,
};
use tollgate_store::{Record, Store};

/// Every configured receiver (none without `[[shared_signals]]`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignalReceivers {
    receivers: Vec<Receiver>,
}

/// One transmitter's receiver.
#[derive(Debug, Clone)]
struct Receiver {
    transmitter: String,
    receiver: SsfReceiver,
    /// Push delivery: the path of the listener the SETs arrive at, and its service.
    push: Option<(String, SsfPush)>,
}

impl SignalReceivers {
    /// The receivers of `configs`, committing through `service`'s store. Nothing is sent before
    /// [`start`](Self::start).
    pub(crate) fn new(
        configs: &[SharedSignalsConfig],
        service: &TokenService,
    ) -> Result<SignalReceivers, String> {
        let receivers = configs
            .iter()
            .map(|config| {
                let transmitter = config.transmitter().to_owned();
                let receiver = config
                    .receiver()
                    .publisher(StorePublisher::of(service))
                    // In memory: a replay of a SET only commits a cutoff again, which changes
                    // nothing, and a guard in Redis would refuse every SET while Redis is away,
                    // which is when the store's outbox helps.
                    .replay_guard(MemoryReplayGuard::new())
                    .build()
                    .map_err(|e| format!("shared signals {transmitter}: {e}"))?;
                let push = config
                    .push_path()
                    .map(|path| (path.to_owned(), receiver.push_service()));
                Ok(Receiver {
                    transmitter,
                    receiver,
                    push,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(SignalReceivers { receivers })
    }

    /// Starts every receiver's background task (stream set-up, verification, polling or status
    /// reads) on the current runtime; each stops when its handle is dropped.
    pub(crate) fn start(&self) -> Result<Vec<SsfTask>, String> {
        self.receivers
            .iter()
            .map(|r| {
                r.receiver
                    .start()
                    .map_err(|e| format!("shared signals {}: {e}", r.transmitter))
            })
            .collect()
    }

    /// The push endpoint that answers `path` (compared exactly), if one does.
    pub(crate) fn push_endpoint(&self, path: &str) -> Option<&SsfPush> {
        self.receivers
            .iter()
            .find_map(|r| r.push.as_ref().filter(|(p, _)| p == path).map(|(_, s)| s))
    }

    /// Each receiver with its transmitter, for the metrics.
    pub(crate) fn each(&self) -> Vec<(&str, &SsfReceiver)> {
        self.receivers
            .iter()
            .map(|r| (r.transmitter.as_str(), &r.receiver))
            .collect()
    }

    /// Whether any is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }
}

/// Publishes a receiver's events as the ledger records a revocation: committed to the store
/// (durable, and in the outbox), then applied to the index, then the relay woken. Not under the
/// ledger's revocation gate, which keeps batch counts exact: a cutoff of another issuer's tokens
/// never changes which of this server's own tokens are refused (its own issuer is refused as a
/// token issuer when the file is read).
#[derive(Debug)]
struct StorePublisher {
    store: Arc<dyn Store>,
    index: Arc<RevocationIndex>,
    outbox: Arc<Notify>,
}

impl StorePublisher {
    fn of(service: &TokenService) -> StorePublisher {
        StorePublisher {
            store: service.store().clone(),
            index: service.index().clone(),
            outbox: service.outbox_notify(),
        }
    }
}

impl Publish for StorePublisher {
    fn publish<'a>(
        &'a self,
        events: &'a [RevocationEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            let records = events.iter().cloned().map(Record::Revocation).collect();
            self.store
                .commit(records)
                .await
                .map_err(|e| PublishError::new(format!("the store did not commit it: {e}")))?;
            for event in events {
                self.index.apply(event);
            }
            self.outbox.notify_one();
            Ok(())
        })
    }
}
