//! [`TokenService`]: the tower `Service` that routes requests to the endpoints, and its builder.

use crate::batch;
use crate::directory::{Clients, Users};
use crate::form::{Form, read_body};
use crate::introspect;
use crate::issuer::{BuildError, Lifetimes, Shared, defaults, system_clock};
use crate::live::LiveTokens;
use crate::metadata::{self, paths};
use crate::response::{self, Failure, ResponseBody, ServerPluginError};
use crate::revoke;
use crate::secret::Hasher;
use crate::store::Store;
use crate::throttle::LoginThrottle;
use crate::token_endpoint;
use http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tollgate_core::{Clock, KeySet, RevocationIndex};
use tollgate_layer::{
    DefaultRejection, OnRejection, Rejection, ValidateBearer, ValidateBearerLayer, VerifiedClaims,
    Verifier,
};
use tower_layer::Layer;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future of [`TokenService`] (boxed: endpoints await the store and the password hasher).
pub type TokenServiceFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static>>;

/// How a Layer in front of one of the service's endpoints shapes its rejections.
type RejectionFn = fn(&Rejection, &HeaderMap) -> Response<ResponseBody>;

/// The OAuth 2.0 token service: `/connect/token`, `/connect/revocation`, `/connect/introspect`,
/// `/connect/userinfo`, discovery, JWKS, and the Identity APIs' revocation endpoints.
///
/// A tower `Service<Request<B>>` that never fails (errors are responses) and is always ready;
/// clones share all state. Mount it at the root of an app (for axum, as the router's fallback
/// service or with `route_service` per path) beside the app's own routes, and give the app's
/// [`ValidateBearerLayer`] the same [`RevocationIndex`] and [`KeySet`]: a revocation answered
/// `200` is then enforced by that Layer before the `200` is sent.
#[derive(Clone)]
pub struct TokenService {
    shared: Arc<Shared>,
    admin: ValidateBearer<Protected, RejectionFn>,
    userinfo: ValidateBearer<Protected, RejectionFn>,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl TokenService {
    /// Starts a builder.
    pub fn builder() -> TokenServiceBuilder {
        TokenServiceBuilder {
            issuer: None,
            audience: Vec::new(),
            keys: None,
            index: None,
            store: None,
            clients: None,
            users: None,
            clock: system_clock(),
            lifetimes: Lifetimes {
                access_default: defaults::ACCESS_TOKEN_LIFETIME,
                access_max: defaults::MAX_ACCESS_TOKEN_LIFETIME,
                refresh: defaults::REFRESH_TOKEN_LIFETIME,
            },
            admin_role: "admin".into(),
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// The revocation index the service feeds; share it with the app's Layer.
    pub fn index(&self) -> &Arc<RevocationIndex> {
        &self.shared.index
    }

    /// The keys the service signs with; share them with the app's Layer.
    pub fn keys(&self) -> &KeySet {
        &self.shared.keys
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The default audience of the tokens (`aud`).
    pub fn audience(&self) -> &[String] {
        &self.shared.audience
    }

    /// Live (access, refresh) tokens currently tracked.
    pub fn live_tokens(&self) -> (usize, usize) {
        self.shared.live.len()
    }

    /// Forgets expired tokens, revocations and throttle records (in memory and in the store).
    pub async fn purge(&self) -> Result<(), crate::StoreError> {
        self.shared.purge().await
    }

    /// Purges every `every` on the current Tokio runtime until the returned handle is aborted.
    pub fn spawn_purge(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = shared.purge().await {
                    tracing::warn!(error = %e, "purge failed; will retry");
                }
            }
        })
    }

    /// Makes everything written so far durable (call on shutdown).
    pub async fn flush(&self) -> Result<(), crate::StoreError> {
        self.shared.store.flush().await
    }
}

/// Builds a [`TokenService`]: issuer, keys, store, clients and users are required.
#[must_use]
pub struct TokenServiceBuilder {
    issuer: Option<String>,
    audience: Vec<String>,
    keys: Option<KeySet>,
    index: Option<Arc<RevocationIndex>>,
    store: Option<Arc<dyn Store>>,
    clients: Option<Arc<dyn Clients>>,
    users: Option<Arc<dyn Users>>,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    admin_role: String,
    hash_concurrency: usize,
}

impl fmt::Debug for TokenServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServiceBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetimes", &self.lifetimes)
            .field("admin_role", &self.admin_role)
            .finish_non_exhaustive()
    }
}

