//! Verification keys fetched from an issuer's JWKS URL and kept fresh in the background, for
//! validators whose tokens are signed by another process.
//!
//! A [`RemoteJwks`] owns a task on the tokio runtime it was built on. The task fetches the
//! document at once, then every `refresh_interval`. A failed fetch (issuer down, timeout, non-200
//! answer, a body that is not a JWKS or is over 1 MiB) keeps the last good keys and is retried
//! sooner than the next refresh, with a backoff from 1 s up to the refresh interval.
//!
//! When a token names a `kid` the verifier does not know (the issuer has just rotated), the
//! verifier asks for an early fetch and waits for it. Concurrent requests share one fetch, and at
//! most one fetch starts per `min_refetch_interval`: tokens with made-up `kid`s cannot turn the
//! validator into a load generator against the issuer.
//!
//! The task stops when the last clone of the [`RemoteJwks`] is dropped.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tollgate_layer::RemoteJwks;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jwks = RemoteJwks::builder("https://issuer.example/.well-known/jwks.json".parse()?)
//!     .refresh_interval(Duration::from_secs(600))
//!     .build()?;
//! // Hand `jwks` to the verifier. The keys fill in once the first fetch has answered.
//! let _ = jwks.keys().find(Some("2026-11"));
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::runtime::TryCurrentError;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tollgate_core::{KeySet, VerifyingKey};

/// A JWKS document is a few KiB; the cap keeps a broken or hostile endpoint from making the
/// validator buffer without bound.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The first retry after a failed fetch; later ones double, up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// Keys fetched from an issuer's JWKS URL and kept fresh in the background.
///
/// Cloning is cheap: clones share the keys and the refresh task, which stops when the last clone
/// is dropped.
#[derive(Clone, Debug)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: KeySet,
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the handles and the refresh task share. The task holds this, never [`Inner`], so that
/// dropping the last handle is what stops the task.
#[derive(Debug)]
struct Shared {
    /// Woken after every fetch attempt, successful or not.
    fetched: Arc<Notify>,
    /// Wakes the task for an early fetch.
    wake: Notify,
    state: Mutex<FetchState>,
    min_refetch_interval: Duration,
    /// Fetches that installed keys, and fetches that failed (for metrics).
    fetched_ok: AtomicU64,
    fetched_failed: AtomicU64,
}

/// How many fetches a [`RemoteJwks`] has made since it was built, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchCounts {
    /// Fetches whose document was installed as the key set.
    pub succeeded: u64,
    /// Fetches that failed (the previous keys were kept).
    pub failed: u64,
}

#[derive(Debug)]
struct FetchState {
    /// A fetch is running, or has been requested and not finished yet.
    fetching: bool,
    /// An early fetch was requested and the task has not started it yet. A wake-up that finds
    /// this unset is stale (the request was served by a periodic fetch that began meanwhile).
    requested: bool,
    last_started: Instant,
    /// The refresh task has ended: no fetch will ever come.
    stopped: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, FetchState> {
        // Nothing panics while holding the lock, and the state stays consistent field by field.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the next periodic fetch is due (`delay` from now) or an early fetch is
    /// requested, then marks a fetch as started.
    async fn wait_for_turn(&self, delay: Duration) {
        let mut due = std::pin::pin!(tokio::time::sleep(delay));
        loop {
            tokio::select! {
                () = &mut due => {
                    self.start(false);
                    return;
                }
                () = self.wake.notified() => {
                    if self.start(true) {
                        return;
                    }
                }
            }
        }
    }

    /// Records that a fetch begins. With `only_if_requested`, does nothing (and returns false)
    /// unless an early fetch is pending.
    fn start(&self, only_if_requested: bool) -> bool {
        let mut state = self.state();
        if only_if_requested && !state.requested {
            return false;
        }
        state.fetching = true;
        state.requested = false;
        state.last_started = Instant::now();
        true
    }

    fn finish(&self) {
        self.state().fetching = false;
        // After the flag is cleared: a `refetch` that saw it set holds a notification created
        // before this call, so it is woken here.
        self.fetched.notify_waiters();
    }
}

/// Dropped with the refresh task's future, whether the task was aborted by the last handle or
/// its runtime shut down, possibly in the middle of a fetch or before it ever ran: the waiters of that fetch must not
/// wait for a notification that will never come, and later `refetch` calls must not either.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.stopped = true;
            state.fetching = false;
        }
        self.0.fetched.notify_waiters();
    }
}

