//! The Layer in real servers over real sockets: an axum app, a tonic gRPC server (the Layer
//! wrapping one named service), and a plain hyper server speaking HTTP/1.1 and HTTP/2.

#[path = "../crates/tollgate-layer/tests/common/mod.rs"]
mod common;

#[path = "../examples/support/greeter.rs"]
mod greeter;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{Fixture, now_ms};
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tollgate::core::{CutoffScope, RevocationEvent, SigningAlgorithm, UnixMillis};
use tollgate::layer::{NotReady, RequireScopeLayer, ValidateBearerLayer, VerifiedClaims};
use tonic::Code;
use tower::{Layer, ServiceBuilder};

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

struct Answer {
    status: StatusCode,
    challenge: String,
    grpc_status: String,
    body: String,
}

async fn get_with(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: String,
    token: Option<&str>,
    grpc: bool,
) -> Answer {
    let mut req = Request::get(url);
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if grpc {
        req = req.header(CONTENT_TYPE, "application/grpc");
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, challenge, grpc_status) = (
        res.status(),
        header(WWW_AUTHENTICATE.as_str()),
        header("grpc-status"),
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        challenge,
        grpc_status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn http1_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2c_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

#[tokio::test]
async fn axum_app() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let app = Router::new()
        .route(
            "/orders",
            get(|claims: VerifiedClaims| async move { format!("orders of {}", claims.sub) })
                .route_layer(RequireScopeLayer::new("orders:read")),
        )
        .route(
            "/admin",
            get(|| async { "admin" }).route_layer(RequireScopeLayer::new("admin")),
        )
        .route(
            "/me",
            get(|claims: Option<VerifiedClaims>| async move {
                claims.map_or("anonymous".to_owned(), |c| c.sub.clone())
            }),
        )
        .route_layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .route("/health", get(|| async { "ok" }));
    let (l, addr) = listener().await;
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let client = http1_client();
    let url = |p: &str| format!("http://{addr}{p}");

    let token = fx.mint(|_| {});
    let a = get_with(&client, url("/orders"), Some(&token), false).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "orders of alice")
    );
    let a = get_with(&client, url("/me"), Some(&token), false).await;
    assert_eq!(a.body, "alice");
    let a = get_with(&client, url("/health"), None, false).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = get_with(&client, url("/orders"), None, false).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge, "Bearer realm=\"tollgate\"");
    let a = get_with(&client, url("/admin"), Some(&token), false).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.challenge.contains("insufficient_scope"));
    let a = get_with(&client, url("/orders"), Some("not-a-jwt"), false).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.challenge.contains("invalid_token"));

    // Revocation takes effect for the very next request.
    fx.index.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Subject("alice".into()),
        issued_before: UnixMillis(now_ms() + 1),
    });
    let a = get_with(&client, url("/me"), Some(&token), false).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.challenge.contains("revoked"), "{}", a.challenge);
}

#[tokio::test]
async fn tonic_service() {
    let fx = Fixture::new(SigningAlgorithm::ES256);
    // The Layer wraps one named service (feature `tonic`), not the whole server.
    let service = ValidateBearerLayer::new(fx.verifier.clone())
        .layer(RequireScopeLayer::new("orders:read").layer(greeter::GreeterServer));
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
            .await
            .unwrap()
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let token = fx.mint(|_| {});
    let reply = greeter::say_hello(channel.clone(), Some(&token), "Ferris")
        .await
        .unwrap();
    assert_eq!(reply, "Hello, Ferris! (token subject: alice)");

    let status = greeter::say_hello(channel.clone(), None, "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "missing bearer token");

    let status = greeter::say_hello(channel.clone(), Some("a.b.c"), "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let no_scope = fx.mint(|c| c["scope"] = json!("profile"));
    let status = greeter::say_hello(channel.clone(), Some(&no_scope), "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    fx.index.apply(&RevocationEvent::Token {
        jti: fx.verifier.verify(&token).unwrap().jti.clone(),
        expires_at: UnixMillis(now_ms() + 300_000),
    });
    let status = greeter::say_hello(channel, Some(&token), "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token revoked");
}

#[tokio::test]
async fn tonic_service_refuses_while_not_ready() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let synced = Arc::new(AtomicBool::new(false));
    let flag = synced.clone();
    let service = ValidateBearerLayer::new(fx.verifier.clone())
        .readiness(Arc::new(move || {
            if flag.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err(NotReady::NotSynced)
            }
        }))
        .layer(greeter::GreeterServer);
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
            .await
            .unwrap()
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let token = fx.mint(|_| {});
    let status = greeter::say_hello(channel.clone(), Some(&token), "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "revocation state not yet synchronised");

    synced.store(true, Ordering::Release);
    let reply = greeter::say_hello(channel, Some(&token), "Ferris")
        .await
        .unwrap();
    assert_eq!(reply, "Hello, Ferris! (token subject: alice)");
}

#[tokio::test]
async fn plain_hyper_server_http1_and_h2() {
    let fx = Fixture::new(SigningAlgorithm::RS256);
    let (l, addr) = listener().await;
    let svc = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .service_fn(|req: Request<hyper::body::Incoming>| async move {
            let sub = req
                .extensions()
                .get::<VerifiedClaims>()
                .map(|c| c.sub.clone());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                sub.unwrap_or_default(),
            ))))
        });
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let token = fx.mint(|_| {});
    for client in [http1_client(), h2c_client()] {
        let url = format!("http://{addr}/x");
        let a = get_with(&client, url.clone(), Some(&token), false).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));
        let a = get_with(&client, url.clone(), None, false).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        // gRPC-shaped request: trailers-only rejection on HTTP 200.
        let a = get_with(&client, url.clone(), None, true).await;
        assert_eq!((a.status, a.grpc_status.as_str()), (StatusCode::OK, "16"));
        let a = get_with(&client, url.clone(), Some("x.y.z"), true).await;
        assert_eq!(a.grpc_status, "16");
    }
}
