//! The fixture of the contract tests: a `TokenService` on a real socket with a real store, the
//! clients and users it knows, an app behind a `ValidateBearerLayer` sharing its revocation index,
//! an HTTP client, and assertions for the error shapes of CONTRACT.md.
//!
//! Each endpoint's test file is its own test binary and uses part of this module.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "helpers of a test crate shared by several test binaries, each using part of them"
)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate_core::{Clock, KeySet, RevocationIndex, SigningAlgorithm, TenantPath, UnixMillis};
use tollgate_issuer::store::{Loaded, Outbox, Purge, Record, SharedStore, StoreFuture};
use tollgate_issuer::{
    Client, ClientSecret, GrantType, MemoryStore, PasswordHash, StaticDirectory, Store, StoreError,
    TokenService, User,
};
use tollgate_layer::{ValidateBearerLayer, VerifiedClaims, Verifier};
use tower::{Layer, ServiceExt};

/// Every user's password (one argon2 hash per test binary: hashing is slow in debug builds).
pub const PASSWORD: &str = "correct horse battery staple";

/// The argon2 hash of [`PASSWORD`], computed once.
fn password_hash() -> PasswordHash {
    static HASH: OnceLock<PasswordHash> = OnceLock::new();
    HASH.get_or_init(|| PasswordHash::hash(PASSWORD.as_bytes()).unwrap())
        .clone()
}

/// The secret of every client: `<id>-secret`.
pub fn secret_of(client: &str) -> String {
    format!("{client}-secret")
}

/// A client id and secret that both need form-urlencoding inside HTTP Basic (RFC 6749 §2.3.1).
pub const ODD_CLIENT: &str = "my client:1";
pub const ODD_SECRET: &str = "p:ss%&+ word";

fn client(
    id: &str,
    grants: &[GrantType],
    scopes: &[&str],
    edit: impl FnOnce(&mut Client),
) -> Client {
    let mut client = Client::new(id, ClientSecret::from_plaintext(&secret_of(id)))
        .with_grants(grants.iter().copied())
        .with_scopes(scopes.iter().copied());
    edit(&mut client);
    client
}

fn user(name: &str, subject: &str, tenants: &[&str], edit: impl FnOnce(&mut User)) -> User {
    let mut user = User::new(name, subject, password_hash())
        .with_tenants(tenants.iter().map(|t| TenantPath::parse(t).unwrap()))
        .with_roles(["user"]);
    edit(&mut user);
    user
}

