//! The receiver: its configuration, and what it does with one SET whichever way it came.

use super::client::{HttpClient, parse_url};
use super::error::SetError;
use super::event_types;
use super::push::SsfPush;
use super::set::{SetValidator, Signal, TransmitterKeys, ValidSet};
use super::status::{Contact, Health, SsfStatus, StreamState};
use super::task::{self, SsfTask};
use super::transmitter::{WantedDelivery, WantedStream};
use crate::publish::Publish;
use crate::replay::{MemoryReplayGuard, ReplayGuard};
use crate::stats::SignalStats;
use aws_lc_rs::digest::{SHA256, digest};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tollgate_core::{Clock, KeySet, SigningAlgorithm, SystemClock, UnixMillis};

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
    publisher: Box<dyn Publish>,
    replay: Box<dyn ReplayGuard>,
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
        SsfReceiverBuilder {
            transmitter: transmitter.into(),
            audience: audience.into(),
            bearer_token: None,
            token_issuers: Vec::new(),
            push: None,
            keys: None,
            algorithms: SigningAlgorithm::ALL.to_vec(),
            publisher: None,
            replay: None,
            clock: Arc::new(SystemClock),
            stats: SignalStats::new(),
            max_age: Duration::from_secs(24 * 60 * 60),
            leeway: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            status_interval: Duration::from_secs(30),
            max_silence: None,
            max_events: 25,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            description: "tollgate: revocations of access tokens".to_owned(),
        }
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

/// Why a [`SsfReceiver`] could not be built or started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsfError(String);

impl fmt::Display for SsfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared signals receiver: {}", self.0)
    }
}

impl std::error::Error for SsfError {}

/// Builds a [`SsfReceiver`] from plain values: the transmitter's issuer, the audience, a bearer
/// token, the token issuers it may revoke, how SETs are delivered. A publisher is required.
#[must_use]
pub struct SsfReceiverBuilder {
    transmitter: String,
    audience: String,
    bearer_token: Option<String>,
    token_issuers: Vec<String>,
    push: Option<(String, Option<String>)>,
    keys: Option<KeySet>,
    algorithms: Vec<SigningAlgorithm>,
    publisher: Option<Box<dyn Publish>>,
    replay: Option<Box<dyn ReplayGuard>>,
    clock: Arc<dyn Clock>,
    stats: SignalStats,
    max_age: Duration,
    leeway: Duration,
    poll_interval: Duration,
    status_interval: Duration,
    max_silence: Option<Duration>,
    max_events: u32,
    first_retry: Duration,
    max_retry: Duration,
    request_timeout: Duration,
    description: String,
}

impl fmt::Debug for SsfReceiverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiverBuilder")
            .field("transmitter", &self.transmitter)
            .field("audience", &self.audience)
            .field("token_issuers", &self.token_issuers)
            .field("push", &self.push.as_ref().map(|(url, _)| url))
            .finish_non_exhaustive()
    }
}

impl SsfReceiverBuilder {
    /// The token the transmitter's management API and poll endpoint require, sent as
    /// `Authorization: Bearer <token>` (never logged).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// The issuers whose access tokens this transmitter may revoke, compared exactly with an
    /// `iss_sub` subject's `iss`; the first is the one an `opaque` subject's `sub` belongs to.
    /// Default: the transmitter's own issuer. An event about another issuer's user is refused:
    /// a transmitter never revokes another provider's users.
    pub fn token_issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.token_issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Push delivery (RFC 8935): the transmitter POSTs SETs to `endpoint_url`, where
    /// [`SsfReceiver::push_service`] is mounted, sending `authorization` (when set) as its
    /// `Authorization` header, which the push service then requires. Default: poll delivery
    /// (RFC 8936), at the URL the transmitter gives the stream.
    pub fn push(mut self, endpoint_url: impl Into<String>, authorization: Option<String>) -> Self {
        self.push = Some((endpoint_url.into(), authorization));
        self
    }

    /// Verifies SETs with these keys rather than those of the transmitter's `jwks_uri`.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Restricts the accepted algorithms (default: every one tollgate implements; each key still
    /// verifies only its own).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Where the cutoffs go before a SET is acknowledged. Required.
    pub fn publisher(mut self, publisher: impl Publish) -> Self {
        self.publisher = Some(Box::new(publisher));
        self
    }

    /// Replay protection (default: a [`MemoryReplayGuard`] of this receiver's own).
    pub fn replay_guard(mut self, guard: impl ReplayGuard) -> Self {
        self.replay = Some(Box::new(guard));
        self
    }

    /// How old a SET may be (its `iat`). Default 24 hours: polled SETs may have waited at the
    /// transmitter while this receiver was away, and refusing one loses its revocation for good.
    /// An older cutoff only concerns tokens issued more than that long ago; set it to at least
    /// the longest access-token lifetime of the token issuers.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Clock skew tolerated on `iat`, `exp` and `event_timestamp`. Default 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How often the transmitter is polled when it had nothing (poll delivery). Default 5 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How often the stream's status is read (push delivery). Default 30 s.
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// How long the transmitter may stay silent (no poll answered, no status read, no push)
    /// before [`SsfReceiver::ready`] is false. Default: three poll (or status) intervals plus the
    /// request timeout.
    pub fn max_silence(mut self, silence: Duration) -> Self {
        self.max_silence = Some(silence);
        self
    }

