//! What a response did, in its extensions (`tollgate_issuer::outcome`), and the routing table's
//! names for request paths: what a metrics layer in front of the service reads.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::*;
use tollgate_issuer::outcome::{BatchRevoked, TokenIssued};
use tollgate_issuer::{GrantType, ResponseBody, TokenService};
use tower::ServiceExt;

/// `request` straight into the service, in this process: the extensions are not lost on a wire.
async fn call(server: &Server, request: Request<Full<Bytes>>) -> (Response<()>, Bytes) {
    let response: Response<ResponseBody> = server.service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), body)
}

fn form(path: &str, params: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn an_issued_token_names_its_grant_and_a_refusal_names_nothing() {
    let server = Server::start().await;
    let secret = secret_of("svc");
    let cc = [
        ("client_id", "svc"),
        ("client_secret", secret.as_str()),
        ("grant_type", "client_credentials"),
    ];
    let (response, _) = call(&server, form(TOKEN, &cc)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.extensions().get::<TokenIssued>(),
        Some(&TokenIssued::new(GrantType::ClientCredentials))
    );
    let (response, _) = call(&server, form(TOKEN, &cc[..2])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.extensions().get::<TokenIssued>().is_none());
}

#[tokio::test]
async fn a_batch_revocation_carries_the_count_it_answered() {
    let server = Server::start().await;
    for _ in 0..3 {
        server.cc_token("svc2").await;
    }
    let admin = server.admin_token().await;
    let request = Request::post(BATCH)
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"creationBefore":null,"clientId":"svc2"}"#,
        )))
        .unwrap();
    let (response, body) = call(&server, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answered: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answered["count"], 3);
    assert_eq!(
        response.extensions().get::<BatchRevoked>(),
        Some(&BatchRevoked::new(3))
    );
}

#[test]
fn routes_are_named_by_the_routing_table_only() {
    for path in [TOKEN, REVOCATION, API_REVOKE, BATCH, INTROSPECT, USERINFO] {
        assert_eq!(TokenService::route(path), Some(path));
    }
    for path in ["/", "/metrics", "/connect/token/", "/connect/tokenx", ""] {
        assert_eq!(TokenService::route(path), None, "{path}");
    }
}
