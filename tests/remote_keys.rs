//! The Layer verifying with keys fetched from a real local JWKS endpoint: a token signed with a
//! key the validator has not seen yet makes the request wait for a refetch, rotation works
//! without a restart, and an unreachable issuer leaves the last good keys in place.

#[path = "../crates/tollgate-layer/tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::{AUDIENCE, ISSUER, now_ms};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tollgate::core::{KeySet, RevocationIndex, SigningAlgorithm, SigningKey, jws};
use tollgate::layer::{NotReady, RemoteJwks, ValidateBearerLayer, VerifiedClaims, Verifier};
use tower::{Service, ServiceBuilder, ServiceExt};

/// A JWKS endpoint serving whatever `document` holds; `up` false answers 503.
struct Issuer {
    keys: KeySet,
    up: Arc<Mutex<bool>>,
    hits: Arc<AtomicUsize>,
    url: String,
}

async fn issuer() -> Issuer {
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let up = Arc::new(Mutex::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", l.local_addr().unwrap());
    let (k, u, h) = (keys.clone(), up.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let (k, u, h) = (k.clone(), u.clone(), h.clone());
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                h.fetch_add(1, Ordering::SeqCst);
                let up = *u.lock().unwrap();
                let body = serde_json::to_vec(&k.to_jwks()).unwrap();
                async move {
                    let mut res =
                        Response::new(Full::new(Bytes::from(if up { body } else { vec![] })));
                    if !up {
                        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(res)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Issuer {
        keys,
        up,
        hits,
        url,
    }
}

fn token(key: &SigningKey) -> String {
    let now = now_ms();
    let claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": now / 1000 + 300,
        "iat": now / 1000, "iat_ms": now, "jti": format!("j{now}"), "client_id": "web",
    });
    jws::encode(key, jws::ACCESS_TOKEN_TYP, &claims).unwrap()
}

#[tokio::test]
async fn unknown_kid_waits_for_refetch_and_outage_keeps_keys() {
    let issuer = issuer().await;
    let remote = RemoteJwks::builder(issuer.url.parse().unwrap())
        .min_refetch_interval(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .remote_jwks(remote)
        .revocation_index(Arc::new(RevocationIndex::new()))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(verifier))
        .service_fn(|req: Request<()>| async move {
            let sub = req
                .extensions()
                .get::<VerifiedClaims>()
                .map(|c| c.sub.clone());
            Ok::<_, Infallible>(Response::new(sub.unwrap_or_default()))
        });
    let mut call = async |t: &str| {
        let req = Request::get("/")
            .header("authorization", format!("Bearer {t}"))
            .body(())
            .unwrap();
        let res =
            tokio::time::timeout(Duration::from_secs(5), svc.ready().await.unwrap().call(req))
                .await
                .expect("a request waiting for keys must not hang")
                .unwrap();
        res.status()
    };

    // The very first request may race the initial fetch: it waits for it instead of failing.
    let first = token(&issuer.keys.signing_key().unwrap());
    assert_eq!(call(&first).await, StatusCode::OK);

    // The issuer rotates; a token of the new key waits for a refetch and is accepted.
    tokio::time::sleep(Duration::from_millis(350)).await;
    issuer
        .keys
        .set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    let rotated = token(&issuer.keys.signing_key().unwrap());
    let before = issuer.hits.load(Ordering::SeqCst);
    assert_eq!(call(&rotated).await, StatusCode::OK);
    assert_eq!(
        issuer.hits.load(Ordering::SeqCst),
        before + 1,
        "exactly one refetch"
    );

    // An unknown kid right after: rate-limited, refused at once without another fetch.
    let stranger = SigningKey::generate(SigningAlgorithm::EdDSA, "nobody").unwrap();
    assert_eq!(call(&token(&stranger)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.hits.load(Ordering::SeqCst), before + 1);

    // The issuer goes down: known keys keep working, unknown ones are refused (after a refetch
    // attempt that fails), and nothing hangs.
    *issuer.up.lock().unwrap() = false;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(call(&token(&stranger)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&rotated).await, StatusCode::OK);
    assert_eq!(call(&first).await, StatusCode::OK);
}

#[tokio::test]
async fn readiness_is_asked_again_after_waiting_for_keys() {
    let issuer = issuer().await;
    let remote = RemoteJwks::builder(issuer.url.parse().unwrap())
        .min_refetch_interval(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .remote_jwks(remote)
        .revocation_index(Arc::new(RevocationIndex::new()))
        .build()
        .unwrap();
    // Ready for one more check when `ready_once` is set, then stale while `stale` is.
    let ready_once = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicBool::new(false));
    let (once, gone) = (ready_once.clone(), stale.clone());
    let layer = ValidateBearerLayer::new(verifier).readiness(Arc::new(move || {
        if once.swap(false, Ordering::SeqCst) || !gone.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(NotReady::Stale)
        }
    }));
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut call = async |t: &str| {
        let req = Request::get("/")
            .header("authorization", format!("Bearer {t}"))
            .body(())
            .unwrap();
        let res =
            tokio::time::timeout(Duration::from_secs(5), svc.ready().await.unwrap().call(req))
                .await
                .expect("a request waiting for keys must not hang")
                .unwrap();
        res.status()
    };
    assert_eq!(
        call(&token(&issuer.keys.signing_key().unwrap())).await,
        StatusCode::OK
    );

    // A token of a rotated key passes the first check, waits for the refetch, and meanwhile the
    // feed went stale: the second check refuses it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    issuer
        .keys
        .set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    let rotated = token(&issuer.keys.signing_key().unwrap());
    let before = issuer.hits.load(Ordering::SeqCst);
    ready_once.store(true, Ordering::SeqCst);
    stale.store(true, Ordering::SeqCst);
    assert_eq!(call(&rotated).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        issuer.hits.load(Ordering::SeqCst),
        before + 1,
        "the request waited for a refetch"
    );
    assert!(!ready_once.load(Ordering::SeqCst), "asked before the wait");

    stale.store(false, Ordering::SeqCst);
    assert_eq!(call(&rotated).await, StatusCode::OK);
}