/// The clients and users of every test.
///
/// * `web`, `web2`: password + refresh_token (two confidential apps of the same kind).
/// * `svc`, `svc2`: client_credentials only; `svc` has role `service`.
/// * `both`: client_credentials and refresh_token (yet never gets a refresh token).
/// * `short`: client_credentials with a 60 s maximum access-token lifetime.
/// * `admin`: client_credentials with role `admin` (the batch-revocation API's role).
/// * `rs`: a resource server allowed to introspect any token.
/// * `org-svc`: client_credentials, only in tenant `/Org`.
/// * `org-admin`: like `admin`, but only in tenant `/Org`.
/// * `oidc`: password grant with the OpenID Connect scopes `openid`, `profile`, `email`.
/// * `other-api`: password grant for tokens whose audience is `other-api`.
/// * [`ODD_CLIENT`]: client_credentials, with a secret that needs encoding.
///
/// Users (password [`PASSWORD`]): `alice` (root tenant), `bob` (`/Org`), `carol` (disabled),
/// `dave` (limited to `orders:read`), `erin` (`/Org` and `/Other`).
fn directory() -> Arc<StaticDirectory> {
    use GrantType::*;
    let app_scopes = ["orders:read", "orders:write", "profile"];
    let clients = [
        client("web", &[Password, RefreshToken], &app_scopes, |_| {}),
        client("web2", &[Password, RefreshToken], &app_scopes, |_| {}),
        client(
            "svc",
            &[ClientCredentials],
            &["orders:read", "reports"],
            |c| {
                c.roles = vec!["service".into()];
            },
        ),
        client("svc2", &[ClientCredentials], &["orders:read"], |_| {}),
        client(
            "both",
            &[ClientCredentials, RefreshToken],
            &["orders:read"],
            |_| {},
        ),
        client("short", &[ClientCredentials], &["orders:read"], |c| {
            c.max_access_token_lifetime = Some(Duration::from_secs(60));
        }),
        client("admin", &[ClientCredentials], &["ops"], |c| {
            c.roles = vec!["admin".into()];
        }),
        client("rs", &[], &[], |c| c.introspect_any = true),
        client("org-svc", &[ClientCredentials], &["orders:read"], |c| {
            c.tenants = vec![TenantPath::parse("/Org").unwrap()];
        }),
        client(
            "oidc",
            &[Password],
            &["openid", "profile", "email", "orders:read"],
            |_| {},
        ),
        client("other-api", &[Password], &["openid", "profile"], |c| {
            c.audience = vec!["other-api".into()];
        }),
        client("org-admin", &[ClientCredentials], &["ops"], |c| {
            c.roles = vec!["admin".into()];
            c.tenants = vec![TenantPath::parse("/Org").unwrap()];
        }),
        client(ODD_CLIENT, &[ClientCredentials], &["orders:read"], |c| {
            c.secret = ClientSecret::from_plaintext(ODD_SECRET);
        }),
    ];
    let users = [
        user("alice", "u-alice", &["/"], |u| {
            u.profile.insert("name".into(), json!("Alice Liddell"));
            u.profile.insert("email".into(), json!("alice@example.com"));
        }),
        user("bob", "u-bob", &["/Org"], |_| {}),
        user("carol", "u-carol", &["/"], |u| u.enabled = false),
        user("dave", "u-dave", &["/"], |u| {
            u.scopes = Some(vec!["orders:read".into()]);
        }),
        user("erin", "u-erin", &["/Org", "/Other"], |_| {}),
    ];
    Arc::new(StaticDirectory::new(clients, users).unwrap())
}

/// A store whose writes fail while `down` is set: a storage outage, injected.
#[derive(Debug, Default)]
pub struct FlakyStore {
    inner: MemoryStore,
    down: AtomicBool,
}

impl FlakyStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn outage(&self) -> Option<StoreError> {
        self.down.load(Ordering::SeqCst).then(|| {
            // What a real failure says: the path and the engine. None of it may reach a client.
            StoreError::new("/var/lib/tollgate/tollgate.sqlite3: rusqlite: disk I/O error")
        })
    }
}

impl Store for FlakyStore {
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()> {
        match self.outage() {
            Some(e) => Box::pin(std::future::ready(Err(e))),
            None => self.inner.commit(records),
        }
    }

    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError> {
        match self.outage() {
            Some(e) => Err(e),
            None => self.inner.write_behind(records),
        }
    }

    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded> {
        self.inner.load(now)
    }

    fn purge(&self, horizon: Purge) -> StoreFuture<'_, u64> {
        self.inner.purge(horizon)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.inner.flush()
    }

    fn outbox(self: Arc<Self>) -> Option<Arc<dyn Outbox>> {
        None
    }

    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>> {
        None
    }
}

/// How to build a [`Server`]; SQLite in a temporary directory and the system clock by default.
#[derive(Default)]
pub struct Setup {
    store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
}

impl Setup {
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub async fn start(self) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = match self.store {
            Some(store) => store,
            None => Arc::new(tollgate_sqlite::SqliteStore::open(dir.path()).unwrap()),
        };
        let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
        // The app's index, given to the service: the documented way to share it.
        let index = Arc::new(RevocationIndex::new());
        let directory = directory();
        let mut builder = TokenService::builder()
            .issuer(base.clone())
            .keys(keys.clone())
            .revocation_index(index.clone())
            .store(store)
            .clients(directory.clone())
            .users(directory);
        if let Some(clock) = &self.clock {
            builder = builder.clock(clock.clone());
        }
        let service = builder.build().await.unwrap();
        let mut app_verifier = Verifier::builder()
            .issuer(base.clone())
            .audience(base.clone())
            .keys(keys.clone())
            .revocation_index(index.clone());
        if let Some(clock) = &self.clock {
            app_verifier = app_verifier.clock(clock.clone());
        }
        let app_verifier = app_verifier.build().unwrap();
        let task = tokio::spawn(serve(listener, service.clone(), app_verifier.clone()));
        Server {
            base,
            addr,
            service,
            index,
            keys,
            app_verifier,
            dir,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            task,
        }
    }
}