/// Configures a [`RemoteJwks`].
#[derive(Clone, Debug)]
pub struct RemoteJwksBuilder {
    uri: Uri,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    request_timeout: Duration,
}

/// Why a [`RemoteJwks`] could not be built.
#[derive(Debug)]
pub struct RemoteJwksError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    NoScheme,
    UnsupportedScheme(String),
    HttpsNeedsRustls,
    NoHost,
    ZeroDuration(&'static str),
    NoRuntime(TryCurrentError),
    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    Tls(String),
    Discovery(String),
}

impl fmt::Display for RemoteJwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::NoScheme => {
                f.write_str("JWKS URL is not absolute (use an http or https URL)")
            }
            ErrorKind::UnsupportedScheme(scheme) => {
                write!(
                    f,
                    "JWKS URL scheme {scheme:?} is not supported (use http or https)"
                )
            }
            ErrorKind::HttpsNeedsRustls => {
                f.write_str("https JWKS URLs need the `rustls` feature of tollgate-layer")
            }
            ErrorKind::NoHost => f.write_str("JWKS URL has no host"),
            ErrorKind::ZeroDuration(setting) => write!(f, "{setting} must be greater than zero"),
            ErrorKind::NoRuntime(_) => f.write_str(
                "RemoteJwksBuilder::build must be called within a tokio runtime (it spawns the \
                 refresh task)",
            ),
            ErrorKind::Tls(e) => write!(f, "cannot set up TLS for the JWKS client: {e}"),
            ErrorKind::Discovery(e) => write!(f, "OpenID Connect discovery failed: {e}"),
        }
    }
}

