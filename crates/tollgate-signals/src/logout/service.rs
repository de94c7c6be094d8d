//! The receiver as a tower `Service`.

use super::issuer::LogoutIssuer;
use super::response;
use super::token::{LogoutToken, Validator};
use crate::http::{BodyError, BoxError, has_media_type, read_bounded};
use crate::publish::{BoxFuture, Publish};
use crate::replay::{MemoryReplayGuard, ReplayGuard};
use crate::stats::SignalStats;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tollgate_core::{Clock, SystemClock, UnixMillis};
use tower_service::Service;

/// The largest request body read: a form holding one logout token.
const MAX_BODY: usize = 16 * 1024;

/// An OpenID Connect Back-Channel Logout receiver: mount it at the logout URI registered at the
/// provider. See the [module docs](crate) for what it checks and answers.
///
/// Cheap to clone (one `Arc`); always ready.
#[derive(Clone)]
pub struct BackChannelLogout {
    inner: Arc<Inner>,
}

struct Inner {
    validator: Validator,
    publisher: Box<dyn Publish>,
    replay: Box<dyn ReplayGuard>,
    clock: Arc<dyn Clock>,
    stats: SignalStats,
}

impl fmt::Debug for BackChannelLogout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackChannelLogout")
            .field("issuers", &self.inner.validator.issuers)
            .field("max_age_secs", &self.inner.validator.max_age_secs)
            .finish_non_exhaustive()
    }
}

impl BackChannelLogout {
    /// Starts a builder.
    pub fn builder() -> BackChannelLogoutBuilder {
        BackChannelLogoutBuilder {
            issuers: Vec::new(),
            publisher: None,
            replay: None,
            clock: Arc::new(SystemClock),
            max_age: Duration::from_secs(300),
            leeway: Duration::from_secs(30),
            stats: SignalStats::new(),
        }
    }

    /// What this receiver has received, applied and refused.
    pub fn stats(&self) -> &SignalStats {
        &self.inner.stats
    }

    async fn handle<B>(self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let inner = &*self.inner;
        inner.stats.received();
        let answer = self.receive(request).await;
        match &answer {
            Ok(_) => inner.stats.applied(),
            Err(Refusal::Replayed) => inner.stats.replayed(),
            Err(Refusal::Unavailable) => inner.stats.unavailable(),
            Err(_) => inner.stats.invalid(),
        }
        match answer {
            Ok(()) => response::ok(),
            Err(refusal) => refusal.response(),
        }
    }

    async fn receive<B>(&self, request: Request<B>) -> Result<(), Refusal>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let inner = &*self.inner;
        if request.method() != Method::POST {
            return Err(Refusal::Method);
        }
        if !has_media_type(request.headers(), "application/x-www-form-urlencoded") {
            return Err(Refusal::Invalid(
                "content type must be application/x-www-form-urlencoded",
            ));
        }
        let body = read_body(request.into_body()).await?;
        let token = logout_token(&body)?;
        let now = inner.clock.now();
        let (logout, issuer) = inner
            .validator
            .validate(&token, now.as_secs())
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e, "back-channel logout refused");
                Refusal::Invalid(e.description())
            })?;
        self.publish(&logout, issuer, now).await
    }

    /// Spends the `jti`, then publishes the cutoff; a failure gives the `jti` back.
    async fn publish(
        &self,
        logout: &LogoutToken,
        issuer: &LogoutIssuer,
        now: UnixMillis,
    ) -> Result<(), Refusal> {
        let inner = &*self.inner;
        let validator = &inner.validator;
        // Kept until the token can no longer pass the freshness check.
        let until = UnixMillis::from_secs(
            logout
                .issued_at
                .saturating_add(validator.max_age_secs)
                .saturating_add(validator.leeway_secs)
                .saturating_add(1),
        );
        let event = logout.event(issuer.revoke);
        match inner
            .replay
            .first_use(&logout.issuer, &logout.jti, now, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(issuer = %logout.issuer, "back-channel logout refused: jti replayed");
                return Err(Refusal::Replayed);
            }
            Err(e) => {
                // A valid logout whose replay cannot be ruled out (the guard's store is away,
                // most likely with the publisher's): applied wherever the publisher still can
                // (this process's index), which fails closed; the provider is told to send it
                // again. Applying a cutoff twice changes nothing, so a replay could not harm.
                let _ = inner.publisher.publish(std::slice::from_ref(&event)).await;
                tracing::error!(
                    error = %e,
                    issuer = %logout.issuer,
                    "back-channel logout: cannot check for a replay; answered 400 so that the \
                     provider may retry"
                );
                return Err(Refusal::Unavailable);
            }
        }
        if let Err(e) = inner.publisher.publish(std::slice::from_ref(&event)).await {
            tracing::error!(
                error = %e,
                issuer = %logout.issuer,
                "back-channel logout not published; answered 400 so that the provider may retry"
            );
            inner.replay.forget(&logout.issuer, &logout.jti).await;
            return Err(Refusal::Unavailable);
        }
        tracing::info!(
            issuer = %logout.issuer,
            scope = event.as_cutoff().map_or("", |(_, scope, _)| scope.kind()),
            "back-channel logout applied"
        );
        Ok(())
    }
}

