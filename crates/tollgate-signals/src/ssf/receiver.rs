//! The receiver: what it does with one SET, whichever way it came, and what it reports.

use super::builder::{SsfError, SsfReceiverBuilder};
use super::client::HttpClient;
use super::error::SetError;
use super::push::SsfPush;
use super::set::{SetValidator, Signal, TransmitterKeys, ValidSet};
use super::status::{Contact, Health, SsfStatus, StreamState};
use super::task::{self, SsfTask};
use super::transmitter::WantedStream;
use crate::publish::Publish;
use crate::replay::ReplayGuard;
use crate::stats::SignalStats;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tollgate_core::{Clock, UnixMillis};

/// An OpenID Shared Signals Framework 1.0 receiver for one transmitter: validates the SETs it
/// delivers and publishes the cutoffs they mean. See the [module docs](super) for what it
/// checks, what it revokes and how it reports its health.
///
/// Cheap to clone (one `Arc`). It does nothing on its own: [`start`](Self::start) runs the
/// background task (stream set-up, verification, polling), and [`push_service`](Self::push_service)
/// is the endpoint a push transmitter delivers to.
#[derive(Clone)]
pub struct SsfReceiver {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) validator: SetValidator,
    /// Given at build time, or from the transmitter's `jwks_uri` once discovered.
    pub(crate) keys: OnceLock<TransmitterKeys>,
    pub(crate) publisher: Box<dyn Publish>,
    pub(crate) replay: Box<dyn ReplayGuard>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) stats: SignalStats,
    pub(crate) health: Health,
    pub(crate) client: HttpClient,
    pub(crate) settings: Settings,
    /// SHA-256 of the Authorization header value the push endpoint requires.
    pub(crate) push_authorization: Option<[u8; 32]>,
}

/// How the background task talks with the transmitter.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) wanted: WantedStream,
    pub(crate) poll_interval: Duration,
    pub(crate) status_interval: Duration,
    pub(crate) max_events: u32,
    pub(crate) first_retry: Duration,
    pub(crate) max_retry: Duration,
    /// How long an unanswered verification request waits before it is made again.
    pub(crate) verification_retry: Duration,
}

impl fmt::Debug for SsfReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("SsfReceiver")
            .field("transmitter", &inner.validator.transmitter)
            .field("audience", &inner.validator.audience)
            .field("token_issuers", &inner.validator.token_issuers)
            .field("delivery", &inner.settings.wanted.delivery.method())
            .finish_non_exhaustive()
    }
}

/// What became of a valid SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    Ignored,
}

/// Why a SET was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The SET is not acceptable: the transmitter should not send it again.
    Invalid(SetError),
    /// Valid or not, it could not be handled now (no keys yet, the replay guard or the publisher
    /// failed): the transmitter should send it again.
    Unavailable(String),
}

impl SsfReceiver {
    /// Starts a builder for SETs of the transmitter whose issuer identifier is `transmitter`
    /// (an `https` URL; `http` for tests), addressed to `audience` (their `aud`).
    pub fn builder(
        transmitter: impl Into<String>,
        audience: impl Into<String>,
    ) -> SsfReceiverBuilder {
        SsfReceiverBuilder::new(transmitter.into(), audience.into())
    }

    /// The RFC 8935 push endpoint: a tower `Service` to mount at the push `endpoint_url`.
    pub fn push_service(&self) -> SsfPush {
        SsfPush::new(self.clone())
    }

