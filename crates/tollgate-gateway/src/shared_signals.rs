//! The Shared Signals receivers (`[[shared_signals]]`): one per transmitter, polling it or
//! answering its pushes on the gateway's listener before any route. Each security event that
//! revokes becomes a cutoff of a token issuer's tokens, published through Redis to every follower
//! (and applied here at once) before the transmitter's SET is acknowledged. See
//! `docs/identity-providers.md`.

use crate::config::Revocations;
use crate::response::GatewayBody;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use tollgate_core::RevocationIndex;
use tollgate_program::signals::SharedSignalsConfig;
use tollgate_signals::redis::{RedisPublisher, RedisReplayGuard};
use tollgate_signals::{
    MemoryReplayGuard, SsfPush, SsfReceiver, SsfReceiverBuilder, SsfStatus, SsfTask, StreamState,
};
use tower_service::Service;

/// Every configured receiver (none without `[[shared_signals]]`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedSignals {
    receivers: Vec<Receiver>,
}

/// One transmitter's receiver.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    transmitter: String,
    receiver: SsfReceiver,
    /// Push delivery: the path of the gateway's listener the SETs arrive at, and its service.
    push: Option<(String, SsfPush)>,
}

impl SharedSignals {
    /// The receivers of `configs`, publishing through `revocations` when the gateway follows
    /// Redis, else to `index` only. Nothing is sent before [`start`](Self::start).
    pub(crate) fn new(
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
        let receivers = configs
            .iter()
            .map(|config| Receiver::new(config, index, revocations))
            .collect::<Result<_, _>>()?;
        Ok(SharedSignals { receivers })
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

    /// Every receiver, in the configuration's order.
    pub(crate) fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// `Ok` when every receiver is ready; otherwise why the first that is not is not, naming its
    /// transmitter (what `/readyz` says).
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.receivers.iter().find(|r| !r.receiver.ready()) {
            Some(r) => Err(not_ready(&r.transmitter, &r.receiver.status())),
            None => Ok(()),
        }
    }
}

impl Receiver {
    fn new(
        config: &SharedSignalsConfig,
        index: &Arc<RevocationIndex>,
        revocations: Option<&Revocations>,
    ) -> Result<Receiver, String> {
        let transmitter = config.transmitter().to_owned();
        let receiver = publish_to(config.receiver(), index, revocations)
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
    }

    /// The transmitter's issuer identifier (the `transmitter` label of the metrics).
    pub(crate) fn transmitter(&self) -> &str {
        &self.transmitter
    }

    /// The receiver: its counters and readiness.
    pub(crate) fn receiver(&self) -> &SsfReceiver {
        &self.receiver
    }
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
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// Why a receiver is not ready, as far as its status tells: the transmitter, then the stream's
/// state or the last failure to reach it.
fn not_ready(transmitter: &str, status: &SsfStatus) -> String {
    let failed_since_contact = status
        .last_error
        .as_ref()
        .filter(|(at, _)| status.last_contact.is_none_or(|contact| *at >= contact));
    let why = match (status.stream_state, failed_since_contact) {
        (StreamState::Paused, _) => "the transmitter paused the stream".to_owned(),
        (StreamState::Disabled, _) => "the transmitter disabled the stream".to_owned(),
        (_, Some((_, error))) => error.clone(),
        _ if status.stream_id.is_none() => "no stream set up yet".to_owned(),
        _ if !status.verified => "the stream is not verified yet".to_owned(),
        _ => "no answer from the transmitter lately".to_owned(),
    };
    format!("shared signals transmitter {transmitter} not ready: {why}")
}