impl<B> Service<Request<B>> for BackChannelLogout
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// Why a request was not a published logout.
enum Refusal {
    Method,
    TooLarge,
    Slow,
    Invalid(&'static str),
    Replayed,
    Unavailable,
}

impl Refusal {
    fn response(self) -> Response<Full<Bytes>> {
        let invalid =
            |description| response::error(StatusCode::BAD_REQUEST, "invalid_request", description);
        match self {
            Refusal::Method => response::method_not_allowed(),
            Refusal::TooLarge => response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "request body too large",
            ),
            Refusal::Slow => response::error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the request body did not arrive in time",
            ),
            Refusal::Invalid(description) => invalid(description),
            Refusal::Replayed => invalid("logout token already used"),
            // §2.8: a logout that failed is a 400 too.
            Refusal::Unavailable => response::error(
                StatusCode::BAD_REQUEST,
                "temporarily_unavailable",
                "the logout could not be recorded; send it again",
            ),
        }
    }
}

async fn read_body<B>(body: B) -> Result<Bytes, Refusal>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    read_bounded(body, MAX_BODY).await.map_err(|e| match e {
        BodyError::Slow => Refusal::Slow,
        BodyError::TooLarge => Refusal::TooLarge,
        BodyError::Unreadable => Refusal::Invalid("the request body could not be read"),
    })
}

/// The one `logout_token` parameter of the form.
fn logout_token(body: &[u8]) -> Result<String, Refusal> {
    let mut token = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == "logout_token" && token.replace(value).is_some() {
            return Err(Refusal::Invalid("logout_token was sent more than once"));
        }
    }
    match token {
        Some(token) if !token.is_empty() => Ok(token.into_owned()),
        _ => Err(Refusal::Invalid("logout_token is missing")),
    }
}

/// Why a [`BackChannelLogoutBuilder`] could not build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot build the back-channel logout receiver: {}",
            self.0
        )
    }
}

impl std::error::Error for BuildError {}

/// Builds a [`BackChannelLogout`]: at least one issuer and a publisher are required.
#[must_use]
pub struct BackChannelLogoutBuilder {
    issuers: Vec<LogoutIssuer>,
    publisher: Option<Box<dyn Publish>>,
    replay: Option<Box<dyn ReplayGuard>>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    leeway: Duration,
    stats: SignalStats,
}

impl fmt::Debug for BackChannelLogoutBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackChannelLogoutBuilder")
            .field("issuers", &self.issuers)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl BackChannelLogoutBuilder {
    /// Accepts logout tokens of this provider. Each issuer may appear once.
    pub fn issuer(mut self, issuer: LogoutIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Where the cutoffs go before the receiver answers `200`. Required.
    pub fn publisher(mut self, publisher: impl Publish) -> Self {
        self.publisher = Some(Box::new(publisher));
        self
    }

    /// Replay protection (default: a [`MemoryReplayGuard`] of this receiver's own).
    pub fn replay_guard(mut self, guard: impl ReplayGuard) -> Self {
        self.replay = Some(Box::new(guard));
        self
    }

    /// How old a logout token may be (its `iat`), default 5 minutes.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Clock skew tolerated on `iat` and `exp`, default 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counters to report into (default: the receiver's own, see [`BackChannelLogout::stats`]).
    pub fn stats(mut self, stats: SignalStats) -> Self {
        self.stats = stats;
        self
    }

    /// Builds the receiver.
    pub fn build(self) -> Result<BackChannelLogout, BuildError> {
        if self.issuers.is_empty() {
            return Err(BuildError("at least one issuer is required".into()));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            if issuer.issuer.is_empty() || issuer.client_id.is_empty() {
                return Err(BuildError(
                    "an issuer and its client id must not be empty".into(),
                ));
            }
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                return Err(BuildError(format!(
                    "the issuer {} is configured twice",
                    issuer.issuer
                )));
            }
            if issuer.algorithms.is_empty() {
                return Err(BuildError(format!(
                    "the issuer {} allows no algorithm",
                    issuer.issuer
                )));
            }
        }
        let publisher = self
            .publisher
            .ok_or_else(|| BuildError("a publisher is required".into()))?;
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(BackChannelLogout {
            inner: Arc::new(Inner {
                validator: Validator {
                    issuers: self.issuers,
                    max_age_secs: secs(self.max_age),
                    leeway_secs: secs(self.leeway),
                },
                publisher,
                replay: self
                    .replay
                    .unwrap_or_else(|| Box::new(MemoryReplayGuard::new())),
                clock: self.clock,
                stats: self.stats,
            }),
        })
    }
}
