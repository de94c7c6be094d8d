//! The Shared Signals receivers (`[[shared_signals]]`): one per transmitter, polling it or
//! answering its pushes on the gateway's listener before any route. Each security event that
//! revokes becomes a cutoff of a token issuer's tokens, published through Redis to every follower
//! (and applied here at once) before the transmitter's SET is acknowledged. See
//! `docs/identity-providers.md`.

use crate::config::Revocations;
use crate::response::GatewayBody;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use tollgate_core::RevocationIndex;
use tollgate_program::signals::{Receivers, SharedSignalsConfig};
use tollgate_signals::redis::{RedisPublisher, RedisReplayGuard};
use tollgate_signals::{MemoryReplayGuard, SsfPush, SsfReceiverBuilder};
use tower_service::Service;

/// Every configured receiver (none without `[[shared_signals]]`).
pub(crate) type SharedSignals = Receivers;

/// The receivers of `configs`, publishing through `revocations` when the gateway follows Redis,
/// else to `index` only. Nothing is sent before [`Receivers::start`].
pub(crate) fn receivers(
    configs: &[SharedSignalsConfig],
    index: &Arc<RevocationIndex>,
    revocations: Option<&Revocations>,
) -> Result<SharedSignals, String> {
    if !configs.is_empty() && revocations.is_none() {
        tracing::warn!(
            "[[shared_signals]] without [revocations]: security events reach this gateway's \
             index only"
        );
    }
    Receivers::build(configs, |builder| publish_to(builder, index, revocations))
}

/// Where the cutoffs go, as for the logout receiver: through Redis to every follower (applied
/// here at once too) with replay protection shared by every gateway, or to this gateway's index
/// with its own.
fn publish_to(
    builder: SsfReceiverBuilder,
    index: &Arc<RevocationIndex>,
    revocations: Option<&Revocations>,
) -> SsfReceiverBuilder {
    match revocations {
        Some(r) => builder
            .publisher(
                RedisPublisher::new(r.target.clone(), r.keys.clone()).apply_locally(index.clone()),
            )
            .replay_guard(RedisReplayGuard::new(r.target.clone(), &r.prefix)),
        None => builder
            .publisher(index.clone())
            .replay_guard(MemoryReplayGuard::new()),
    }
}

/// Answers one pushed SET.
pub(crate) async fn answer(push: &SsfPush, request: Request<Incoming>) -> Response<GatewayBody> {
    let mut push = push.clone();
    // Always ready, never fails: its refusals are responses.
    let response = match push.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    crate::response::from_full(response)
}