impl TokenServiceBuilder {
    /// The issuer URL, `iss` of every token (required).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Adds a default audience (`aud`) for clients that name none; defaults to the issuer URL.
    /// The admin API accepts only tokens for these audiences.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// The keys to sign with (required; must hold a signing key).
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The revocation index to feed; a new one when not set.
    pub fn revocation_index(mut self, index: Arc<RevocationIndex>) -> Self {
        self.index = Some(index);
        self
    }

    /// Durable storage (required): [`SqliteStore`](crate::SqliteStore), or
    /// [`MemoryStore`](crate::MemoryStore) by explicit choice.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The registered clients (required).
    pub fn clients(mut self, clients: Arc<dyn Clients>) -> Self {
        self.clients = Some(clients);
        self
    }

    /// The users of the password grant (required).
    pub fn users(mut self, users: Arc<dyn Users>) -> Self {
        self.users = Some(users);
        self
    }

    /// The clock (tests use a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Access-token lifetime when the request names none (default 5 minutes).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.access_default = lifetime;
        self
    }

    /// The longest access-token lifetime any client may ask for (default 1 hour).
    pub fn max_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.access_max = lifetime;
        self
    }

    /// Refresh-token lifetime (default 14 days); each rotation issues a token with a full lifetime.
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.refresh = lifetime;
        self
    }

    /// The role the batch-revocation API requires (default `admin`).
    pub fn admin_role(mut self, role: impl Into<String>) -> Self {
        self.admin_role = role.into();
        self
    }

    /// How many password hashes may be verified at once (default: one per CPU).
    pub fn password_hash_concurrency(mut self, limit: usize) -> Self {
        self.hash_concurrency = limit;
        self
    }

    /// Loads the store's live state into the index and builds the service.
    pub async fn build(self) -> Result<TokenService, BuildError> {
        let missing = |what: &str| BuildError::new(format!("{what} is required"));
        let issuer = self.issuer.ok_or_else(|| missing("issuer"))?;
        let keys = self.keys.ok_or_else(|| missing("keys"))?;
        if keys.signing_key().is_none() {
            return Err(BuildError::new("the key set holds no signing key"));
        }
        let store = self.store.ok_or_else(|| missing("store"))?;
        let clients = self.clients.ok_or_else(|| missing("clients"))?;
        let users = self.users.ok_or_else(|| missing("users"))?;
        let index = self.index.unwrap_or_default();
        let audience = if self.audience.is_empty() {
            vec![issuer.clone()]
        } else {
            self.audience
        };
        let l = self.lifetimes;
        if l.access_default.is_zero() || l.access_max.is_zero() || l.refresh.is_zero() {
            return Err(BuildError::new("token lifetimes must be positive"));
        }
        let verifier = |audiences: Option<&[String]>| {
            let mut builder = Verifier::builder()
                .issuer(issuer.clone())
                .keys(keys.clone())
                .revocation_index(index.clone())
                .clock(self.clock.clone());
            builder = match audiences {
                None => builder.any_audience(),
                Some(all) => all.iter().fold(builder, |b, a| b.audience(a.clone())),
            };
            builder.build().map_err(|e| BuildError::new(e.to_string()))
        };
        let any_audience = verifier(None)?;
        let admin_verifier = verifier(Some(&audience))?;
        let hasher = Hasher::new(self.hash_concurrency)
            .map_err(|e| BuildError::new(format!("cannot prepare the password hasher: {e}")))?;
        let shared = Arc::new(Shared {
            issuer,
            audience,
            keys,
            index,
            store,
            clients,
            users,
            clock: self.clock,
            lifetimes: l,
            admin_role: self.admin_role,
            hasher,
            throttle: LoginThrottle::default(),
            live: LiveTokens::default(),
            verifier: any_audience.clone(),
            issue_gate: tokio::sync::RwLock::new(()),
            revocation_gate: tokio::sync::RwLock::new(()),
        });
        shared
            .load()
            .await
            .map_err(|e| BuildError::new(format!("cannot load state: {e}")))?;
        let protected = |endpoint| Protected {
            shared: shared.clone(),
            endpoint,
        };
        let admin = ValidateBearerLayer::new(admin_verifier)
            .on_rejection(plugin_rejection as RejectionFn)
            .layer(protected(ProtectedEndpoint::BatchRevocation));
        let userinfo = ValidateBearerLayer::new(any_audience)
            .on_rejection(userinfo_rejection as RejectionFn)
            .layer(protected(ProtectedEndpoint::Userinfo));
        Ok(TokenService {
            shared,
            admin,
            userinfo,
        })
    }
}