impl Error for RemoteJwksError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            ErrorKind::NoRuntime(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ErrorKind> for RemoteJwksError {
    fn from(kind: ErrorKind) -> Self {
        RemoteJwksError { kind }
    }
}

impl RemoteJwks {
    /// Starts configuring a fetcher for the JWKS document at `uri` (`http` or `https`).
    pub fn builder(uri: Uri) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            uri,
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The keys as last fetched: a verification-only key set, empty until the first successful
    /// fetch. The returned set is live (later fetches replace its keys), so it may be cloned and
    /// kept.
    pub fn keys(&self) -> &KeySet {
        &self.inner.keys
    }

    /// How many fetches succeeded and failed since this fetcher was built.
    pub fn fetch_counts(&self) -> FetchCounts {
        let shared = &self.inner.shared;
        FetchCounts {
            succeeded: shared.fetched_ok.load(Ordering::Relaxed),
            failed: shared.fetched_failed.load(Ordering::Relaxed),
        }
    }

    /// Reads an OpenID Connect discovery document (`.../.well-known/openid-configuration`, or
    /// RFC 8414's `oauth-authorization-server`) and starts a builder for its `jwks_uri`.
    ///
    /// The document's `issuer` must equal `issuer` (OpenID Connect Discovery §4.3): a document
    /// that names another issuer is refused rather than trusted for its keys. The document is
    /// read once, with the same limits as a JWKS fetch (5 s, 1 MiB).
    pub async fn discover(
        discovery: Uri,
        issuer: &str,
    ) -> Result<RemoteJwksBuilder, RemoteJwksError> {
        check_uri(&discovery)?;
        let source = JwksSource {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .build(connector()?),
            uri: discovery,
            timeout: Duration::from_secs(5),
        };
        let body = tokio::time::timeout(source.timeout, source.download())
            .await
            .map_err(|_| FetchError::TimedOut(source.timeout))
            .and_then(|r| r)
            .map_err(|e| ErrorKind::Discovery(e.to_string()))?;
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let document: Discovery = serde_json::from_slice(&body).map_err(|e| {
            ErrorKind::Discovery(format!(
                "not a discovery document with issuer and jwks_uri: {e}"
            ))
        })?;
        if document.issuer != issuer {
            return Err(ErrorKind::Discovery(format!(
                "the document names issuer {:?}, not the configured {issuer:?}",
                document.issuer
            ))
            .into());
        }
        let jwks: Uri = document
            .jwks_uri
            .parse()
            .map_err(|e| ErrorKind::Discovery(format!("jwks_uri is not a URL: {e}")))?;
        check_uri(&jwks)?;
        Ok(RemoteJwks::builder(jwks))
    }

    /// Asks for an early fetch because a token named a `kid` that [`keys`](Self::keys) lacks (the
    /// Verifier does so for access tokens, a back-channel logout receiver for logout tokens).
    ///
    /// Returns a notification, fired once the fetch has finished (successfully or not), when a
    /// fetch is under way: started by this call, or already running (calls never start a second
    /// concurrent fetch). Returns `None` when a fetch started less than `min_refetch_interval`
    /// ago, or when the refresh task is gone (its runtime shut down): the caller should reject
    /// the token at once.
    pub fn refetch(&self) -> Option<OwnedNotified> {
        let shared = &self.inner.shared;
        // Created before the fetch can possibly finish, so that its `notify_waiters` reaches us.
        let done = Arc::clone(&shared.fetched).notified_owned();
        let mut state = shared.state();
        if state.stopped {
            return None;
        }
        if !state.fetching {
            let now = Instant::now();
            if now.duration_since(state.last_started) < shared.min_refetch_interval {
                return None;
            }
            state.fetching = true;
            state.requested = true;
            state.last_started = now;
            shared.wake.notify_one();
        }
        Some(done)
    }
}

impl RemoteJwksBuilder {
    /// How often the document is fetched when nothing goes wrong. Default: 5 minutes.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between the start of one fetch and an early fetch asked for by a token with
    /// an unknown `kid`. Default: 30 seconds.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// The time one fetch may take, from connecting to the end of the body. Default: 5 seconds.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Checks the configuration and spawns the refresh task on the current tokio runtime; the
    /// first fetch starts at once.
    ///
    /// Fails if the URL is not an absolute `http` or `https` URL (`https` needs the `rustls`
    /// feature), if `refresh_interval` or `request_timeout` is zero, or if there is no current
    /// tokio runtime.
    pub fn build(self) -> Result<RemoteJwks, RemoteJwksError> {
        check_uri(&self.uri)?;
        if self.refresh_interval.is_zero() {
            return Err(ErrorKind::ZeroDuration("refresh_interval").into());
        }
        if self.request_timeout.is_zero() {
            return Err(ErrorKind::ZeroDuration("request_timeout").into());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(ErrorKind::NoRuntime)?;

        let keys = KeySet::new();
        let shared = Arc::new(Shared {
            fetched: Arc::new(Notify::new()),
            wake: Notify::new(),
            // The first fetch counts as under way from now: early `refetch` calls wait for it
            // instead of asking for another.
            state: Mutex::new(FetchState {
                fetching: true,
                requested: false,
                last_started: Instant::now(),
                stopped: false,
            }),
            min_refetch_interval: self.min_refetch_interval,
            fetched_ok: AtomicU64::new(0),
            fetched_failed: AtomicU64::new(0),
        });
        let connector = connector()?;
        let source = JwksSource {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .build(connector),
            uri: self.uri,
            timeout: self.request_timeout,
        };
        let task = runtime
            .spawn(refresh(
                // Built here rather than in the task, so that it also runs if the runtime drops
                // the task before ever polling it.
                StopGuard(Arc::clone(&shared)),
                keys.clone(),
                source,
                self.refresh_interval,
            ))
            .abort_handle();
        Ok(RemoteJwks {
            inner: Arc::new(Inner { keys, shared, task }),
        })
    }
}

fn check_uri(uri: &Uri) -> Result<(), ErrorKind> {
    match uri.scheme_str() {
        None => return Err(ErrorKind::NoScheme),
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) if s.eq_ignore_ascii_case("https") => {
            if cfg!(not(feature = "rustls")) {
                return Err(ErrorKind::HttpsNeedsRustls);
            }
        }
        Some(s) => return Err(ErrorKind::UnsupportedScheme(s.to_owned())),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(ErrorKind::NoHost),
    }
}

/// The provider is named explicitly: `with_webpki_roots()` would panic if the final binary
/// enabled both of rustls's crypto backends and installed no default.
#[cfg(feature = "rustls")]
fn connector() -> Result<Connector, ErrorKind> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| ErrorKind::Tls(e.to_string()))?;
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

#[cfg(not(feature = "rustls"))]
fn connector() -> Result<Connector, ErrorKind> {
    Ok(HttpConnector::new())
}

/// The refresh task: fetch, install, sleep (or wait for an early request), repeat. It runs until
/// the last handle's drop aborts it, or its runtime shuts down.
async fn refresh(stop: StopGuard, keys: KeySet, source: JwksSource, refresh_interval: Duration) {
    let shared = &stop.0;
    let first_retry = FIRST_RETRY.min(refresh_interval);
    let mut retry = first_retry;
    let mut delay = Duration::ZERO;
    loop {
        shared.wait_for_turn(delay).await;
        let outcome = source.fetch().await.and_then(|fetched| {
            keys.replace_verifying_keys(fetched)
                .map_err(FetchError::Keys)
        });
        delay = match outcome {
            Ok(()) => {
                shared.fetched_ok.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(uri = %source.uri, kids = ?keys.kids(), "fetched JWKS");
                retry = first_retry;
                refresh_interval
            }
            Err(error) => {
                shared.fetched_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    uri = %source.uri,
                    %error,
                    retry_in = ?retry,
                    "JWKS fetch failed; keeping the previous keys",
                );
                let delay = retry;
                retry = retry.saturating_mul(2).min(refresh_interval);
                delay
            }
        };
        // Only now, so that woken waiters look the kid up in the new keys.
        shared.finish();
    }
}

