//! The Shared Signals receiver against a transmitter written from the specifications, over real
//! sockets: push and poll deliver every supported event, the index refuses exactly the right
//! tokens, every invalid SET is refused with its reason, the push endpoint's authorization,
//! readiness while the transmitter is away, and (with Redis) a SET whose cutoff could not be
//! published is delivered again and applied later. The transmitter is the crate's test kit
//! (`tollgate_signals::testing`, feature `test-util`).

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm, TokenIdentity, UnixMillis, jws};
use tollgate_signals::ssf::event_types::{
    CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED, RISC_ACCOUNT_DISABLED, RISC_ACCOUNT_PURGED,
    RISC_CREDENTIAL_COMPROMISE, RISC_SESSIONS_REVOKED, STREAM_UPDATED, VERIFICATION,
};
use tollgate_signals::testing::{Transmitter, now};
use tollgate_signals::{Publish, SsfPush, SsfReceiver, SsfTask, StreamState};

const AUDIENCE: &str = "https://api.example.com";
const BEARER: &str = "management-token";
const PUSH_AUTHORIZATION: &str = "Bearer push-secret";
/// The token issuers the transmitter speaks for; the first is the default (`opaque` subjects).
const ID_A: &str = "https://id.example.com";
const ID_B: &str = "https://partner.example.com";
/// An issuer the transmitter does not speak for.
const OTHER: &str = "https://other.example.org";
const CAEP_ASSURANCE_LEVEL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change";

struct Harness {
    tx: Transmitter,
    receiver: SsfReceiver,
    index: Arc<RevocationIndex>,
    push_url: Option<String>,
    _task: SsfTask,
    _push_server: Option<JoinHandle<()>>,
}

/// A receiver polling a fresh transmitter, publishing to `publisher` (default: its index).
async fn poll_harness(publisher: Option<Box<dyn FnOnce() -> Box<dyn Publish>>>) -> Harness {
    let tx = Transmitter::start(AUDIENCE, BEARER).await;
    let index = Arc::new(RevocationIndex::new());
    let mut builder = builder(&tx);
    builder = match publisher {
        Some(make) => builder.publisher(PublishBox(make())),
        None => builder.publisher(index.clone()),
    };
    let receiver = builder.build().unwrap();
    let task = receiver.start().unwrap();
    Harness {
        tx,
        receiver,
        index,
        push_url: None,
        _task: task,
        _push_server: None,
    }
}

/// A receiver whose push endpoint is served on 127.0.0.1, requiring `PUSH_AUTHORIZATION`.
async fn push_harness() -> Harness {
    push_harness_with(|index| Box::new(index)).await
}

async fn push_harness_with(
    publisher: impl FnOnce(Arc<RevocationIndex>) -> Box<dyn Publish>,
) -> Harness {
    let tx = Transmitter::start(AUDIENCE, BEARER).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let push_url = format!(
        "http://127.0.0.1:{}/ssf/events",
        listener.local_addr().unwrap().port()
    );
    let index = Arc::new(RevocationIndex::new());
    let receiver = builder(&tx)
        .push(push_url.clone(), Some(PUSH_AUTHORIZATION.to_owned()))
        .publisher(PublishBox(publisher(index.clone())))
        .build()
        .unwrap();
    let server = serve_push(listener, receiver.push_service());
    let task = receiver.start().unwrap();
    Harness {
        tx,
        receiver,
        index,
        push_url: Some(push_url),
        _task: task,
        _push_server: Some(server),
    }
}

fn builder(tx: &Transmitter) -> tollgate_signals::SsfReceiverBuilder {
    SsfReceiver::builder(tx.issuer(), AUDIENCE)
        .bearer_token(BEARER)
        .token_issuers([ID_A, ID_B])
        .poll_interval(Duration::from_millis(50))
        .status_interval(Duration::from_millis(50))
        .max_silence(Duration::from_secs(2))
        .retry(Duration::from_millis(50), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(2))
}

/// A boxed publisher, as the builder takes any `impl Publish`.
struct PublishBox(Box<dyn Publish>);

