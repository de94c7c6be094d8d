//! A Shared Signals transmitter for tests, written from the specifications rather than from the
//! receiver: SSF 1.0's configuration metadata, stream management and verification; RFC 8936's
//! poll endpoint (a queue that redelivers what was not acknowledged, and records `setErrs`);
//! RFC 8935 pushes to the receiver's endpoint; optionally an OAuth 2.0 token endpoint (RFC 6749
//! §4.4, client credentials) whose short-lived tokens its API then requires. A real HTTP server
//! on 127.0.0.1, that can be stopped and started again on the same port.

use crate::ssf::event_types;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tollgate_core::{KeySet, SigningAlgorithm, UnixMillis, jws};

/// RFC 8935 push delivery, as a stream's `delivery.method` names it.
const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
const POLL: &str = "urn:ietf:rfc:8936";

/// What the transmitter holds.
#[derive(Default)]
struct State {
    /// The one stream (this transmitter allows one per receiver, as §8.1.1.1 lets it).
    stream: Option<Stream>,
    /// Poll delivery: SETs not yet acknowledged nor refused, in order, by jti.
    queue: Vec<(String, String)>,
    acked: Vec<String>,
    set_errs: Map<String, Value>,
    verification_states: Vec<String>,
    polls: u64,
    /// Access tokens issued by the token endpoint, with when they expire.
    tokens: HashMap<String, Instant>,
    tokens_issued: u64,
    /// How the client authenticated at the last token request it was issued a token for.
    client_auth: Option<&'static str>,
    /// The client assertions' `jti`s seen: a replayed assertion is refused.
    assertion_jtis: std::collections::HashSet<String>,
    /// Requests of the API answered `401`.
    unauthorized: u64,
}

/// The one OAuth client of a transmitter with a token endpoint.
struct OAuthClient {
    id: String,
    /// `client_secret_basic` or `client_secret_post`.
    secret: Option<String>,
    /// `private_key_jwt`: the client's public keys.
    keys: Option<KeySet>,
    token_lifetime: Duration,
}

#[derive(Clone)]
struct Stream {
    id: String,
    delivery: Value,
    status: String,
}

struct Shared {
    issuer: String,
    audience: String,
    bearer: String,
    /// With a token endpoint, the API takes its tokens instead of `bearer`.
    oauth: Option<OAuthClient>,
    keys: KeySet,
    state: Mutex<State>,
    jtis: AtomicU64,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A running transmitter ([`Transmitter::start`]): one issuer (`http://127.0.0.1:<port>`), one
/// ES256 signing key, one stream (created by the receiver), a poll queue. Stops when dropped.
///
/// What it offers (`/.well-known/ssf-configuration`): push and poll delivery, a configuration
/// endpoint (`/ssf/stream`: list, read, create; one stream, a second is `409`), a status endpoint
/// (`/ssf/status`), a verification endpoint (`/ssf/verify`: `204`, then the verification event on
/// the stream), the poll endpoint (`/ssf/poll`), its keys (`/jwks`), and `tenant` as a critical
/// subject member. Every endpoint but the metadata and the keys requires
/// `Authorization: Bearer <bearer>`, or, when started with
/// [`start_with_token_endpoint`](Transmitter::start_with_token_endpoint), a token of its token
/// endpoint (`/oauth/token`).
pub struct Transmitter {
    shared: Arc<Shared>,
    port: u16,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Transmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmitter")
            .field("issuer", &self.shared.issuer)
            .field("audience", &self.shared.audience)
            .field("running", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl Transmitter {
    /// Starts a transmitter on a free port of 127.0.0.1 whose streams are for `audience` (the
    /// `aud` of its SETs), whose API requires `Authorization: Bearer <bearer>`.
    ///
    /// # Panics
    ///
    /// When it cannot listen on 127.0.0.1 or generate its key.
    pub async fn start(audience: &str, bearer: &str) -> Transmitter {
        Self::start_with(audience, bearer, None).await
    }

    /// Starts a transmitter with a token endpoint ([`token_endpoint`](Self::token_endpoint)):
    /// it issues opaque access tokens that expire after `token_lifetime` (its `expires_in`, in
    /// whole seconds) to `client_id` authenticated with `client_secret` (HTTP Basic, RFC 6749
    /// §2.3.1), and its API requires one of those, unexpired and not revoked
    /// ([`revoke_tokens`](Self::revoke_tokens)), answering `401` otherwise.
    ///
    /// # Panics
    ///
    /// When it cannot listen on 127.0.0.1 or generate its key.
    pub async fn start_with_token_endpoint(
        audience: &str,
        client_id: &str,
        client_secret: &str,
        token_lifetime: Duration,
    ) -> Transmitter {
        let client = OAuthClient {
            id: client_id.to_owned(),
            secret: Some(client_secret.to_owned()),
            keys: None,
            token_lifetime,
        };
        Self::start_with(audience, "", Some(client)).await
    }

    /// [`start_with_token_endpoint`](Self::start_with_token_endpoint) for a client that
    /// authenticates with `private_key_jwt` (RFC 7523 §2.2): its assertions must be signed by
    /// one of `client_keys` (by `kid`), with `iss` and `sub` the client id, `aud` the token
    /// endpoint, an `exp` to come, and a `jti` not seen before.
    ///
    /// # Panics
    ///
    /// When it cannot listen on 127.0.0.1 or generate its key.
    pub async fn start_with_client_keys(
        audience: &str,
        client_id: &str,
        client_keys: KeySet,
        token_lifetime: Duration,
    ) -> Transmitter {
        let client = OAuthClient {
            id: client_id.to_owned(),
            secret: None,
            keys: Some(client_keys),
            token_lifetime,
        };
        Self::start_with(audience, "", Some(client)).await
    }

    /// How the client authenticated at the token endpoint the last time it was issued a token:
    /// `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
    pub fn client_authentication(&self) -> Option<&'static str> {
        self.shared.state().client_auth
    }

    async fn start_with(audience: &str, bearer: &str, oauth: Option<OAuthClient>) -> Transmitter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the transmitter listens on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("a listener has an address")
            .port();
        let shared = Arc::new(Shared {
            issuer: format!("http://127.0.0.1:{port}"),
            audience: audience.to_owned(),
            bearer: bearer.to_owned(),
            oauth,
            keys: KeySet::generate(SigningAlgorithm::ES256, "tx-1")
                .expect("an ES256 key is generated"),
            state: Mutex::default(),
            jtis: AtomicU64::new(0),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        });
        let server = Some(serve(listener, shared.clone()));
        Transmitter {
            shared,
            port,
            server,
        }
    }

