//! A Shared Signals transmitter for the tests, written from the specifications: SSF 1.0's
//! configuration metadata, stream management and verification; RFC 8936's poll endpoint (a queue
//! that redelivers what was not acknowledged, and records `setErrs`); RFC 8935 pushes to the
//! receiver's endpoint. A real HTTP server on 127.0.0.1, that can be stopped and started again on
//! the same port.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
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
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tollgate_core::{KeySet, SigningAlgorithm, jws};

pub(crate) const PUSH: &str = "urn:ietf:rfc:8935";
pub(crate) const POLL: &str = "urn:ietf:rfc:8936";

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
    keys: KeySet,
    state: Mutex<State>,
    jtis: AtomicU64,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub(crate) struct Transmitter {
    shared: Arc<Shared>,
    port: u16,
    server: Option<JoinHandle<()>>,
}

impl Transmitter {
    /// A transmitter whose streams are for `audience`, whose API requires `bearer`.
    pub(crate) async fn start(audience: &str, bearer: &str) -> Transmitter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            issuer: format!("http://127.0.0.1:{port}"),
            audience: audience.to_owned(),
            bearer: bearer.to_owned(),
            keys: KeySet::generate(SigningAlgorithm::ES256, "tx-1").unwrap(),
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

    pub(crate) fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// Stops answering: the listener and every open connection are closed.
    pub(crate) fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Answers again, on the same port.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.server = Some(serve(listener, self.shared.clone()));
    }

    /// Signs `claims` as a SET with the transmitter's key.
    pub(crate) fn sign(&self, typ: &str, claims: &Value) -> String {
        jws::encode(&self.shared.keys.signing_key().unwrap(), typ, claims).unwrap()
    }

    /// A SET's claims from this transmitter to the audience, issued now: one `event` about
    /// `sub_id` (left out when null).
    pub(crate) fn claims(&self, event_type: &str, sub_id: Value, event: Value) -> Value {
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
    pub(crate) fn set(&self, claims: &Value) -> (String, String) {
        let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
        (jti, self.sign("secevent+jwt", claims))
    }

    /// Poll delivery: queues the SET.
    pub(crate) fn enqueue(&self, jti: &str, set: &str) {
        self.shared
            .state()
            .queue
            .push((jti.to_owned(), set.to_owned()));
    }

    /// Push delivery: POSTs the SET to the stream's endpoint as RFC 8935 says; the answer.
    pub(crate) async fn push(&self, set: &str) -> (StatusCode, Value) {
        self.shared.push(set).await
    }

    /// The jtis the receiver acknowledged.
    pub(crate) fn acked(&self) -> Vec<String> {
        self.shared.state().acked.clone()
    }

    /// The errors the receiver reported, by jti.
    pub(crate) fn set_errs(&self) -> Map<String, Value> {
        self.shared.state().set_errs.clone()
    }

    /// SETs waiting to be acknowledged.
    pub(crate) fn queued(&self) -> usize {
        self.shared.state().queue.len()
    }

    pub(crate) fn polls(&self) -> u64 {
        self.shared.state().polls
    }

    pub(crate) fn stream_id(&self) -> Option<String> {
        self.shared.state().stream.as_ref().map(|s| s.id.clone())
    }

    /// Changes the stream's status, as the transmitter may on its own (§8.1.2).
    pub(crate) fn set_status(&self, status: &str) {
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

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
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
        .insert("content-type", "application/json".parse().unwrap());
    response
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
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
            "events_supported": tollgate_signals::ssf::event_types::SUPPORTED,
            "events_delivered": tollgate_signals::ssf::event_types::SUPPORTED,
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
                Some(serde_json::to_value(self.keys.to_jwks()).unwrap()),
            ),
            _ if !self.authorized(&request) => answer(StatusCode::UNAUTHORIZED, None),
            (Method::GET, "/ssf/stream") => self.read_streams(&query),
            (Method::POST, "/ssf/stream") => self.create_stream(read(request).await),
            (Method::GET, "/ssf/status") => self.read_status(&query),
            (Method::POST, "/ssf/verify") => self.verify(read(request).await),
            (Method::POST, "/ssf/poll") => self.poll(read(request).await),
            _ => answer(StatusCode::NOT_FOUND, None),
        }
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        request
            .headers()
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == format!("Bearer {}", self.bearer).as_bytes())
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
            "events": { tollgate_signals::ssf::event_types::VERIFICATION: { "state": state } },
        });
        let jti = claims["jti"].as_str().unwrap().to_owned();
        let set = jws::encode(&self.keys.signing_key().unwrap(), "secevent+jwt", &claims).unwrap();
        if stream.delivery["method"] == PUSH {
            tokio::spawn(async move {
                self.push(&set).await;
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

    async fn push(&self, set: &str) -> (StatusCode, Value) {
        let stream = self.state().stream.clone().expect("a stream to push on");
        let delivery = &stream.delivery;
        let mut request = Request::post(delivery["endpoint_url"].as_str().unwrap())
            .header("content-type", "application/secevent+jwt")
            .header("accept", "application/json");
        if let Some(header) = delivery["authorization_header"].as_str() {
            request = request.header("authorization", header);
        }
        let request = request.body(Full::from(set.to_owned())).unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, body)
    }
}

async fn read(request: Request<Incoming>) -> Value {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}