impl Publish for PublishBox {
    fn publish<'a>(
        &'a self,
        events: &'a [tollgate_core::RevocationEvent],
    ) -> tollgate_signals::BoxFuture<'a, Result<(), tollgate_signals::PublishError>> {
        self.0.publish(events)
    }
}

/// Publishes to an index, except while `down`: a publisher whose Redis is away.
#[derive(Clone)]
struct Flaky {
    index: Arc<RevocationIndex>,
    down: Arc<AtomicBool>,
}

impl Publish for Flaky {
    fn publish<'a>(
        &'a self,
        events: &'a [tollgate_core::RevocationEvent],
    ) -> tollgate_signals::BoxFuture<'a, Result<(), tollgate_signals::PublishError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(tollgate_signals::PublishError::new("down")) });
        }
        self.index.publish(events)
    }
}

fn serve_push(listener: TcpListener, push: SsfPush) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(push.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    })
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the index refuses a token of `issuer` for `sub` (in session `sid`) issued `age`
/// seconds ago.
fn refused(index: &RevocationIndex, issuer: &str, sub: &str, sid: Option<&str>, age: i64) -> bool {
    index
        .check(&TokenIdentity {
            jti: "at-1",
            grant_id: None,
            tenant: "/",
            subject: sub,
            client_id: "web",
            issuer,
            session: sid,
            issued_at: UnixMillis::from_secs(now() - age),
        })
        .is_err()
}

fn iss_sub(iss: &str, sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": iss, "sub": sub})
}

fn opaque(id: &str) -> Value {
    json!({"format": "opaque", "id": id})
}

/// One SET of every event type the receiver acts on, and one it ignores.
fn every_event(tx: &Transmitter) -> Vec<(String, String)> {
    let legacy_subject = {
        // A transmitter before SSF 1.0: the subject inside the event, no sub_id.
        tx.claims(
            RISC_ACCOUNT_DISABLED,
            Value::Null,
            json!({"subject": {"subject_type": "iss-sub", "iss": ID_A, "sub": "dave"}}),
        )
    };
    [
        tx.claims(
            CAEP_SESSION_REVOKED,
            // `device` is not critical at this transmitter: ignored.
            json!({"format": "complex", "user": iss_sub(ID_A, "alice"), "session": opaque("s-1"), "device": opaque("laptop")}),
            json!({"initiating_entity": "policy", "reason_admin": {"en": "Landspeed"}}),
        ),
        tx.claims(CAEP_SESSION_REVOKED, iss_sub(ID_B, "bob"), json!({})),
        tx.claims(
            CAEP_CREDENTIAL_CHANGE,
            opaque("carol"),
            json!({"credential_type": "password", "change_type": "update", "event_timestamp": now() - 100}),
        ),
        legacy_subject,
        tx.claims(RISC_ACCOUNT_PURGED, iss_sub(ID_B, "erin"), json!({})),
        tx.claims(
            RISC_CREDENTIAL_COMPROMISE,
            json!({"format": "complex", "user": opaque("frank")}),
            json!({"credential_type": "password"}),
        ),
        tx.claims(RISC_SESSIONS_REVOKED, iss_sub(ID_A, "grace"), json!({})),
        tx.claims(CAEP_SESSION_REVOKED, opaque("s-9"), json!({})),
        tx.claims(
            CAEP_ASSURANCE_LEVEL_CHANGE,
            iss_sub(ID_A, "heidi"),
            json!({"namespace": "NIST-AAL", "current_level": "nist-aal1"}),
        ),
    ]
    .iter()
    .map(|claims| tx.set(claims))
    .collect()
}