    /// Its issuer identifier, `http://127.0.0.1:<port>`: the `transmitter` a receiver is
    /// configured with, and the `iss` of its SETs.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// Its OAuth 2.0 token endpoint, `{issuer}/oauth/token` (answering only when started with
    /// [`start_with_token_endpoint`](Self::start_with_token_endpoint)).
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.shared.issuer)
    }

    /// How many access tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.state().tokens_issued
    }

    /// How many requests of its API it answered `401`.
    pub fn unauthorized(&self) -> u64 {
        self.shared.state().unauthorized
    }

    /// Revokes every access token issued so far, before they expire: the next request with one
    /// is answered `401`.
    pub fn revoke_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// Stops answering: the listener and every open connection are closed. What it holds (the
    /// stream, the queue) is kept for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Answers again, on the same port.
    ///
    /// # Panics
    ///
    /// When the port was taken meanwhile.
    pub async fn restart(&mut self) {
        self.stop();
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the transmitter listens on its port again");
        self.server = Some(serve(listener, self.shared.clone()));
    }

    /// Signs `claims` with the transmitter's key, with `typ` in the header (`secevent+jwt` for a
    /// SET; anything else to test a receiver's refusal).
    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.shared.sign(typ, claims)
    }

    /// A SET's claims from this transmitter to the audience, issued now: one `event` about
    /// `sub_id` (left out when null).
    pub fn claims(&self, event_type: &str, sub_id: Value, event: Value) -> Value {
        let mut claims = json!({
            "iss": self.shared.issuer,
            "aud": self.shared.audience,
            "iat": now(),
            "jti": self.shared.next_jti(),
            "txn": "t-1",
            "events": { event_type: event },
        });
        if !sub_id.is_null() {
            claims["sub_id"] = sub_id;
        }
        claims
    }

    /// A signed SET of `claims`, and its jti.
    pub fn set(&self, claims: &Value) -> (String, String) {
        let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        (jti, self.sign("secevent+jwt", claims))
    }

    /// Poll delivery: queues the SET, delivered by the next polls until the receiver
    /// acknowledges it or reports an error about it.
    pub fn enqueue(&self, jti: &str, set: &str) {
        self.shared
            .state()
            .queue
            .push((jti.to_owned(), set.to_owned()));
    }

    /// Push delivery: POSTs the SET to the stream's endpoint as RFC 8935 says (with the
    /// stream's `authorization_header`, if the receiver gave one); the answer's status and JSON
    /// body (`null` when it has none).
    ///
    /// # Panics
    ///
    /// When there is no push stream, or its endpoint cannot be reached.
    pub async fn push(&self, set: &str) -> (StatusCode, Value) {
        self.shared
            .push(set)
            .await
            .unwrap_or_else(|e| panic!("the SET could not be pushed: {e}"))
    }

    /// The jtis the receiver acknowledged.
    pub fn acked(&self) -> Vec<String> {
        self.shared.state().acked.clone()
    }

    /// The errors the receiver reported (`setErrs`), by jti.
    pub fn set_errs(&self) -> Map<String, Value> {
        self.shared.state().set_errs.clone()
    }

    /// SETs waiting to be acknowledged.
    pub fn queued(&self) -> usize {
        self.shared.state().queue.len()
    }

    /// How many polls it has answered.
    pub fn polls(&self) -> u64 {
        self.shared.state().polls
    }

    /// The stream's id, once a receiver created it.
    pub fn stream_id(&self) -> Option<String> {
        self.shared.state().stream.as_ref().map(|s| s.id.clone())
    }

    /// Changes the stream's status (`enabled`, `paused`, `disabled`), as a transmitter may on
    /// its own (§8.1.2); a stream not `enabled` delivers nothing when polled.
    pub fn set_status(&self, status: &str) {
        if let Some(stream) = &mut self.shared.state().stream {
            stream.status = status.to_owned();
        }
    }
}

