//! Building a receiver from plain values, and what the builder refuses.

use super::client::{Credentials, HttpClient, parse_url};
use super::event_types;
use super::push::sha256;
use super::receiver::{Inner, Settings, SsfReceiver};
use super::set::{SetValidator, TransmitterKeys};
use super::status::Health;
use super::token::{ClientAuthentication, ClientCredentials};
use super::transmitter::{WantedDelivery, WantedStream};
use crate::publish::Publish;
use crate::replay::{MemoryReplayGuard, ReplayGuard};
use crate::stats::SignalStats;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tollgate_core::{Clock, KeySet, SigningAlgorithm, SystemClock};

/// Why a [`SsfReceiver`] could not be built or started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsfError(pub(super) String);

impl fmt::Display for SsfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared signals receiver: {}", self.0)
    }
}

impl std::error::Error for SsfError {}

/// Builds a [`SsfReceiver`] from plain values: the transmitter's issuer, the audience, how to
/// authenticate to its API (a bearer token or OAuth 2.0 client credentials), the token issuers it may revoke, how SETs are delivered. A publisher is required.
#[must_use]
pub struct SsfReceiverBuilder {
    transmitter: String,
    audience: String,
    bearer_token: Option<String>,
    client_credentials: Option<ClientCredentialsValues>,
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

/// What [`SsfReceiverBuilder::client_credentials`] was given, checked at `build`.
struct ClientCredentialsValues {
    token_endpoint: String,
    client_id: String,
    authentication: ClientAuthentication,
    scope: Option<String>,
}

impl fmt::Debug for SsfReceiverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsfReceiverBuilder")
            .field("transmitter", &self.transmitter)
            .field("audience", &self.audience)
            .field(
                "client_credentials",
                &self
                    .client_credentials
                    .as_ref()
                    .map(|c| (&c.token_endpoint, &c.client_id, &c.authentication, &c.scope)),
            )
            .field("token_issuers", &self.token_issuers)
            .field("push", &self.push.as_ref().map(|(url, _)| url))
            .finish_non_exhaustive()
    }
}

impl SsfReceiverBuilder {
    pub(super) fn new(transmitter: String, audience: String) -> Self {
        SsfReceiverBuilder {
            transmitter,
            audience,
            bearer_token: None,
            client_credentials: None,
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

    /// The token the transmitter's management API and poll endpoint require, sent as
    /// `Authorization: Bearer <token>` (never logged), never renewed. Either this or
    /// [`client_credentials`](Self::client_credentials) is required.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Authenticates to the transmitter's API with access tokens of the OAuth 2.0 client
    /// credentials grant (RFC 6749 §4.4), for providers whose tokens expire (Okta, Keycloak):
    /// `grant_type=client_credentials` (and `scope`, when given) is POSTed to `token_endpoint`
    /// with HTTP Basic client authentication (`client_secret_basic`, RFC 6749 §2.3.1); the
    /// `access_token` is kept and renewed 30 s before its `expires_in` (or at 80% of a short
    /// life), and at once when the transmitter answers `401`, which retries that request once.
    /// A failure at the token endpoint is the receiver's `last_error` (naming the endpoint and
    /// the client id, never the secret or a token). Either this or
    /// [`bearer_token`](Self::bearer_token) is required.
    pub fn client_credentials(
        self,
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        scope: Option<String>,
    ) -> Self {
        self.client_credentials_with(
            token_endpoint,
            client_id,
            ClientAuthentication::ClientSecretBasic(client_secret.into()),
            scope,
        )
    }

    /// [`client_credentials`](Self::client_credentials) with another client authentication at
    /// the token endpoint: the secret in the form (`client_secret_post`), or a JWT signed with
    /// the client's private key (`private_key_jwt`, RFC 7523), which Okta requires of service
    /// apps that call its APIs. Failures are reported as for `client_credentials`, never
    /// quoting the secret, the key or an assertion.
    pub fn client_credentials_with(
        mut self,
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        authentication: ClientAuthentication,
        scope: Option<String>,
    ) -> Self {
        self.client_credentials = Some(ClientCredentialsValues {
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            authentication,
            scope,
        });
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
        self.check_values()?;
        let token_issuers = self.checked_token_issuers()?;
        let (delivery, push_authorization) = self.checked_delivery()?;
        let credentials = self.credentials()?;
        let publisher = self
            .publisher
            .ok_or_else(|| fail("a publisher is required".into()))?;
        let client = HttpClient::new(credentials, self.request_timeout).map_err(fail)?;
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

    /// The issuer's URL, the audience, the algorithms and the numbers.
    fn check_values(&self) -> Result<(), SsfError> {
        parse_url("the transmitter's issuer", &self.transmitter).map_err(SsfError)?;
        if self.audience.is_empty() {
            return Err(SsfError("the audience must not be empty".into()));
        }
        if self.algorithms.is_empty() {
            return Err(SsfError("no algorithm is allowed".into()));
        }
        for (name, value) in [
            ("poll_interval", self.poll_interval),
            ("status_interval", self.status_interval),
            ("request_timeout", self.request_timeout),
            ("the first retry", self.first_retry),
        ] {
            if value.is_zero() {
                return Err(SsfError(format!("{name} must be greater than zero")));
            }
        }
        if !(1..=1000).contains(&self.max_events) {
            return Err(SsfError("max_events must be from 1 to 1000".into()));
        }
        Ok(())
    }

    /// The bearer token or the client credentials: exactly one of the two.
    fn credentials(&self) -> Result<Credentials, SsfError> {
        match (&self.bearer_token, &self.client_credentials) {
            (Some(_), Some(_)) => Err(SsfError(
                "set either bearer_token or client_credentials, not both".into(),
            )),
            (None, None) => Err(SsfError(
                "the transmitter's API needs a bearer_token or client_credentials".into(),
            )),
            (Some(token), None) => Ok(Credentials::Bearer(token.clone())),
            (None, Some(c)) => ClientCredentials::new(
                &c.token_endpoint,
                c.client_id.clone(),
                c.authentication.clone(),
                c.scope.clone(),
            )
            .map(|source| Credentials::ClientCredentials(Arc::new(source)))
            .map_err(SsfError),
        }
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