    /// The most SETs asked for in one poll (`maxEvents`), 1 to 1000. Default 25.
    pub fn max_events(mut self, max_events: u32) -> Self {
        self.max_events = max_events;
        self
    }

    /// The backoff after a failure: the first retry, doubling up to `max`. Default 1 s to 60 s.
    pub fn retry(mut self, first: Duration, max: Duration) -> Self {
        self.first_retry = first;
        self.max_retry = max;
        self
    }

    /// The time one request to the transmitter may take. Default 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The stream's `description` when this receiver creates it.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counters to report into (default: the receiver's own, see [`SsfReceiver::stats`]).
    pub fn stats(mut self, stats: SignalStats) -> Self {
        self.stats = stats;
        self
    }

    /// Checks the configuration and builds the receiver (nothing is sent yet).
    pub fn build(self) -> Result<SsfReceiver, SsfError> {
        let fail = |message: String| SsfError(message);
        parse_url("the transmitter's issuer", &self.transmitter).map_err(fail)?;
        if self.audience.is_empty() {
            return Err(fail("the audience must not be empty".into()));
        }
        let token_issuers = self.checked_token_issuers()?;
        if self.algorithms.is_empty() {
            return Err(fail("no algorithm is allowed".into()));
        }
        for (name, value) in [
            ("poll_interval", self.poll_interval),
            ("status_interval", self.status_interval),
            ("request_timeout", self.request_timeout),
            ("the first retry", self.first_retry),
        ] {
            if value.is_zero() {
                return Err(fail(format!("{name} must be greater than zero")));
            }
        }
        if !(1..=1000).contains(&self.max_events) {
            return Err(fail("max_events must be from 1 to 1000".into()));
        }
        let (delivery, push_authorization) = self.checked_delivery()?;
        let publisher = self
            .publisher
            .ok_or_else(|| fail("a publisher is required".into()))?;
        let client =
            HttpClient::new(self.bearer_token.as_deref(), self.request_timeout).map_err(fail)?;
        let interval = match delivery {
            WantedDelivery::Poll => self.poll_interval,
            WantedDelivery::Push { .. } => self.status_interval,
        };
        let max_silence = self
            .max_silence
            .unwrap_or_else(|| interval.saturating_mul(3) + self.request_timeout);
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let keys = OnceLock::new();
        if let Some(fixed) = self.keys {
            let _ = keys.set(TransmitterKeys {
                keys: fixed,
                remote: None,
            });
        }
        Ok(SsfReceiver {
            inner: Arc::new(Inner {
                validator: SetValidator {
                    transmitter: self.transmitter.clone(),
                    audience: self.audience.clone(),
                    token_issuers,
                    algorithms: self.algorithms,
                    max_age_secs: secs(self.max_age),
                    leeway_secs: secs(self.leeway),
                },
                keys,
                publisher,
                replay: self
                    .replay
                    .unwrap_or_else(|| Box::new(MemoryReplayGuard::new())),
                clock: self.clock,
                stats: self.stats,
                health: Health::new(max_silence),
                client,
                settings: Settings {
                    wanted: WantedStream {
                        issuer: self.transmitter,
                        audience: self.audience,
                        delivery,
                        events_requested: event_types::SUPPORTED
                            .iter()
                            .map(|e| (*e).to_owned())
                            .collect(),
                        description: self.description,
                    },
                    poll_interval: self.poll_interval,
                    status_interval: self.status_interval,
                    max_events: self.max_events,
                    first_retry: self.first_retry,
                    max_retry: self.max_retry.max(self.first_retry),
                    verification_retry: max_silence,
                },
                push_authorization,
            }),
        })
    }

    fn checked_token_issuers(&self) -> Result<Vec<String>, SsfError> {
        let issuers = if self.token_issuers.is_empty() {
            vec![self.transmitter.clone()]
        } else {
            self.token_issuers.clone()
        };
        for (i, issuer) in issuers.iter().enumerate() {
            if issuer.is_empty() {
                return Err(SsfError("a token issuer must not be empty".into()));
            }
            if issuers[..i].contains(issuer) {
                return Err(SsfError(format!(
                    "the token issuer {issuer} is configured twice"
                )));
            }
        }
        Ok(issuers)
    }

    fn checked_delivery(&self) -> Result<(WantedDelivery, Option<[u8; 32]>), SsfError> {
        let Some((endpoint_url, authorization)) = &self.push else {
            return Ok((WantedDelivery::Poll, None));
        };
        parse_url("the push endpoint_url", endpoint_url).map_err(SsfError)?;
        let digest = match authorization {
            Some(value) if value.is_empty() || http::HeaderValue::from_str(value).is_err() => {
                return Err(SsfError(
                    "the push authorization must be a non-empty header value".into(),
                ));
            }
            Some(value) => Some(sha256(value.as_bytes())),
            None => None,
        };
        Ok((
            WantedDelivery::Push {
                endpoint_url: endpoint_url.clone(),
                authorization_header: authorization.clone(),
            },
            digest,
        ))
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}