impl Drop for Transmitter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Now, in seconds since the Unix epoch: the `iat` of the SETs it makes.
pub fn now() -> i64 {
    UnixMillis::from(std::time::SystemTime::now()).as_secs()
}

/// The accept loop; aborting it drops the JoinSet, which aborts every connection.
fn serve(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            connections.spawn(async move {
                let service = service_fn(move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(shared.route(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    })
}

fn answer(status: StatusCode, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::from(body.map(|b| b.to_string()).unwrap_or_default()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; what it held stays
        // readable for the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sign(&self, typ: &str, claims: &Value) -> String {
        let key = self
            .keys
            .signing_key()
            .expect("the transmitter has its signing key");
        jws::encode(&key, typ, claims).expect("claims are signed")
    }

    fn next_jti(&self) -> String {
        format!("set-{}", self.jtis.fetch_add(1, Ordering::Relaxed))
    }

    fn metadata(&self) -> Value {
        let base = &self.issuer;
        json!({
            "spec_version": "1_0",
            "issuer": base,
            "jwks_uri": format!("{base}/jwks"),
            "delivery_methods_supported": [PUSH, POLL],
            "configuration_endpoint": format!("{base}/ssf/stream"),
            "status_endpoint": format!("{base}/ssf/status"),
            "verification_endpoint": format!("{base}/ssf/verify"),
            "critical_subject_members": ["tenant"],
        })
    }

    fn stream_config(&self, stream: &Stream) -> Value {
        json!({
            "stream_id": stream.id,
            "iss": self.issuer,
            "aud": self.audience,
            "delivery": stream.delivery,
            "events_supported": event_types::SUPPORTED,
            "events_delivered": event_types::SUPPORTED,
            "min_verification_interval": 0,
        })
    }

    async fn route(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/.well-known/ssf-configuration") => {
                answer(StatusCode::OK, Some(self.metadata()))
            }
            (Method::GET, "/jwks") => answer(
                StatusCode::OK,
                serde_json::to_value(self.keys.to_jwks()).ok(),
            ),
            (Method::POST, "/oauth/token") if self.oauth.is_some() => {
                let authorization = request.headers().get(AUTHORIZATION).cloned();
                let form = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                self.issue_token(authorization.as_ref(), &form)
            }
            _ if !self.authorized(&request) => {
                self.state().unauthorized += 1;
                let mut response = answer(StatusCode::UNAUTHORIZED, None);
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                response
            }
            (Method::GET, "/ssf/stream") => self.read_streams(&query),
            (Method::POST, "/ssf/stream") => self.create_stream(read(request).await),
            (Method::GET, "/ssf/status") => self.read_status(&query),
            (Method::POST, "/ssf/verify") => self.verify(read(request).await),
            (Method::POST, "/ssf/poll") => self.poll(read(request).await),
            _ => answer(StatusCode::NOT_FOUND, None),
        }
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(value) = request.headers().get(AUTHORIZATION) else {
            return false;
        };
        if self.oauth.is_none() {
            return value.as_bytes() == format!("Bearer {}", self.bearer).as_bytes();
        }
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
        let state = self.state();
        token
            .and_then(|t| state.tokens.get(t))
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// RFC 6749 §4.4: the client authenticated with HTTP Basic (§2.3.1), its secret in the form,
    /// or a client assertion (RFC 7523 §2.2), whichever it was started with; `grant_type`
    /// `client_credentials`; an opaque token that expires after the configured life.
    fn issue_token(
        &self,
        authorization: Option<&HeaderValue>,
        form: &[u8],
    ) -> Response<Full<Bytes>> {
        let Some(client) = &self.oauth else {
            return answer(StatusCode::NOT_FOUND, None);
        };
        let error = |status, code: &str| answer(status, Some(json!({"error": code})));
        let form: HashMap<String, String> = form_urlencoded::parse(form).into_owned().collect();
        let Some(method) = self.client_authenticated(client, authorization, &form) else {
            return error(StatusCode::UNAUTHORIZED, "invalid_client");
        };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
        let token = format!("at-{}", tollgate_core::random::id());
        let mut state = self.state();
        state
            .tokens
            .insert(token.clone(), Instant::now() + client.token_lifetime);
        state.tokens_issued += 1;
        state.client_auth = Some(method);
        drop(state);
        answer(
            StatusCode::OK,
            Some(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": client.token_lifetime.as_secs(),
            })),
        )
    }

    /// The method by which `client` authenticated this token request, if it did (exactly one
    /// method per request, RFC 6749 §2.3).
    fn client_authenticated(
        &self,
        client: &OAuthClient,
        authorization: Option<&HeaderValue>,
        form: &HashMap<String, String>,
    ) -> Option<&'static str> {
        let in_form = form.contains_key("client_secret");
        let asserted = form.contains_key("client_assertion");
        match (authorization, in_form, asserted) {
            (Some(_), false, false) => {
                let secret = client.secret.clone()?;
                (basic_credentials(authorization)? == (client.id.clone(), secret))
                    .then_some("client_secret_basic")
            }
            (None, true, false) => {
                let secret = client.secret.as_ref()?;
                (form.get("client_id") == Some(&client.id)
                    && form.get("client_secret") == Some(secret))
                .then_some("client_secret_post")
            }
            (None, false, true) => self
                .assertion_holds(client, form)
                .then_some("private_key_jwt"),
            _ => None,
        }
    }

    /// RFC 7523 §3: the assertion's signature, issuer, subject, audience, expiry, and `jti`.
    fn assertion_holds(&self, client: &OAuthClient, form: &HashMap<String, String>) -> bool {
        let Some(keys) = &client.keys else {
            return false;
        };
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            || form.get("client_id").is_some_and(|id| *id != client.id)
        {
            return false;
        }
        let Some(assertion) = form.get("client_assertion") else {
            return false;
        };
        let Ok(compact) = tollgate_core::jws::Compact::parse(assertion, 16 * 1024) else {
            return false;
        };
        if compact.verify(keys, SigningAlgorithm::ALL).is_err() {
            return false;
        }
        let Ok(claims) = serde_json::from_slice::<Value>(compact.payload()) else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let endpoint = format!("{}/oauth/token", self.issuer);
        let fresh = claims["exp"].as_u64().is_some_and(|exp| exp > now);
        let ours = claims["iss"] == client.id.as_str()
            && claims["sub"] == client.id.as_str()
            && claims["aud"] == endpoint.as_str();
        let Some(jti) = claims["jti"].as_str().filter(|j| !j.is_empty()) else {
            return false;
        };
        fresh && ours && self.state().assertion_jtis.insert(jti.to_owned())
    }

    fn stream_for(&self, query: &str) -> Result<Option<Stream>, ()> {
        let asked: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let stream = self.state().stream.clone();
        match asked.get("stream_id") {
            None => Ok(stream),
            Some(id) => match stream {
                Some(s) if &s.id == id => Ok(Some(s)),
                _ => Err(()),
            },
        }
    }

    fn read_streams(&self, query: &str) -> Response<Full<Bytes>> {
        match (self.stream_for(query), query.is_empty()) {
            (Err(()), _) => answer(StatusCode::NOT_FOUND, None),
            (Ok(stream), true) => {
                let list: Vec<Value> = stream.iter().map(|s| self.stream_config(s)).collect();
                answer(StatusCode::OK, Some(json!(list)))
            }
            (Ok(Some(stream)), false) => answer(StatusCode::OK, Some(self.stream_config(&stream))),
            (Ok(None), false) => answer(StatusCode::NOT_FOUND, None),
        }
    }

    fn create_stream(&self, body: Value) -> Response<Full<Bytes>> {
        let mut delivery = body
            .get("delivery")
            .cloned()
            .unwrap_or(json!({"method": POLL}));
        if delivery["method"] == POLL {
            delivery["endpoint_url"] = json!(format!("{}/ssf/poll", self.issuer));
        } else if delivery["method"] != PUSH || !delivery["endpoint_url"].is_string() {
            return answer(StatusCode::BAD_REQUEST, None);
        }
        let mut state = self.state();
        if state.stream.is_some() {
            return answer(StatusCode::CONFLICT, None);
        }
        let stream = Stream {
            id: format!("stream-{}", self.jtis.fetch_add(1, Ordering::Relaxed)),
            delivery,
            status: "enabled".into(),
        };
        state.stream = Some(stream.clone());
        drop(state);
        answer(StatusCode::CREATED, Some(self.stream_config(&stream)))
    }

    fn read_status(&self, query: &str) -> Response<Full<Bytes>> {
        match self.stream_for(query) {
            Ok(Some(stream)) => answer(
                StatusCode::OK,
                Some(json!({"stream_id": stream.id, "status": stream.status})),
            ),
            _ => answer(StatusCode::NOT_FOUND, None),
        }
    }

    /// §8.1.4.2: 204 now, the verification event on the stream after.
    fn verify(self: Arc<Self>, body: Value) -> Response<Full<Bytes>> {
        let Some(stream) = self.state().stream.clone() else {
            return answer(StatusCode::NOT_FOUND, None);
        };
        if body["stream_id"] != stream.id {
            return answer(StatusCode::NOT_FOUND, None);
        }
        let state = body["state"].as_str().unwrap_or_default().to_owned();
        self.state().verification_states.push(state.clone());
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now(),
            "jti": self.next_jti(),
            "sub_id": {"format": "opaque", "id": stream.id},
            "events": { event_types::VERIFICATION: { "state": state } },
        });
        let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        let set = self.sign("secevent+jwt", &claims);
        if stream.delivery["method"] == PUSH {
            // A receiver that does not take it asks again later: nothing to do with the answer.
            tokio::spawn(async move {
                let _ = self.push(&set).await;
            });
        } else {
            self.state().queue.push((jti, set));
        }
        answer(StatusCode::NO_CONTENT, None)
    }

    /// RFC 8936 §2.4: acknowledgements and errors first, then what is still queued.
    fn poll(&self, body: Value) -> Response<Full<Bytes>> {
        let mut state = self.state();
        let Some(stream) = state.stream.clone() else {
            return answer(StatusCode::NOT_FOUND, None);
        };
        if stream.delivery["method"] != POLL {
            return answer(StatusCode::BAD_REQUEST, None);
        }
        state.polls += 1;
        for jti in body["ack"].as_array().into_iter().flatten() {
            let jti = jti.as_str().unwrap_or_default().to_owned();
            state.queue.retain(|(queued, _)| *queued != jti);
            state.acked.push(jti);
        }
        for (jti, error) in body["setErrs"].as_object().into_iter().flatten() {
            state.queue.retain(|(queued, _)| queued != jti);
            state.set_errs.insert(jti.clone(), error.clone());
        }
        let max = body["maxEvents"].as_u64().unwrap_or(10) as usize;
        if stream.status != "enabled" {
            return answer(StatusCode::OK, Some(json!({"sets": {}})));
        }
        let sets: Map<String, Value> = state
            .queue
            .iter()
            .take(max)
            .map(|(jti, set)| (jti.clone(), json!(set)))
            .collect();
        let more = state.queue.len() > max;
        answer(
            StatusCode::OK,
            Some(json!({"sets": sets, "moreAvailable": more})),
        )
    }

    async fn push(&self, set: &str) -> Result<(StatusCode, Value), String> {
        let stream = self.state().stream.clone().ok_or("no stream to push on")?;
        let delivery = &stream.delivery;
        let endpoint = delivery["endpoint_url"]
            .as_str()
            .filter(|_| delivery["method"] == PUSH)
            .ok_or("the stream is not a push stream")?;
        let mut request = Request::post(endpoint)
            .header(CONTENT_TYPE, "application/secevent+jwt")
            .header(ACCEPT, "application/json");
        if let Some(header) = delivery["authorization_header"].as_str() {
            request = request.header(AUTHORIZATION, header);
        }
        let request = request
            .body(Full::from(set.to_owned()))
            .map_err(|e| format!("not a request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

/// The client id and secret of a `Basic` header, each form-urldecoded (RFC 6749 §2.3.1).
fn basic_credentials(authorization: Option<&HeaderValue>) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = authorization?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// A request's JSON body; `null` when it has none or it cannot be read.
async fn read(request: Request<Incoming>) -> Value {
    match request.into_body().collect().await {
        Ok(body) => serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}
