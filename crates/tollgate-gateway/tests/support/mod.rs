//! What the gateway tests share: a signing key and tokens, a real upstream (a hyper server on a
//! free port), a gateway started from configuration text, and an HTTP client.
#![allow(dead_code, unreachable_pub)]

pub mod nginx;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tollgate_core::{Audience, Claims, SigningAlgorithm, SigningKey, UnixMillis, jws};
use tollgate_gateway::RunningGateway;

pub const ISSUER: &str = "https://id.example.test";
pub const AUDIENCE: &str = "api";

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A signing key in a temporary directory, as `tollgate keygen` writes it.
pub struct Fixture {
    pub key: SigningKey,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let key = SigningKey::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k1.der"), key.to_der()).unwrap();
        Fixture { key, dir }
    }

    /// A token for `alice` of client `app`, edited by `edit`.
    pub fn token(&self, edit: impl FnOnce(&mut Claims)) -> String {
        let mut claims = Claims::new(
            ISSUER,
            "alice",
            Audience::One(AUDIENCE.into()),
            "app",
            UnixMillis::from(SystemTime::now()),
            Duration::from_secs(3600),
        );
        edit(&mut claims);
        jws::encode(&self.key, jws::ACCESS_TOKEN_TYP, &claims).unwrap()
    }

    /// The configuration text: listeners on free ports, the key file, then `body`.
    pub fn config(&self, body: &str) -> String {
        self.config_with("", body)
    }

    /// [`Fixture::config`] with `top` (top-level keys, such as `workers = 3\n`) after the
    /// fixture's own, before the first table.
    pub fn config_with(&self, top: &str, body: &str) -> String {
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\n{top}\
             [keys]\nfiles = [{{ kid = \"k1\", algorithm = \"EdDSA\", file = \"k1.der\" }}]\n\
             [ops]\nlisten = \"127.0.0.1:0\"\n{body}"
        )
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Starts a gateway on `config(body)`.
    pub async fn start(&self, body: &str) -> RunningGateway {
        let text = self.config(body);
        let config = tollgate_gateway::config::parse(&text, &self.path())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        tollgate_gateway::start(config).await.unwrap()
    }
}

/// The real upstream the tests proxy to.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Connections the upstream has accepted.
    pub connections: Arc<AtomicUsize>,
    /// Notified by the upstream when it has received the first bytes of a streamed upload.
    pub got_first_bytes: Arc<Notify>,
    /// Notified by the test when the client has received the first bytes of a download.
    pub client_got_first_bytes: Arc<Notify>,
}

/// Starts the upstream on a free port (HTTP/1.1 and h2c). It answers:
///
/// * `/slow`: after 3 s;
/// * `/ws`: a WebSocket-style upgrade (101), then echoes bytes;
/// * `/upload`: reads the body as it streams, notifies `got_first_bytes` after its first chunk,
///   answers with the byte count;
/// * `/download/N`: N bytes in 1 MiB chunks, waiting for `client_got_first_bytes` after the first;
/// * `/bytes/N`: N bytes at once;
/// * `/grpc`: a gRPC-shaped answer with trailers (`grpc-status: 0`);
/// * anything else: 200 with a JSON echo of the method, path and headers it received.
pub async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got_first_bytes = Arc::new(Notify::new());
    let client_got_first_bytes = Arc::new(Notify::new());
    let (a, b) = (got_first_bytes.clone(), client_got_first_bytes.clone());
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    upstream_answer(request, a.clone(), b.clone())
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        connections,
        got_first_bytes,
        client_got_first_bytes,
    }
}

async fn upstream_answer(
    mut request: Request<Incoming>,
    got_first_bytes: Arc<Notify>,
    client_got_first_bytes: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return Ok(Response::new(full("late")));
    }
    if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(""))
            .unwrap();
        return Ok(response);
    }
    if path == "/upload" {
        let mut body = request.into_body();
        let mut total = 0usize;
        let mut first = true;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                total += data.len();
                if first {
                    first = false;
                    got_first_bytes.notify_one();
                }
            }
        }
        return Ok(Response::new(full(total.to_string())));
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let n: usize = n.parse().unwrap_or(0);
        let (mut tx, body) = http_body_util::channel::Channel::<
            Bytes,
            Box<dyn std::error::Error + Send + Sync>,
        >::new(2);
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![7u8; 1 << 20]);
            let mut sent = 0;
            let mut first = true;
            while sent < n {
                let len = (n - sent).min(chunk.len());
                if tx.send_data(chunk.slice(..len)).await.is_err() {
                    return;
                }
                sent += len;
                if first {
                    first = false;
                    client_got_first_bytes.notified().await;
                }
            }
        });
        return Ok(Response::new(body.boxed()));
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        return Ok(Response::new(full(vec![b'x'; n])));
    }
    if path == "/grpc" {
        let (mut tx, body) = http_body_util::channel::Channel::<
            Bytes,
            Box<dyn std::error::Error + Send + Sync>,
        >::new(2);
        tokio::spawn(async move {
            let _ = tx.send_data(Bytes::from_static(b"\0\0\0\0\x02hi")).await;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let _ = tx.send(Frame::trailers(trailers)).await;
        });
        let mut response = Response::new(body.boxed());
        response
            .headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        return Ok(response);
    }
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let echo = serde_json::json!({
        "method": request.method().as_str(),
        "path": request.uri().path_and_query().map(|p| p.as_str()),
        "headers": headers,
    });
    Ok(Response::new(full(echo.to_string())))
}

/// An HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// An h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A response with its body read whole (small bodies only).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The upstream's echo: the headers it received.
    pub fn echoed(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method path` to `addr` with `headers`.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client()
        .request(request.body(full("")).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