/// What [`every_event`] revokes, and nothing more: each cutoff for its issuer only.
fn assert_every_event_applied(index: &RevocationIndex) {
    // A session of alice at ID_A: that session only, not her other one, not ID_B's same sid.
    assert!(refused(index, ID_A, "alice", Some("s-1"), 60));
    assert!(!refused(index, ID_A, "alice", Some("s-2"), 60));
    assert!(!refused(index, ID_B, "alice", Some("s-1"), 60));
    // Every session of bob at ID_B; ID_A's bob is someone else.
    assert!(refused(index, ID_B, "bob", None, 60));
    assert!(refused(index, ID_B, "bob", Some("s-5"), 60));
    assert!(!refused(index, ID_A, "bob", None, 60));
    // carol (opaque: ID_A's) as of the event's own time, 100 s ago.
    assert!(refused(index, ID_A, "carol", None, 120));
    assert!(!refused(index, ID_A, "carol", None, 60));
    assert!(!refused(index, ID_B, "carol", None, 120));
    assert!(refused(index, ID_A, "dave", None, 60));
    assert!(!refused(index, ID_B, "dave", None, 60));
    assert!(refused(index, ID_B, "erin", None, 60));
    assert!(!refused(index, ID_A, "erin", None, 60));
    assert!(refused(index, ID_A, "frank", None, 60));
    assert!(refused(index, ID_A, "grace", None, 60));
    // An opaque id in session-revoked: as a sid and as a sub, of ID_A only.
    assert!(refused(index, ID_A, "zoe", Some("s-9"), 60));
    assert!(refused(index, ID_A, "s-9", None, 60));
    assert!(!refused(index, ID_B, "zoe", Some("s-9"), 60));
    // An event type that revokes nothing.
    assert!(!refused(index, ID_A, "heidi", None, 60));
    // Tokens issued after the cutoff's second pass.
    assert!(!refused(index, ID_A, "grace", None, -2));
}

#[tokio::test]
async fn push_verifies_the_stream_and_delivers_every_supported_event() {
    let h = push_harness().await;
    wait_until("the pushed stream verified", || h.receiver.ready()).await;
    let status = h.receiver.status();
    assert!(
        status.verified && status.stream_id == h.tx.stream_id(),
        "{status:?}"
    );
    assert!(
        status.last_push.is_some(),
        "the verification event was pushed"
    );
    let before = h.receiver.stats().snapshot();
    for (jti, set) in every_event(&h.tx) {
        let (code, body) = h.tx.push(&set).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{jti}: {body}");
    }
    assert_every_event_applied(&h.index);
    let stats = h.receiver.stats().snapshot();
    assert_eq!((stats.ignored, stats.invalid), (1, 0), "{stats:?}");
    assert_eq!(stats.applied - before.applied, 8, "{stats:?}");
    assert_eq!(stats.received - before.received, 9, "{stats:?}");
}

#[tokio::test]
async fn poll_verifies_the_stream_and_acknowledges_every_event_once_applied() {
    let h = poll_harness(None).await;
    wait_until("the polled stream verified", || h.receiver.ready()).await;
    assert!(h.receiver.status().last_poll.is_some());
    let before = h.receiver.stats().snapshot();
    let sets = every_event(&h.tx);
    for (jti, set) in &sets {
        h.tx.enqueue(jti, set);
    }
    wait_until("every SET acknowledged", || {
        let acked = h.tx.acked();
        sets.iter().all(|(jti, _)| acked.contains(jti))
    })
    .await;
    assert_every_event_applied(&h.index);
    assert_eq!(h.tx.queued(), 0);
    assert!(h.tx.set_errs().is_empty(), "{:?}", h.tx.set_errs());
    let stats = h.receiver.stats().snapshot();
    assert_eq!(
        (stats.applied - before.applied, stats.ignored, stats.invalid),
        (8, 1, 0),
        "{stats:?}"
    );
}

