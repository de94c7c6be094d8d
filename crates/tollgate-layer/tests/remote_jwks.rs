//! Integration tests of the remote JWKS fetcher against a real HTTP server on a local socket.

// `RemoteJwks::refetch` is crate-private (only the verifier calls it), so the module is compiled
// into this test crate to drive it directly.
#[path = "../src/remote_jwks.rs"]
#[allow(
    unreachable_pub,
    reason = "the library's public items, private in this test crate"
)]
mod remote_jwks;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use remote_jwks::RemoteJwks;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Barrier, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout};
use tollgate_core::{KeySet, SigningAlgorithm, SigningKey};

/// Generous bound for anything that should happen "soon"; only reached when a test fails.
const SOON: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(3600);

/// What the test issuer answers to every request.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn ok(body: impl Into<Bytes>) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: body.into(),
        }
    }
}

/// A JWKS endpoint on 127.0.0.1 that counts requests and open connections, and can hold its
/// answers until released.
struct Issuer {
    addr: SocketAddr,
    state: Arc<IssuerState>,
    server: JoinHandle<()>,
}

struct IssuerState {
    answer: Mutex<Answer>,
    requests: AtomicUsize,
    open_connections: AtomicUsize,
    last_accept: Mutex<Option<String>>,
    /// Answers wait while this is false.
    gate: watch::Sender<bool>,
}