/// Serves `/app/*` (an API behind the Layer, answering with the token's subject) and everything
/// else with the token service, one task per connection.
async fn serve(listener: TcpListener, service: TokenService, verifier: Verifier) {
    let app = ValidateBearerLayer::new(verifier).layer(tower::service_fn(
        |request: Request<Incoming>| async move {
            let sub = request
                .extensions()
                .get::<VerifiedClaims>()
                .map(|c| c.sub.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(sub))))
        },
    ));
    let router = tower::service_fn(move |request: Request<Incoming>| {
        let (service, app) = (service.clone(), app.clone());
        async move {
            if request.uri().path().starts_with("/app") {
                app.oneshot(request).await
            } else {
                service.oneshot(request).await
            }
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let connection = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), connection)
                .await;
        });
    }
}

/// A running token service.
pub struct Server {
    /// `http://127.0.0.1:<port>`, also the issuer and the default audience.
    pub base: String,
    pub addr: SocketAddr,
    pub service: TokenService,
    /// The index shared by the service and the app's Layer.
    pub index: Arc<RevocationIndex>,
    pub keys: KeySet,
    pub app_verifier: Verifier,
    pub dir: tempfile::TempDir,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A token-endpoint success.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: Option<String>,
    pub body: Value,
}

impl Tokens {
    pub fn refresh(&self) -> &str {
        self.refresh.as_deref().expect("a refresh token")
    }
}

impl Server {
    pub async fn start() -> Server {
        Setup::default().start().await
    }

    pub fn request(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            server: self,
            request: Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base)),
            body: Bytes::new(),
        }
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.request(Method::POST, path)
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.request(Method::GET, path)
    }

    /// `POST /connect/token` with body credentials of `client` and `params`.
    pub async fn token(&self, client: &str, params: &[(&str, &str)]) -> Reply {
        self.post("/connect/token")
            .form_as(client, params)
            .send()
            .await
    }

    /// A client-credentials token of `client` (panics unless 200).
    pub async fn cc(&self, client: &str, params: &[(&str, &str)]) -> Tokens {
        let mut all = vec![("grant_type", "client_credentials")];
        all.extend_from_slice(params);
        self.token(client, &all).await.tokens()
    }

    /// A client-credentials token of `client` with default parameters.
    pub async fn cc_token(&self, client: &str) -> String {
        self.cc(client, &[]).await.access
    }

    /// A fresh admin token (role `admin`).
    /// A token signed with the service's own key: a valid access token of `u-alice` through
    /// `oidc`, with `overrides` replacing or adding claims.
    pub fn sign_claims(&self, overrides: Value) -> String {
        let now = now_ms() / 1000;
        let mut claims = json!({
            "iss": self.base, "sub": "u-alice", "aud": self.base, "exp": now + 300, "iat": now,
            "jti": format!("signed-{now}-{}", overrides), "client_id": "oidc", "scope": "openid",
        });
        if let (Some(claims), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) {
            claims.extend(overrides.clone());
        }
        let key = self.keys.signing_key().unwrap();
        tollgate_core::jws::encode(&key, tollgate_core::jws::ACCESS_TOKEN_TYP, &claims).unwrap()
    }

    pub async fn admin_token(&self) -> String {
        self.cc_token("admin").await
    }

    /// The password grant for `username` through `client` (panics unless 200).
    pub async fn login(&self, client: &str, username: &str, params: &[(&str, &str)]) -> Tokens {
        let mut all = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ];
        all.extend_from_slice(params);
        self.token(client, &all).await.tokens()
    }

    /// The refresh grant.
    pub async fn refresh(
        &self,
        client: &str,
        refresh_token: &str,
        params: &[(&str, &str)],
    ) -> Reply {
        let mut all = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        all.extend_from_slice(params);
        self.token(client, &all).await
    }

    /// `POST /connect/revocation` by `client`.
    pub async fn revoke(&self, client: &str, token: &str, hint: Option<&str>) -> Reply {
        let mut params = vec![("token", token)];
        if let Some(hint) = hint {
            params.push(("token_type_hint", hint));
        }
        self.post("/connect/revocation")
            .form_as(client, &params)
            .send()
            .await
    }

    /// `POST /connect/introspect` by `client`: the JSON answer (panics unless 200).
    pub async fn introspect(&self, client: &str, token: &str) -> Value {
        let reply = self
            .post("/connect/introspect")
            .form_as(client, &[("token", token)])
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_no_store(&reply);
        reply.json()
    }

    /// The batch revocation with `body`, authenticated with `admin_token` (after [`settle`]).
    pub async fn batch(&self, admin_token: &str, body: Value) -> Reply {
        settle().await;
        self.post("/api/v2/identity/token/batch-revocation")
            .bearer(admin_token)
            .json(&body)
            .send()
            .await
    }

    /// The batch revocation's `count` (panics unless 200).
    pub async fn batch_count(&self, admin_token: &str, body: Value) -> u64 {
        let reply = self.batch(admin_token, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let json = reply.json();
        assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
        json["count"].as_u64().unwrap()
    }

    /// What the app behind the Layer answers to `token`.
    pub async fn app(&self, token: &str) -> Reply {
        self.get("/app/orders").bearer(token).send().await
    }

    /// Whether the app behind the Layer accepts `token` (asserting a proper refusal otherwise).
    pub async fn accepted(&self, token: &str) -> bool {
        let reply = self.app(token).await;
        match reply.status {
            StatusCode::OK => true,
            StatusCode::UNAUTHORIZED => {
                assert!(
                    reply.header("www-authenticate").contains("invalid_token"),
                    "{:?}",
                    reply.headers
                );
                false
            }
            other => panic!("unexpected app answer {other}"),
        }
    }

    /// Whether the app refuses `token` *because it was revoked*.
    pub async fn refused_as_revoked(&self, token: &str) -> bool {
        let reply = self.app(token).await;
        reply.status == StatusCode::UNAUTHORIZED
            && reply.header("www-authenticate").contains("revoked")
    }
}