    /// Spawns the background task on the current tokio runtime: it reads the transmitter's
    /// metadata, finds or creates this receiver's stream, asks for verification, and then polls
    /// (poll delivery) or reads the stream's status (push delivery), retrying with a backoff on
    /// failures. The task stops when the returned [`SsfTask`] is dropped. Start it once per
    /// receiver: two tasks would poll the same stream twice.
    ///
    /// Fails when there is no current tokio runtime.
    pub fn start(&self) -> Result<SsfTask, SsfError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            SsfError("SsfReceiver::start must be called within a tokio runtime".into())
        })?;
        Ok(task::spawn(&runtime, self.clone()))
    }

    /// The stream's status, the last contacts with the transmitter and the last error.
    pub fn status(&self) -> SsfStatus {
        self.inner.health.snapshot(self.inner.clock.now())
    }

    /// Whether revocations from the transmitter reach this receiver: a stream is set up, verified
    /// when the transmitter offers verification, not paused or disabled, and the transmitter
    /// answered (a poll, a status read, a push) within the longest silence allowed
    /// ([`SsfReceiverBuilder::max_silence`]). Meant for `/readyz`.
    pub fn ready(&self) -> bool {
        self.inner.health.ready(self.inner.clock.now())
    }

    /// What this receiver has received, applied, ignored and refused.
    pub fn stats(&self) -> &SignalStats {
        &self.inner.stats
    }

    /// Validates one SET and acts on it: publishes its cutoffs, records a verification or a
    /// stream status. Counted in the stats whatever the outcome.
    pub(crate) async fn receive(&self, set: &str, via: Contact) -> Result<Outcome, Refusal> {
        let inner = &*self.inner;
        inner.stats.received();
        let outcome = self.handle(set, via).await;
        match &outcome {
            Ok(Outcome::Applied) => inner.stats.applied(),
            Ok(Outcome::Ignored) => inner.stats.ignored(),
            Err(Refusal::Invalid(error)) => {
                if error.reason() == "replayed" {
                    inner.stats.replayed();
                } else {
                    inner.stats.invalid();
                }
                inner.stats.refused(error.reason());
                tracing::warn!(reason = error.reason(), error = %error, "security event refused");
            }
            Err(Refusal::Unavailable(why)) => {
                inner.stats.unavailable();
                tracing::error!(error = %why, "security event not handled; the transmitter will send it again");
            }
        }
        outcome
    }

    /// Counts a push request refused before it was read as a SET (method, authentication, body).
    pub(crate) fn refused_request(&self, reason: &'static str) {
        let stats = &self.inner.stats;
        stats.received();
        stats.invalid();
        stats.refused(reason);
    }

    async fn handle(&self, set: &str, via: Contact) -> Result<Outcome, Refusal> {
        let inner = &*self.inner;
        let Some(keys) = inner.keys.get() else {
            return Err(Refusal::Unavailable(
                "the transmitter's keys are not known yet".into(),
            ));
        };
        let now = inner.clock.now();
        let critical = inner.health.critical();
        let valid = inner
            .validator
            .validate(set, keys, &critical, now.as_secs())
            .await
            .map_err(Refusal::Invalid)?;
        if via == Contact::Push {
            inner.health.contact(now, Contact::Push);
        }
        self.check_stream_event(&valid)?;
        self.spend(&valid, now).await?;
        self.act(valid).await
    }

    /// The stream's own events must be about this receiver's stream, and a verification's state
    /// one it asked for.
    fn check_stream_event(&self, valid: &ValidSet) -> Result<(), Refusal> {
        let health = &self.inner.health;
        if !matches!(
            valid.signal,
            Signal::Verification { .. } | Signal::StreamUpdated { .. }
        ) {
            return Ok(());
        }
        if let (Some(ours), Some(named)) = (health.stream_id(), &valid.stream_id)
            && &ours != named
        {
            return Err(Refusal::Invalid(SetError::request(
                "stream",
                "the event is about another stream",
            )));
        }
        if let Signal::Verification { state } = &valid.signal {
            health
                .check_verification(state.as_deref())
                .map_err(Refusal::Invalid)?;
        }
        Ok(())
    }

    /// Records the `jti` as used, until the SET could no longer pass the freshness check.
    async fn spend(&self, valid: &ValidSet, now: UnixMillis) -> Result<(), Refusal> {
        let inner = &*self.inner;
        let validator = &inner.validator;
        let until = UnixMillis::from_secs(
            valid
                .issued_at
                .saturating_add(validator.max_age_secs)
                .saturating_add(validator.leeway_secs)
                .saturating_add(1),
        );
        match inner
            .replay
            .first_use(&validator.transmitter, &valid.jti, now, until)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::Invalid(SetError::request(
                "replayed",
                "the SET was already received (jti)",
            ))),
            Err(e) => Err(Refusal::Unavailable(format!(
                "cannot check the SET for a replay: {e}"
            ))),
        }
    }

    async fn act(&self, valid: ValidSet) -> Result<Outcome, Refusal> {
        let inner = &*self.inner;
        let transmitter = &inner.validator.transmitter;
        match valid.signal {
            Signal::Revoke(events) => {
                if let Err(e) = inner.publisher.publish(&events).await {
                    // Given back, so that the transmitter's next delivery is not a replay.
                    inner.replay.forget(transmitter, &valid.jti).await;
                    return Err(Refusal::Unavailable(format!(
                        "the cutoff could not be published: {e}"
                    )));
                }
                let scopes: Vec<&str> = events
                    .iter()
                    .filter_map(|e| e.as_cutoff().map(|(_, scope, _)| scope.kind()))
                    .collect();
                tracing::info!(%transmitter, event = %valid.event_type, ?scopes, "security event applied");
                Ok(Outcome::Applied)
            }
            Signal::Verification { state } => {
                if state.is_some() {
                    inner.health.verified();
                    tracing::info!(%transmitter, "shared signals stream verified");
                }
                Ok(Outcome::Applied)
            }
            Signal::StreamUpdated { status, reason } => {
                inner.health.stream_updated(StreamState::parse(&status));
                tracing::warn!(%transmitter, %status, reason = reason.as_deref().unwrap_or(""), "the transmitter updated the stream");
                Ok(Outcome::Applied)
            }
            Signal::Ignored => {
                tracing::debug!(%transmitter, event = %valid.event_type, "security event ignored: not a revocation");
                Ok(Outcome::Ignored)
            }
        }
    }

    /// Records a failure to talk with the transmitter.
    pub(crate) fn failed(&self, error: String) {
        tracing::warn!(transmitter = %self.inner.validator.transmitter, %error, "shared signals: transmitter not reached");
        self.inner.health.error(self.inner.clock.now(), error);
    }
}