struct JwksSource {
    client: Client<Connector, Empty<Bytes>>,
    uri: Uri,
    timeout: Duration,
}

impl JwksSource {
    /// One fetch: the usable keys of the document, or why there are none.
    async fn fetch(&self) -> Result<Vec<VerifyingKey>, FetchError> {
        let body = tokio::time::timeout(self.timeout, self.download())
            .await
            .map_err(|_| FetchError::TimedOut(self.timeout))??;
        usable_keys(&body)
    }

    async fn download(&self) -> Result<Bytes, FetchError> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        let response = self
            .client
            .request(request)
            .await
            .map_err(FetchError::Request)?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let collected = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    FetchError::TooLarge
                } else {
                    FetchError::Body(e)
                }
            })?;
        Ok(collected.to_bytes())
    }
}

/// The document's outer shape. Keys are parsed one by one so that one key of a kind this
/// version cannot represent (a new `kty`, `crv` or `alg`) does not make the others unusable.
#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// Parses a JWKS document, skipping (and logging) the keys that cannot be used for verification.
fn usable_keys(body: &[u8]) -> Result<Vec<VerifyingKey>, FetchError> {
    let document: JwksDocument = serde_json::from_slice(body).map_err(FetchError::NotJwks)?;
    let offered = document.keys.len();
    let mut usable: Vec<VerifyingKey> = Vec::with_capacity(offered);
    for value in document.keys {
        let Some(key) = verifying_key(value) else {
            continue;
        };
        // The first key wins: trusting both would make the choice depend on list order later.
        if usable.iter().any(|k| k.kid() == key.kid()) {
            tracing::warn!(
                kid = key.kid(),
                "skipping a JWK whose kid is already in the set"
            );
            continue;
        }
        usable.push(key);
    }
    if usable.is_empty() {
        return Err(FetchError::NoUsableKey { offered });
    }
    Ok(usable)
}

fn verifying_key(value: serde_json::Value) -> Option<VerifyingKey> {
    let jwk: Jwk = match Jwk::deserialize(&value) {
        Ok(jwk) => jwk,
        Err(_) => {
            // The parse error may quote member values; these names are never key material.
            let member = |name| value.get(name).and_then(serde_json::Value::as_str);
            tracing::warn!(
                kid = member("kid"),
                kty = member("kty"),
                crv = member("crv"),
                alg = member("alg"),
                "skipping a JWK this version cannot parse",
            );
            return None;
        }
    };
    match VerifyingKey::from_jwk(&jwk) {
        Ok(key) => Some(key),
        Err(error) => {
            // `KeyError` names the kid and a fixed reason, never the key itself.
            tracing::warn!(%error, "skipping an unusable JWK");
            None
        }
    }
}

/// Why a fetch produced no new keys.
#[derive(Debug)]
enum FetchError {
    Request(hyper_util::client::legacy::Error),
    TimedOut(Duration),
    Status(StatusCode),
    TooLarge,
    Body(Box<dyn Error + Send + Sync>),
    NotJwks(serde_json::Error),
    NoUsableKey { offered: usize },
    Keys(tollgate_core::KeyError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Request(e) => {
                // hyper-util's own message is only the error kind; the cause is in the chain.
                write!(f, "request failed: {e}")?;
                let mut source = e.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
            FetchError::TimedOut(limit) => write!(f, "no complete answer within {limit:?}"),
            FetchError::Status(status) => write!(f, "issuer answered {status}, expected 200 OK"),
            FetchError::TooLarge => write!(f, "body larger than {MAX_DOCUMENT_BYTES} bytes"),
            FetchError::Body(e) => write!(f, "reading the body failed: {e}"),
            FetchError::NotJwks(e) => write!(f, "body is not a JWKS document: {e}"),
            FetchError::NoUsableKey { offered } => {
                write!(f, "none of the document's {offered} keys is usable")
            }
            FetchError::Keys(e) => write!(f, "keys refused: {e}"),
        }
    }
}