/// Decrements the open-connection count however the connection task ends.
struct OpenConnection(Arc<IssuerState>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Issuer {
    async fn start(answer: Answer) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IssuerState {
            answer: Mutex::new(answer),
            requests: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            last_accept: Mutex::new(None),
            gate: watch::Sender::new(true),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Issuer {
            addr,
            state,
            server,
        }
    }

    fn uri(&self) -> http::Uri {
        format!("http://{}/.well-known/jwks.json", self.addr)
            .parse()
            .unwrap()
    }

    fn answer(&self, answer: Answer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    fn hold_answers(&self, hold: bool) {
        self.state.gate.send_replace(!hold);
    }

    /// Closes the listener and every connection: further fetches are refused.
    async fn stop(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<IssuerState>) {
    // Dropped with the accept loop when the server is aborted, which closes every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.open_connections.fetch_add(1, Ordering::SeqCst);
        let open = OpenConnection(Arc::clone(&state));
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let _open = open;
            let service = service_fn(move |request| respond(Arc::clone(&state), request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn respond(
    state: Arc<IssuerState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_accept.lock().unwrap() = request
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = state.gate.subscribe().wait_for(|open| *open).await;
    let answer = state.answer.lock().unwrap().clone();
    let mut response = Response::new(Full::new(answer.body));
    *response.status_mut() = answer.status;
    Ok(response)
}

/// An issuer's key set with one EdDSA signing key per kid (the last one signs).
fn issuer_keys(kids: &[&str]) -> KeySet {
    let keys = KeySet::new();
    for kid in kids {
        keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, *kid).unwrap());
    }
    keys
}

fn jwks_body(keys: &KeySet) -> Answer {
    Answer::ok(serde_json::to_vec(&keys.to_jwks()).unwrap())
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let polled = timeout(SOON, async {
        while !condition() {
            sleep(Duration::from_millis(5)).await;
        }
    });
    polled
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn fetch_finished(notified: OwnedNotified) {
    timeout(SOON, notified)
        .await
        .expect("refetch waiters must be woken when the fetch ends");
}

#[tokio::test]
async fn initial_fetch_fills_the_key_set_and_is_counted() {
    let keys = issuer_keys(&["k1"]);
    let issuer = Issuer::start(jwks_body(&keys)).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(LONG)
        .build()
        .unwrap();

    eventually("the first fetch", || jwks.keys().find(Some("k1")).is_some()).await;
    assert_eq!(issuer.requests(), 1);
    assert_eq!(
        issuer.state.last_accept.lock().unwrap().as_deref(),
        Some("application/json")
    );
    let counts = jwks.fetch_counts();
    assert_eq!((counts.succeeded, counts.failed), (1, 0));
}

#[tokio::test]
async fn discovery_names_the_jwks_uri_of_the_configured_issuer() {
    let issuer = Issuer::start(Answer::ok("")).await;
    let discovery: http::Uri = format!("http://{}/.well-known/openid-configuration", issuer.addr)
        .parse()
        .unwrap();
    let jwks_uri = format!("http://{}/keys", issuer.addr);
    issuer.answer(Answer::ok(
        serde_json::json!({ "issuer": "https://id.example", "jwks_uri": jwks_uri }).to_string(),
    ));
    let builder = RemoteJwks::discover(discovery.clone(), "https://id.example")
        .await
        .unwrap();
    assert!(format!("{builder:?}").contains(&jwks_uri), "{builder:?}");

    // Another issuer's document is refused, not trusted for its keys.
    let error = RemoteJwks::discover(discovery.clone(), "https://other.example")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("names issuer"), "{error}");
    issuer.answer(Answer::ok("{}"));
    assert!(
        RemoteJwks::discover(discovery, "https://id.example")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn refetch_picks_up_a_rotation() {
    let old = issuer_keys(&["old"]);
    let issuer = Issuer::start(jwks_body(&old)).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(LONG)
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    eventually("the first fetch", || {
        jwks.keys().find(Some("old")).is_some()
    })
    .await;
    let epoch = jwks.keys().epoch();

    issuer.answer(jwks_body(&issuer_keys(&["new"])));
    fetch_finished(jwks.refetch().expect("a fetch must start")).await;

    assert!(jwks.keys().find(Some("new")).is_some());
    assert!(
        jwks.keys().find(Some("old")).is_none(),
        "the old key was withdrawn"
    );
    assert!(
        jwks.keys().epoch() > epoch,
        "dropping a key must move the epoch"
    );
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let min_refetch_interval = Duration::from_millis(500);
    let keys = issuer_keys(&["k1"]);
    let issuer = Issuer::start(jwks_body(&keys)).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(LONG)
        .min_refetch_interval(min_refetch_interval)
        .build()
        .unwrap();
    eventually("the first fetch", || jwks.keys().find(Some("k1")).is_some()).await;
    // The first fetch counts against the rate limit too.
    assert!(jwks.refetch().is_none(), "a fetch has just been made");
    sleep(min_refetch_interval).await;

    keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    issuer.answer(jwks_body(&keys));
    fetch_finished(jwks.refetch().expect("the rate limit has passed")).await;
    assert!(jwks.keys().find(Some("k2")).is_some());

    assert!(
        jwks.refetch().is_none(),
        "a second refetch right after is refused"
    );
    assert_eq!(issuer.requests(), 2, "first fetch and one refetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refetches_share_one_request() {
    const WAITERS: usize = 16;
    let keys = issuer_keys(&["k1"]);
    let issuer = Issuer::start(jwks_body(&keys)).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(LONG)
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    eventually("the first fetch", || jwks.keys().find(Some("k1")).is_some()).await;

    issuer.hold_answers(true);
    keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    issuer.answer(jwks_body(&keys));
    let first = jwks.refetch().expect("a fetch must start");
    eventually("the refetch to reach the issuer", || issuer.requests() == 2).await;

    let subscribed = Arc::new(Barrier::new(WAITERS + 1));
    let mut waiters = JoinSet::new();
    for _ in 0..WAITERS {
        let jwks = jwks.clone();
        let subscribed = Arc::clone(&subscribed);
        waiters.spawn(async move {
            let notified = jwks.refetch().expect("joins the running fetch");
            subscribed.wait().await;
            fetch_finished(notified).await;
            jwks.keys().find(Some("k2")).is_some()
        });
    }
    timeout(SOON, subscribed.wait()).await.unwrap();
    issuer.hold_answers(false);
    fetch_finished(first).await;
    while let Some(saw_new_key) = waiters.join_next().await {
        assert!(saw_new_key.unwrap());
    }
    // Long enough for a stray second request to arrive on loopback.
    sleep(Duration::from_millis(50)).await;
    assert_eq!(issuer.requests(), 2, "one request for all the refetches");
}

#[tokio::test]
async fn failed_fetches_keep_the_old_keys_and_wake_waiters() {
    let keys = issuer_keys(&["k1"]);
    let mut issuer = Issuer::start(jwks_body(&keys)).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(LONG)
        .min_refetch_interval(Duration::ZERO)
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    eventually("the first fetch", || jwks.keys().find(Some("k1")).is_some()).await;

    // Each would replace "k1" with "other" if it were taken for a good answer.
    let other = serde_json::to_string(&issuer_keys(&["other"]).to_jwks()).unwrap();
    let unusable = serde_json::json!({ "keys": [
        { "kty": "oct", "kid": "secret", "k": "c2VjcmV0" },
        { "kty": "OKP", "crv": "X25519", "kid": "x", "x": "AAAA" },
    ]});
    let failures = [
        (
            "500",
            Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: other.clone().into(),
            },
        ),
        ("garbage", Answer::ok(&b"<html>oops</html>"[..])),
        ("no keys", Answer::ok(&br#"{"keys":[]}"#[..])),
        ("no usable key", Answer::ok(unusable.to_string())),
        (
            "2 MiB body",
            Answer::ok(format!("{other}{}", " ".repeat(2 << 20))),
        ),
    ];
    for (what, answer) in failures {
        let before = issuer.requests();
        issuer.answer(answer);
        fetch_finished(jwks.refetch().expect("a fetch must start")).await;
        assert_eq!(issuer.requests(), before + 1, "{what}: one fetch");
        assert_eq!(jwks.keys().kids(), ["k1"], "{what}: old keys kept");
    }
    assert_eq!(jwks.fetch_counts().failed, 5, "every failure counted");
    assert_eq!(jwks.fetch_counts().succeeded, 1);

    issuer.answer(Answer::ok(other));
    issuer.hold_answers(true);
    fetch_finished(jwks.refetch().expect("a fetch must start")).await;
    assert_eq!(jwks.keys().kids(), ["k1"], "timeout: old keys kept");

    issuer.stop().await;
    fetch_finished(jwks.refetch().expect("a fetch must start")).await;
    let signature = keys.signing_key().unwrap().sign(b"message").unwrap();
    assert_eq!(
        jwks.keys()
            .verify(Some("k1"), SigningAlgorithm::EdDSA, b"message", &signature),
        Ok(()),
        "issuer down: old key still verifies"
    );
}

#[tokio::test]
async fn failed_fetch_is_retried_before_the_refresh_interval() {
    let issuer = Issuer::start(Answer {
        status: StatusCode::SERVICE_UNAVAILABLE,
        body: Bytes::new(),
    })
    .await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(LONG)
        .min_refetch_interval(LONG)
        .build()
        .unwrap();
    eventually("the first fetch", || issuer.requests() == 1).await;

    issuer.answer(jwks_body(&issuer_keys(&["k1"])));
    eventually("the retry", || jwks.keys().find(Some("k1")).is_some()).await;
}

#[tokio::test]
async fn periodic_refresh_picks_up_changes() {
    let keys = issuer_keys(&["k1"]);
    let issuer = Issuer::start(jwks_body(&keys)).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(Duration::from_millis(100))
        .min_refetch_interval(LONG)
        .build()
        .unwrap();
    eventually("the first fetch", || jwks.keys().find(Some("k1")).is_some()).await;

    keys.set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    issuer.answer(jwks_body(&keys));
    eventually("a periodic refresh", || {
        jwks.keys().find(Some("k2")).is_some()
    })
    .await;
}

#[test]
fn build_needs_a_tokio_runtime() {
    let error = RemoteJwks::builder("http://127.0.0.1:9/jwks".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

#[tokio::test]
async fn build_checks_the_url() {
    for uri in ["ftp://issuer.example/jwks", "/jwks"] {
        let error = RemoteJwks::builder(uri.parse().unwrap())
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("JWKS URL"), "{uri}: {error}");
    }
    let error = RemoteJwks::builder("ftp://issuer.example/jwks".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("\"ftp\""), "{error}");

    let https = RemoteJwks::builder("https://127.0.0.1:9/jwks".parse().unwrap()).build();
    assert_eq!(https.is_ok(), cfg!(feature = "rustls"));
}

#[tokio::test]
async fn dropping_every_handle_stops_the_refresh_task() {
    let refresh_interval = Duration::from_millis(20);
    let issuer = Issuer::start(jwks_body(&issuer_keys(&["k1"]))).await;
    let jwks = RemoteJwks::builder(issuer.uri())
        .refresh_interval(refresh_interval)
        .build()
        .unwrap();
    let clone = jwks.clone();
    eventually("periodic fetches", || issuer.requests() >= 3).await;

    drop(jwks);
    drop(clone);
    // The task owns the HTTP client: its pooled connection closes once the task is gone.
    eventually("the client to go away", || issuer.open_connections() == 0).await;
    let seen = issuer.requests();
    sleep(refresh_interval * 10).await;
    assert_eq!(
        issuer.requests(),
        seen,
        "no fetch after the last handle is dropped"
    );
}

#[test]
fn refetch_does_not_hang_once_the_runtime_is_gone() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let jwks = {
        let _entered = runtime.enter();
        RemoteJwks::builder("http://127.0.0.1:9/jwks".parse().unwrap())
            .min_refetch_interval(Duration::ZERO)
            .build()
            .unwrap()
    };
    // The first fetch counts as under way: this waits for it.
    let waiting = jwks.refetch().expect("joins the first fetch");

    drop(runtime);
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    other.block_on(fetch_finished(waiting));
    assert!(jwks.refetch().is_none(), "no fetch can start any more");
}