/// Every SET a receiver must refuse: the case, the SET, its RFC 8935 error, a part of its
/// description.
fn refused_sets(tx: &Transmitter) -> Vec<(&'static str, String, &'static str, &'static str)> {
    let valid = || tx.claims(CAEP_SESSION_REVOKED, iss_sub(ID_A, "alice"), json!({}));
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut claims = valid();
        f(claims.as_object_mut().unwrap());
        tx.sign("secevent+jwt", &claims)
    };
    let impostor = KeySet::generate(SigningAlgorithm::ES256, "tx-1").unwrap();
    let forged = jws::encode(&impostor.signing_key().unwrap(), "secevent+jwt", &valid()).unwrap();
    vec![
        ("bad signature", forged, "invalid_key", "invalid signature"),
        (
            "wrong iss",
            edit(&|c| _ = c.insert("iss".into(), json!("https://evil.example"))),
            "invalid_issuer",
            "iss",
        ),
        (
            "wrong aud",
            edit(&|c| _ = c.insert("aud".into(), json!(["https://other-api.example"]))),
            "invalid_audience",
            "aud",
        ),
        (
            "stale iat",
            edit(&|c| _ = c.insert("iat".into(), json!(now() - 25 * 3600))),
            "invalid_request",
            "older than this receiver accepts",
        ),
        (
            "two events",
            edit(&|c| {
                c.insert(
                    "events".into(),
                    json!({CAEP_SESSION_REVOKED: {}, RISC_ACCOUNT_DISABLED: {}}),
                );
            }),
            "invalid_request",
            "exactly one event",
        ),
        (
            "unsupported subject format",
            edit(&|c| {
                c.insert(
                    "sub_id".into(),
                    json!({"format": "email", "email": "alice@example.com"}),
                );
            }),
            "invalid_request",
            "subject format email is not supported: tokens are matched by sub",
        ),
        (
            "iss_sub of an issuer not allowed",
            edit(&|c| _ = c.insert("sub_id".into(), iss_sub(OTHER, "alice"))),
            "access_denied",
            "not this transmitter's to revoke",
        ),
        (
            "untyped",
            tx.sign("JWT", &valid()),
            "invalid_request",
            "typ must be secevent+jwt",
        ),
        (
            "a critical subject member",
            edit(&|c| {
                c.insert(
                    "sub_id".into(),
                    json!({"format": "complex", "user": opaque("alice"), "tenant": opaque("t-1")}),
                );
            }),
            "invalid_request",
            "tenant is critical",
        ),
        (
            "a verification state never asked for",
            tx.sign(
                "secevent+jwt",
                &tx.claims(VERIFICATION, Value::Null, json!({"state": "forged"})),
            ),
            "invalid_state",
            "state",
        ),
    ]
}

#[tokio::test]
async fn every_refused_set_is_a_400_with_its_reason_and_revokes_nothing() {
    let h = push_harness().await;
    wait_until("the pushed stream verified", || h.receiver.ready()).await;
    let cases = refused_sets(&h.tx);
    let count = cases.len() as u64;
    for (case, set, err, description) in cases {
        let (code, body) = h.tx.push(&set).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert_eq!(body["err"], err, "{case}: {body}");
        let text = body["description"].as_str().unwrap_or_default();
        assert!(text.contains(description), "{case}: {body}");
        assert_eq!(h.index.stats().cutoffs, 0, "{case}: nothing revoked");
    }
    assert_eq!(h.receiver.stats().snapshot().invalid, count);

    // A replayed jti: accepted once, refused after.
    let (_, set) = h.tx.set(
        &h.tx
            .claims(RISC_ACCOUNT_DISABLED, iss_sub(ID_A, "ivan"), json!({})),
    );
    assert_eq!(h.tx.push(&set).await.0, StatusCode::ACCEPTED);
    let (code, body) = h.tx.push(&set).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["err"], "invalid_request");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("already received")
    );
    assert_eq!(h.receiver.stats().snapshot().replayed, 1);
    let reasons = h.receiver.stats().refused_by_reason();
    for reason in [
        "signature",
        "issuer",
        "audience",
        "stale",
        "events",
        "subject_format",
        "token_issuer",
        "type",
        "subject",
        "state",
        "replayed",
    ] {
        assert_eq!(reasons.get(reason), Some(&1), "{reason}: {reasons:?}");
    }
}