/// One request being built.
pub struct Call<'a> {
    server: &'a Server,
    request: http::request::Builder,
    body: Bytes,
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.request = self
            .request
            .header(name, HeaderValue::from_bytes(value.as_ref()).unwrap());
        self
    }

    /// HTTP Basic with id and secret form-urlencoded first (RFC 6749 §2.3.1).
    pub fn basic(self, id: &str, secret: &str) -> Self {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = STANDARD.encode(format!("{}:{}", encode(id), encode(secret)));
        self.header("authorization", format!("Basic {credentials}"))
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form(self, params: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.body("application/x-www-form-urlencoded", body)
    }

    /// A form body with `client_secret_post` credentials of `client` first.
    pub fn form_as(self, client: &str, params: &[(&str, &str)]) -> Self {
        let secret = secret_of(client);
        let mut all = vec![("client_id", client), ("client_secret", secret.as_str())];
        all.extend_from_slice(params);
        self.form(&all)
    }

    pub fn json(self, body: &Value) -> Self {
        self.body("application/json", body.to_string())
    }

    pub fn body(self, content_type: &str, body: impl Into<Bytes>) -> Self {
        let mut call = self.header("content-type", content_type);
        call.body = body.into();
        call
    }

    /// A body without a content type.
    pub fn raw(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Reply {
        let request = self.request.body(Full::new(self.body)).unwrap();
        let response = self.server.http.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The tokens of a 200 from the token endpoint (checking its shape and headers).
    #[track_caller]
    pub fn tokens(&self) -> Tokens {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        assert_no_store(self);
        let body = self.json();
        assert_eq!(body["token_type"], "Bearer");
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().map(str::to_owned),
            body,
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`.
#[track_caller]
pub fn assert_no_store(reply: &Reply) {
    assert_eq!(
        reply.headers.get(CACHE_CONTROL).unwrap(),
        "no-store",
        "{reply:?}"
    );
    assert_eq!(reply.headers.get(PRAGMA).unwrap(), "no-cache", "{reply:?}");
}

fn assert_json_error(reply: &Reply, status: StatusCode, keys: &[&str]) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_no_store(reply);
    assert_eq!(reply.headers.get(CONTENT_TYPE).unwrap(), "application/json");
    let body = reply.json();
    let mut got: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{body}");
    for key in keys {
        let value = &body[*key];
        assert!(value.is_null() || value.is_string(), "{body}");
    }
    body
}

/// An RFC 6749 error: exactly `{"error", "error_description"}`.
#[track_caller]
pub fn assert_oauth_error(reply: &Reply, status: StatusCode, code: &str) {
    let body = assert_json_error(reply, status, &["error", "error_description"]);
    assert_eq!(body["error"], code, "{body}");
    assert!(!body["error_description"].as_str().unwrap().is_empty());
}

/// The Revoke Auth Token API's error: exactly `{"error", "errorDescription"}`.
#[track_caller]
pub fn assert_camel_error(reply: &Reply, status: StatusCode, code: &str) {
    let body = assert_json_error(reply, status, &["error", "errorDescription"]);
    assert_eq!(body["error"], code, "{body}");
    assert!(!body["errorDescription"].as_str().unwrap().is_empty());
}

/// The Identity API's `ServerPluginError`: exactly `{code, message, context, innerError,
/// extensions}`.
#[track_caller]
pub fn assert_plugin_error(reply: &Reply, status: StatusCode) -> Value {
    let body = assert_json_error(
        reply,
        status,
        &["code", "message", "context", "innerError", "extensions"],
    );
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
    body
}

/// An empty 200.
#[track_caller]
pub fn assert_empty_ok(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.body.is_empty(), "{}", reply.text());
}

/// The `WWW-Authenticate` challenge of client authentication through the Authorization header.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"tollgate\"";

/// A JWT's header and claims, decoded without verification.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let part =
        |s: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap() };
    (part(parts[0]), part(parts[1]))
}

/// Waits a few milliseconds, so that the tokens issued so far are strictly older than "now" at
/// the millisecond precision of cutoffs (a token issued in the cutoff's millisecond is kept).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An instant as RFC 3339 with millisecond precision in `offset_hours` (e.g. `+02:00`).
pub fn rfc3339(ms: i64, offset_hours: i8) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
    let offset = jiff::tz::Offset::constant(offset_hours);
    let dt = offset.to_datetime(ts);
    format!(
        "{}{}",
        dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
        offset_suffix(offset_hours)
    )
}

fn offset_suffix(hours: i8) -> String {
    match hours {
        0 => "Z".into(),
        h if h > 0 => format!("+{h:02}:00"),
        h => format!("-{:02}:00", -h),
    }
}

/// The UTC date `days` from today, `YYYY-MM-DD`.
pub fn utc_date(days: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(now_ms() + days * 86_400_000).unwrap();
    jiff::tz::Offset::UTC.to_datetime(ts).date().to_string()
}

/// The paths of the endpoints under test.
pub const TOKEN: &str = "/connect/token";
pub const REVOCATION: &str = "/connect/revocation";
pub const API_REVOKE: &str = "/api/id/v1/auth/token/revoke";
pub const BATCH: &str = "/api/v2/identity/token/batch-revocation";
pub const INTROSPECT: &str = "/connect/introspect";
pub const USERINFO: &str = "/connect/userinfo";
pub const FORM_ENDPOINTS: [&str; 4] = [TOKEN, REVOCATION, API_REVOKE, INTROSPECT];

/// Asserts the error shape of `path`'s endpoint: camelCase for the Revoke Auth Token API, RFC 6749
/// for the others.
#[track_caller]
pub fn assert_endpoint_error(path: &str, reply: &Reply, status: StatusCode, code: &str) {
    if path == API_REVOKE {
        assert_camel_error(reply, status, code);
    } else {
        assert_oauth_error(reply, status, code);
    }
}

/// A minimal valid form for `path` (client credentials of `svc` in the body).
pub fn valid_params(path: &str) -> Vec<(&'static str, &'static str)> {
    match path {
        TOKEN => vec![("grant_type", "client_credentials")],
        _ => vec![("token", "not-a-token")],
    }
}
