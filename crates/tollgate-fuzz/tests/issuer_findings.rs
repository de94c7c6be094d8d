//! Service bugs the fuzz and schemathesis runs found, kept as regression tests: each failed
//! before its fix in `crates/tollgate-issuer/src/`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tollgate_fuzz::fixture;
use tower::ServiceExt;

async fn send(request: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
    let service = fixture::token_service(fixture::index()).await;
    let Ok(response) = service.oneshot(request).await;
    let status = response.status();
    let Ok(body) = response.into_body().collect().await;
    let body = body.to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// CONTRACT.md, `/connect/token`, `tenant_path` absent: "a user with exactly one tenant gets it".
/// Found while scripting schemathesis: alice (only tenant `/Acme`) signing in without
/// `tenant_path` gets `400 invalid_grant` "invalid username or password" (on the demo binary as
/// here), although her password is right.
#[test]
fn password_grant_defaults_to_the_users_single_tenant() {
    let (status, json) = run(send(
        Request::post("/connect/token")
            .header(
                "authorization",
                format!("Basic {}", STANDARD.encode("web:web-secret")),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=password&username=alice&password=alice-password",
            )))
            .unwrap(),
    ));
    assert_eq!(status, StatusCode::OK, "{json}");
}

/// Issue 12, item 4, found again by schemathesis (ST201, "Missing request body"): a batch
/// revocation without a body (and without a content type) is answered `200 {"count": N}` — a
/// global cutoff. It must be `400`.
///
/// Reproducer against `tollgate serve`:
/// `curl -X POST -H "Authorization: Bearer $ADMIN" $B/api/v2/identity/token/batch-revocation`
#[test]
fn batch_revocation_without_a_body_is_refused() {
    let (status, json) = run(send(
        Request::post("/api/v2/identity/token/batch-revocation")
            .header(
                "authorization",
                format!("Bearer {}", fixture::admin_token()),
            )
            .body(Full::new(Bytes::new()))
            .unwrap(),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
}