#[tokio::test]
async fn polled_sets_that_are_refused_are_reported_in_set_errs_and_not_redelivered() {
    let h = poll_harness(None).await;
    wait_until("the polled stream verified", || h.receiver.ready()).await;
    let cases = refused_sets(&h.tx);
    let mut expected = Vec::new();
    for (i, (case, set, err, _)) in cases.into_iter().enumerate() {
        let jti = format!("refused-{i}");
        h.tx.enqueue(&jti, &set);
        expected.push((case, jti, err));
    }
    wait_until("every refusal reported", || h.tx.queued() == 0).await;
    let errors = h.tx.set_errs();
    for (case, jti, err) in expected {
        assert_eq!(errors[&jti]["err"], err, "{case}: {errors:?}");
    }
    assert_eq!(h.index.stats().cutoffs, 0);
    assert!(h.tx.acked().iter().all(|jti| !jti.starts_with("refused")));
}

async fn push_raw(url: &str, request: http::request::Builder, body: &str) -> (StatusCode, Value) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = request.uri(url).body(Full::from(body.to_owned())).unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_push_endpoint_requires_its_authorization_and_a_set() {
    let h = push_harness().await;
    wait_until("the pushed stream verified", || h.receiver.ready()).await;
    let url = h.push_url.as_deref().unwrap();
    let (_, set) = h.tx.set(
        &h.tx
            .claims(CAEP_SESSION_REVOKED, iss_sub(ID_A, "judy"), json!({})),
    );
    let post = || Request::post("/").header("content-type", "application/secevent+jwt");

    let (code, body) = push_raw(url, post(), &set).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "no Authorization: {body}");
    assert_eq!(body["err"], "authentication_failed");
    let wrong = post().header("authorization", "Bearer push-secreT");
    assert_eq!(push_raw(url, wrong, &set).await.0, StatusCode::UNAUTHORIZED);
    let longer = post().header("authorization", "Bearer push-secret2");
    assert_eq!(
        push_raw(url, longer, &set).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        !refused(&h.index, ID_A, "judy", None, 60),
        "nothing applied"
    );

    let get = Request::get("/").header("authorization", PUSH_AUTHORIZATION);
    assert_eq!(
        push_raw(url, get, "").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let json = Request::post("/")
        .header("content-type", "application/json")
        .header("authorization", PUSH_AUTHORIZATION);
    let (code, body) = push_raw(url, json, &set).await;
    assert_eq!(
        (code, &body["err"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    let huge = post().header("authorization", PUSH_AUTHORIZATION);
    let huge_body = "a".repeat(20_000);
    assert_eq!(
        push_raw(url, huge, &huge_body).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let right = post().header("authorization", PUSH_AUTHORIZATION);
    assert_eq!(push_raw(url, right, &set).await.0, StatusCode::ACCEPTED);
    assert!(refused(&h.index, ID_A, "judy", None, 60));
    assert_eq!(
        h.receiver.stats().refused_by_reason().get("authentication"),
        Some(&3)
    );
}

#[tokio::test]
async fn readiness_is_false_while_the_transmitter_is_away_and_true_again_after() {
    let mut h = poll_harness(None).await;
    wait_until("ready", || h.receiver.ready()).await;
    h.tx.stop();
    wait_until("not ready while the transmitter is away", || {
        !h.receiver.ready()
    })
    .await;
    let status = h.receiver.status();
    assert!(status.last_error.is_some(), "{status:?}");
    let polls = h.tx.polls();
    h.tx.restart().await;
    wait_until("ready again", || h.receiver.ready()).await;
    assert!(h.tx.polls() > polls, "polling resumed");
    // Delivery resumes where it was.
    let (jti, set) = h.tx.set(&h.tx.claims(
        RISC_ACCOUNT_DISABLED,
        iss_sub(ID_A, "mallory"),
        json!({}),
    ));
    h.tx.enqueue(&jti, &set);
    wait_until("acknowledged", || h.tx.acked().contains(&jti)).await;
    assert!(refused(&h.index, ID_A, "mallory", None, 60));
}

#[tokio::test]
async fn a_stream_the_transmitter_pauses_is_not_ready_until_enabled_again() {
    let h = push_harness().await;
    wait_until("ready", || h.receiver.ready()).await;
    let stream = h.tx.stream_id().unwrap();
    let update = |status: &str| {
        h.tx.set(&h.tx.claims(
            STREAM_UPDATED,
            opaque(&stream),
            json!({"status": status, "reason": "maintenance"}),
        ))
        .1
    };
    // The transmitter also answers the status endpoint as it says: keep the two in step.
    h.tx.set_status("paused");
    assert_eq!(h.tx.push(&update("paused")).await.0, StatusCode::ACCEPTED);
    assert_eq!(h.receiver.status().stream_state, StreamState::Paused);
    assert!(!h.receiver.ready());
    h.tx.set_status("enabled");
    assert_eq!(h.tx.push(&update("enabled")).await.0, StatusCode::ACCEPTED);
    wait_until("ready again", || h.receiver.ready()).await;
    // An update about another stream is refused.
    let other = h.tx.set(&h.tx.claims(
        STREAM_UPDATED,
        opaque("someone-else"),
        json!({"status": "disabled"}),
    ));
    let (code, body) = h.tx.push(&other.1).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(h.receiver.status().stream_state, StreamState::Enabled);
}

/// Publishing through Redis: while Redis is stopped, a polled SET is neither acknowledged nor
/// reported; once Redis is back it is delivered again, published and acknowledged, and a
/// follower of the stream refuses the token.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_polled_set_whose_publish_fails_is_delivered_again_and_applied_later() {
    use tollgate_redis::testing::RedisServer;
    use tollgate_redis::wire::Keys;
    use tollgate_redis::{Follower, RedisTarget};
    use tollgate_signals::redis::RedisPublisher;

    let mut redis = RedisServer::start();
    let url = redis.url();
    let target = RedisTarget::new(&url).unwrap();
    let publisher_target = target.clone();
    let h = poll_harness(Some(Box::new(move || {
        Box::new(RedisPublisher::new(publisher_target, Keys::new("ssf")))
    })))
    .await;
    wait_until("ready", || h.receiver.ready()).await;

    redis.kill();
    let (jti, set) = h.tx.set(&h.tx.claims(
        CAEP_CREDENTIAL_CHANGE,
        iss_sub(ID_B, "oscar"),
        json!({"credential_type": "password", "change_type": "revoke"}),
    ));
    h.tx.enqueue(&jti, &set);
    let polls = h.tx.polls();
    wait_until("delivered a few times", || {
        h.receiver.stats().snapshot().unavailable >= 2 && h.tx.polls() > polls + 2
    })
    .await;
    assert!(
        !h.tx.acked().contains(&jti),
        "not acknowledged while unpublished"
    );
    assert!(h.tx.set_errs().is_empty(), "nor reported as an error");
    assert_eq!(h.tx.queued(), 1);

    redis.restart();
    wait_until("published and acknowledged", || h.tx.acked().contains(&jti)).await;
    let followed = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target, followed.clone())
        .keys(Keys::new("ssf"))
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(Duration::from_secs(10)).await);
    assert!(refused(&followed, ID_B, "oscar", None, 60));
    assert!(!refused(&followed, ID_A, "oscar", None, 60));
}

#[tokio::test]
async fn a_push_whose_cutoff_is_not_published_is_a_503_and_accepted_when_sent_again() {
    let down = Arc::new(AtomicBool::new(false));
    let flaky = down.clone();
    let h = push_harness_with(move |index| Box::new(Flaky { index, down: flaky })).await;
    wait_until("ready", || h.receiver.ready()).await;
    down.store(true, Ordering::SeqCst);
    let (_, set) = h.tx.set(
        &h.tx
            .claims(CAEP_SESSION_REVOKED, iss_sub(ID_A, "peggy"), json!({})),
    );
    let (code, body) = h.tx.push(&set).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(!refused(&h.index, ID_A, "peggy", None, 60));
    assert_eq!(h.receiver.stats().snapshot().unavailable, 1);
    // The transmitter's retry is not a replay: the jti was given back.
    down.store(false, Ordering::SeqCst);
    assert_eq!(h.tx.push(&set).await.0, StatusCode::ACCEPTED);
    assert!(refused(&h.index, ID_A, "peggy", None, 60));
}

#[tokio::test]
async fn a_polled_set_is_acknowledged_only_once_its_cutoff_is_published() {
    let down = Arc::new(AtomicBool::new(false));
    let flaky = down.clone();
    let index = Arc::new(RevocationIndex::new());
    let published = index.clone();
    let h = poll_harness(Some(Box::new(move || {
        Box::new(Flaky {
            index: published,
            down: flaky,
        })
    })))
    .await;
    wait_until("ready", || h.receiver.ready()).await;
    down.store(true, Ordering::SeqCst);
    let (jti, set) = h.tx.set(
        &h.tx
            .claims(RISC_ACCOUNT_PURGED, iss_sub(ID_A, "trent"), json!({})),
    );
    h.tx.enqueue(&jti, &set);
    wait_until("delivered twice", || {
        h.receiver.stats().snapshot().unavailable >= 2
    })
    .await;
    assert!(!h.tx.acked().contains(&jti) && h.tx.set_errs().is_empty());
    down.store(false, Ordering::SeqCst);
    wait_until("acknowledged", || h.tx.acked().contains(&jti)).await;
    assert!(refused(&index, ID_A, "trent", None, 60));
}

#[test]
fn the_builder_refuses_what_cannot_work() {
    let index = Arc::new(RevocationIndex::new());
    let build = |b: tollgate_signals::SsfReceiverBuilder| b.build().map(|_| ()).unwrap_err();
    let base = || {
        SsfReceiver::builder("https://tx.example.com", AUDIENCE)
            .bearer_token(BEARER)
            .publisher(index.clone())
    };
    let credentials = |b: tollgate_signals::SsfReceiverBuilder, endpoint: &str, secret: &str| {
        b.client_credentials(endpoint, "id", secret, None)
    };
    for (case, error, wanted) in [
        (
            "no publisher",
            build(SsfReceiver::builder("https://tx.example.com", AUDIENCE).bearer_token(BEARER)),
            "a publisher is required",
        ),
        (
            "no credentials",
            build(
                SsfReceiver::builder("https://tx.example.com", AUDIENCE).publisher(index.clone()),
            ),
            "needs a bearer_token or client_credentials",
        ),
        (
            "both credentials",
            build(credentials(base(), "https://tx.example.com/token", "s")),
            "either bearer_token or client_credentials, not both",
        ),
        (
            "a token endpoint that is no URL",
            build(credentials(
                SsfReceiver::builder("https://tx.example.com", AUDIENCE).publisher(index.clone()),
                "/token",
                "s",
            )),
            "token endpoint",
        ),
        (
            "no client secret",
            build(credentials(
                SsfReceiver::builder("https://tx.example.com", AUDIENCE).publisher(index.clone()),
                "https://tx.example.com/token",
                "",
            )),
            "client_secret",
        ),
        (
            "not a URL",
            build(base().token_issuers(["x"]).push("not a url", None)),
            "push endpoint_url",
        ),
        (
            "an issuer that is no URL",
            build(
                SsfReceiver::builder("tx.example.com", AUDIENCE)
                    .bearer_token(BEARER)
                    .publisher(index.clone()),
            ),
            "not an http or https URL",
        ),
        (
            "no audience",
            build(
                SsfReceiver::builder("https://tx.example.com", "")
                    .bearer_token(BEARER)
                    .publisher(index.clone()),
            ),
            "audience",
        ),
        (
            "twice",
            build(base().token_issuers([ID_A, ID_A])),
            "configured twice",
        ),
        ("max events", build(base().max_events(0)), "max_events"),
        (
            "zero interval",
            build(base().poll_interval(Duration::ZERO)),
            "poll_interval",
        ),
        (
            "a header that is not one",
            build(base().push("https://api.example.com/ssf", Some("a\nb".into()))),
            "header value",
        ),
    ] {
        assert!(error.to_string().contains(wanted), "{case}: {error}");
    }
}
