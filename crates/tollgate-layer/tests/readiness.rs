//! The readiness policy: while the revocation state cannot be trusted, every request is refused
//! with 503 (gRPC 14) before its token is looked at; once it can, the layer answers as usual.

mod common;

use common::Fixture;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tollgate_core::SigningAlgorithm;
use tollgate_layer::{
    AlwaysReady, NotReady, Readiness, Rejection, ValidateBearerLayer, VerifiedClaims,
};
use tower::{Layer, Service, ServiceExt};

/// The inner service: answers with the subject it was handed.
async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
    let who = req
        .extensions()
        .get::<VerifiedClaims>()
        .map(|c| c.sub.clone())
        .unwrap_or_else(|| "anonymous".to_owned());
    Ok(Response::new(who))
}

fn request(grpc: bool, token: Option<&str>) -> Request<()> {
    let mut req = Request::builder().uri("/orders");
    if grpc {
        req = req.header(CONTENT_TYPE, "application/grpc");
    }
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(()).unwrap()
}

async fn call(layer: &ValidateBearerLayer, req: Request<()>) -> Response<String> {
    layer
        .layer(tower::service_fn(echo))
        .oneshot(req)
        .await
        .unwrap()
}

fn header<'a>(res: &'a Response<String>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// A feed follower's view of its health, as `tollgate-redis` keeps it: two atomics.
#[derive(Default)]
struct Feed {
    synced: AtomicBool,
    stale: AtomicBool,
}

impl Readiness for Feed {
    fn check(&self) -> Result<(), NotReady> {
        if !self.synced.load(Ordering::Acquire) {
            Err(NotReady::NotSynced)
        } else if self.stale.load(Ordering::Acquire) {
            Err(NotReady::Stale)
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn not_ready_is_503_with_retry_after_for_both_reasons_whatever_the_token() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let good = fx.mint(|_| {});
    for (reason, description) in [
        (NotReady::NotSynced, "revocation state not yet synchronised"),
        (NotReady::Stale, "revocation state is stale"),
    ] {
        let layer =
            ValidateBearerLayer::new(fx.verifier.clone()).readiness(Arc::new(move || Err(reason)));
        // A valid token, a bad one and none at all get the same answer: nothing is judged.
        for token in [Some(good.as_str()), Some("a.b.c"), None] {
            let res = call(&layer, request(false, token)).await;
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{reason}");
            assert_eq!(header(&res, RETRY_AFTER.as_str()), Some("1"));
            assert_eq!(header(&res, WWW_AUTHENTICATE.as_str()), None);
            assert_eq!(res.body(), "", "the inner service must not run");
        }
        assert_eq!(reason.to_string(), description);
    }
}

#[tokio::test]
async fn not_ready_grpc_requests_get_unavailable() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let good = fx.mint(|_| {});
    for reason in [NotReady::NotSynced, NotReady::Stale] {
        let layer =
            ValidateBearerLayer::new(fx.verifier.clone()).readiness(Arc::new(move || Err(reason)));
        for token in [Some(good.as_str()), None] {
            let res = call(&layer, request(true, token)).await;
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "gRPC answers trailers-only 200"
            );
            assert_eq!(header(&res, "grpc-status"), Some("14"));
            assert_eq!(header(&res, "grpc-message"), Some(reason.description()));
            assert_eq!(header(&res, "content-type"), Some("application/grpc"));
            assert_eq!(res.body(), "");
        }
    }
}

#[tokio::test]
async fn ready_layers_answer_as_without_a_readiness() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let token = fx.mint(|_| {});
    let plain = ValidateBearerLayer::new(fx.verifier.clone());
    let always = plain.clone().readiness(Arc::new(AlwaysReady));
    let closure = plain.clone().readiness(Arc::new(|| Ok(())));
    for layer in [&plain, &always, &closure] {
        let res = call(layer, request(false, Some(&token))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "alice");
        let res = call(layer, request(false, None)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&res, WWW_AUTHENTICATE.as_str()),
            Some("Bearer realm=\"tollgate\"")
        );
        let res = call(layer, request(false, Some("a.b.c"))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = call(layer, request(true, None)).await;
        assert_eq!(header(&res, "grpc-status"), Some("16"));
    }
}

#[tokio::test]
async fn the_answer_follows_the_feed_at_runtime() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let token = fx.mint(|_| {});
    let feed = Arc::new(Feed::default());
    // One service, built once: readiness is asked per request, not when the layer is applied.
    let mut service = ValidateBearerLayer::new(fx.verifier.clone())
        .readiness(feed.clone())
        .layer(tower::service_fn(echo));
    let mut status = async |token: Option<&str>| {
        let res = service
            .ready()
            .await
            .unwrap()
            .call(request(false, token))
            .await
            .unwrap();
        res.status()
    };

    assert_eq!(status(Some(&token)).await, StatusCode::SERVICE_UNAVAILABLE);
    feed.synced.store(true, Ordering::Release);
    assert_eq!(status(Some(&token)).await, StatusCode::OK);
    assert_eq!(status(None).await, StatusCode::UNAUTHORIZED);
    feed.stale.store(true, Ordering::Release);
    assert_eq!(status(Some(&token)).await, StatusCode::SERVICE_UNAVAILABLE);
    feed.stale.store(false, Ordering::Release);
    assert_eq!(status(Some(&token)).await, StatusCode::OK);
}

#[tokio::test]
async fn a_closure_is_a_readiness_and_is_asked_once_per_request() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let token = fx.mint(|_| {});
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let layer = ValidateBearerLayer::new(fx.verifier.clone()).readiness(Arc::new(move || {
        // The first two requests find the feed unsynced.
        match count.fetch_add(1, Ordering::Relaxed) {
            0 | 1 => Err(NotReady::NotSynced),
            _ => Ok(()),
        }
    }));
    for expected in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::OK,
    ] {
        assert_eq!(
            call(&layer, request(false, Some(&token))).await.status(),
            expected
        );
    }
    assert_eq!(asked.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn optional_mode_fails_closed_too() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let layer = ValidateBearerLayer::new(fx.verifier.clone())
        .optional()
        .readiness(Arc::new(|| Err(NotReady::Stale)));
    let res = call(&layer, request(false, None)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_rejection_policy_receives_unavailable() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let layer = ValidateBearerLayer::new(fx.verifier.clone())
        .readiness(Arc::new(|| Err(NotReady::NotSynced)))
        .on_rejection(|rejection: &Rejection, _: &http::HeaderMap| {
            let mut res = Response::new(format!("{rejection}"));
            *res.status_mut() = rejection.status();
            assert_eq!(rejection, &Rejection::Unavailable(NotReady::NotSynced));
            assert_eq!(rejection.grpc_status(), 14);
            assert_eq!(rejection.error_code(), None);
            res
        });
    let res = layer
        .layer(tower::service_fn(echo))
        .oneshot(request(false, None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body(), "revocation state not yet synchronised");
}