/// The userinfo Layer's RFC 6750 rejection, with `Cache-Control: no-store` like every error of the
/// service.
fn userinfo_rejection(rejection: &Rejection, headers: &HeaderMap) -> Response<ResponseBody> {
    let mut response: Response<ResponseBody> =
        DefaultRejection::default().on_rejection(rejection, headers);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// 401 from the admin API's Layer, as a `ServerPluginError` with an RFC 6750 challenge.
///
/// Always 401, even where the Layer's own answer is 400 (another scheme, two `Authorization`
/// headers): the Identity API promises 401 for a missing or invalid credential.
fn plugin_rejection(rejection: &Rejection, _headers: &HeaderMap) -> Response<ResponseBody> {
    let code = rejection.error_code().unwrap_or("unauthorized");
    let mut response = response::json(
        StatusCode::UNAUTHORIZED,
        &ServerPluginError::new(code, rejection.description()),
    );
    let challenge = match rejection.error_code() {
        Some(code) => format!(
            "Bearer realm=\"tollgate\", error=\"{code}\", error_description=\"{}\"",
            rejection.description()
        ),
        None => "Bearer realm=\"tollgate\"".to_owned(),
    };
    if let Ok(value) = HeaderValue::try_from(challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

#[derive(Debug, Clone, Copy)]
enum ProtectedEndpoint {
    Userinfo,
    BatchRevocation,
}

/// The endpoints behind tollgate's own Layer; they find the verified claims in the extensions.
#[derive(Clone)]
struct Protected {
    shared: Arc<Shared>,
    endpoint: ProtectedEndpoint,
}

impl<B> Service<Request<B>> for Protected
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = TokenServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let endpoint = self.endpoint;
        Box::pin(async move {
            let Some(claims) = request.extensions().get::<VerifiedClaims>().cloned() else {
                // The Layer in front always inserts claims; without them, fail closed.
                return Ok(Failure::internal().into_plugin_error());
            };
            Ok(match endpoint {
                ProtectedEndpoint::Userinfo => metadata::userinfo(&shared, &claims).await,
                ProtectedEndpoint::BatchRevocation => {
                    if !claims.has_role(&shared.admin_role) {
                        return Ok(batch::forbidden().into_plugin_error());
                    }
                    let body = match read_body(request.into_body()).await {
                        Ok(body) => body,
                        Err(failure) => return Ok(failure.into_plugin_error()),
                    };
                    // Detached, like the form endpoints: a cutoff on disk is always applied.
                    tokio::spawn(async move { batch::handle(shared, &body).await })
                        .await
                        .unwrap_or_else(|_| Err(Failure::internal()))
                        .unwrap_or_else(Failure::into_plugin_error)
                }
            })
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum FormEndpoint {
    Token,
    Revocation,
    ApiRevoke,
    Introspection,
}

impl<B> Service<Request<B>> for TokenService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = TokenServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let form_endpoint = match request.uri().path() {
            paths::TOKEN => Some(FormEndpoint::Token),
            paths::REVOCATION => Some(FormEndpoint::Revocation),
            paths::API_REVOKE => Some(FormEndpoint::ApiRevoke),
            paths::INTROSPECTION => Some(FormEndpoint::Introspection),
            _ => None,
        };
        if let Some(endpoint) = form_endpoint {
            let shared = self.shared.clone();
            // Detached: once a request has started changing state (a revocation committed, a
            // refresh token rotated), a client that goes away must not cut it in half, e.g. leave
            // a revocation on disk but not yet in the index.
            return Box::pin(async move {
                Ok(
                    tokio::spawn(async move { form(&shared, endpoint, request).await })
                        .await
                        .unwrap_or_else(|_| Failure::internal().into_oauth()),
                )
            });
        }
        let shared = &self.shared;
        let ready = |response| -> TokenServiceFuture { Box::pin(std::future::ready(Ok(response))) };
        let get_only = request.method() == Method::GET || request.method() == Method::HEAD;
        match request.uri().path() {
            paths::BATCH_REVOCATION => {
                if request.method() != Method::POST {
                    return ready(Failure::method_not_allowed("POST").into_plugin_error());
                }
                call_protected(self.admin.clone(), with_reference_token(request))
            }
            paths::USERINFO => {
                if !(get_only || request.method() == Method::POST) {
                    return ready(Failure::method_not_allowed("GET, POST").into_oauth());
                }
                call_protected(self.userinfo.clone(), request)
            }
            paths::JWKS if get_only => ready(metadata::jwks(shared)),
            paths::OPENID_CONFIGURATION | paths::OAUTH_METADATA if get_only => {
                ready(response::public_json(&metadata::discovery(shared)))
            }
            paths::JWKS | paths::OPENID_CONFIGURATION | paths::OAUTH_METADATA => {
                ready(Failure::method_not_allowed("GET, HEAD").into_oauth())
            }
            _ => ready(response::not_found()),
        }
    }
}

fn call_protected<S, B>(mut service: S, request: Request<B>) -> TokenServiceFuture
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible> + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    Box::pin(async move {
        std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(request).await
    })
}

/// The Identity API also takes the admin token in a `Reference-Token` header: present it to the
/// Layer as a bearer credential when no `Authorization` header was sent.
fn with_reference_token<B>(mut request: Request<B>) -> Request<B> {
    if request.headers().contains_key(AUTHORIZATION) {
        return request;
    }
    let Some(token) = request.headers().get("reference-token") else {
        return request;
    };
    let token = token.as_bytes();
    let has_scheme = token.len() > 7 && token[..7].eq_ignore_ascii_case(b"bearer ");
    let value = if has_scheme {
        HeaderValue::from_bytes(token)
    } else {
        HeaderValue::from_bytes(&[b"Bearer ", token].concat())
    };
    if let Ok(value) = value {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    request
}

async fn form<B>(
    shared: &Shared,
    endpoint: FormEndpoint,
    request: Request<B>,
) -> Response<ResponseBody>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let outcome = async {
        if parts.method != Method::POST {
            return Err(Failure::method_not_allowed("POST"));
        }
        let body = read_body(body).await?;
        let form = Form::parse(&parts.headers, &body)?;
        match endpoint {
            FormEndpoint::Token => token_endpoint::handle(shared, &parts.headers, &form).await,
            FormEndpoint::Revocation => revoke::connect_revocation(shared, &parts.headers, &form)
                .await
                .map(|()| response::empty_ok()),
            FormEndpoint::ApiRevoke => revoke::api_revoke(shared, &parts.headers, &form)
                .await
                .map(|()| response::empty_ok()),
            FormEndpoint::Introspection => introspect::handle(shared, &parts.headers, &form).await,
        }
    }
    .await;
    match (outcome, endpoint) {
        (Ok(response), _) => response,
        (Err(failure), FormEndpoint::ApiRevoke) => failure.into_camel(),
        (Err(failure), _) => {
            if failure.status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(?endpoint, "internal error");
            }
            failure.into_oauth()
        }
    }
}
