//! `tollgate serve` with `[[shared_signals]]`: one Shared Signals receiver per transmitter, whose
//! cutoffs go through this server's store as its own revocations do: committed durably (into the
//! outbox) before the transmitter's SET is acknowledged, applied to the index, then published to
//! Redis by the relay for every follower, even if Redis was away when the SET arrived. Pushes are
//! answered on the server's listener before the token service.

use std::sync::Arc;
use tokio::sync::Notify;
use tollgate_core::{RevocationEvent, RevocationIndex};
use tollgate_issuer::TokenService;
use tollgate_program::signals::{Receivers, SharedSignalsConfig};
use tollgate_signals::{BoxFuture, MemoryReplayGuard, Publish, PublishError};
use tollgate_store::{Record, Store};

/// Every configured receiver (none without `[[shared_signals]]`).
pub(crate) type SignalReceivers = Receivers;

/// The receivers of `configs`, committing through `service`'s store. Nothing is sent before
/// [`Receivers::start`].
pub(crate) fn receivers(
    configs: &[SharedSignalsConfig],
    service: &TokenService,
) -> Result<SignalReceivers, String> {
    Receivers::build(configs, |builder| {
        builder
            .publisher(StorePublisher::of(service))
            // In memory: a replay of a SET only commits a cutoff again, which changes nothing,
            // and a guard in Redis would refuse every SET while Redis is away, which is when
            // the store's outbox helps.
            .replay_guard(MemoryReplayGuard::new())
    })
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
