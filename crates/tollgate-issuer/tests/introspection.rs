//! `POST /connect/introspect` (RFC 7662).
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::StatusCode;
use serde_json::json;
use support::*;
use tollgate_core::{SigningAlgorithm, SigningKey, jws};

#[tokio::test]
async fn introspection_describes_the_callers_own_active_tokens() {
    let server = Server::start().await;
    let tokens = server
        .cc("svc", &[("scope", "reports"), ("tenant_path", "/Org")])
        .await;
    let claims = decode_jwt(&tokens.access).1;
    let answer = server.introspect("svc", &tokens.access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "reports");
    assert_eq!(answer["client_id"], "svc");
    assert_eq!(answer["sub"], "svc");
    assert_eq!(answer["iss"], server.base);
    assert_eq!(answer["tenant"], "/Org");
    for claim in ["exp", "iat", "jti", "aud"] {
        assert_eq!(answer[claim], claims[claim], "{claim}");
    }
    let login = server.login("web", "alice", &[]).await;
    let answer = server.introspect("web", login.refresh()).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "web");
    assert_eq!(answer["sub"], "u-alice");
    assert_eq!(answer["scope"], "orders:read orders:write profile");
    // Once rotated, the old refresh token is inactive; the new one active.
    let refreshed = server.refresh("web", login.refresh(), &[]).await.tokens();
    assert_eq!(
        server.introspect("web", login.refresh()).await,
        json!({"active": false})
    );
    assert_eq!(
        server.introspect("web", refreshed.refresh()).await["active"],
        true
    );
}

#[tokio::test]
async fn introspection_answers_exactly_active_false_for_tokens_dead_or_out_of_sight() {
    let server = Server::start().await;
    let inactive = json!({"active": false});
    let theirs = server.cc_token("svc").await;
    assert_eq!(
        server.introspect("svc2", &theirs).await,
        inactive,
        "another client's token"
    );
    assert_eq!(server.introspect("svc", &theirs).await["active"], true);

    let revoked = server.cc_token("svc").await;
    assert_empty_ok(&server.revoke("svc", &revoked, None).await);
    let cut_off = server.cc_token("svc2").await;
    server
        .batch_count(&server.admin_token().await, json!({"clientId": "svc2"}))
        .await;
    let signing = server.keys.signing_key().unwrap();
    let now = now_ms() / 1000;
    // Expired five seconds ago: inside a validator's clock-skew leeway, yet expired.
    let expired = jws::encode(
        &signing,
        jws::ACCESS_TOKEN_TYP,
        &json!({"iss": server.base, "sub": "svc", "aud": server.base, "exp": now - 5, "iat": now - 65,
                "jti": "expired-1", "client_id": "svc"}),
    )
    .unwrap();
    let foreign_keys = SigningKey::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let foreign = jws::encode(
        &foreign_keys,
        jws::ACCESS_TOKEN_TYP,
        &json!({"iss": server.base, "sub": "svc", "aud": server.base, "exp": now + 300, "iat": now,
                "jti": "foreign-1", "client_id": "svc"}),
    )
    .unwrap();
    for (case, client, token) in [
        ("revoked", "svc", revoked.as_str()),
        ("cut off", "svc2", cut_off.as_str()),
        ("expired", "svc", expired.as_str()),
        ("foreign", "svc", foreign.as_str()),
        (
            "unknown",
            "svc",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        ("garbage", "svc", "%%%"),
        ("resource server, revoked", "rs", revoked.as_str()),
    ] {
        let reply = server
            .post(INTROSPECT)
            .form_as(client, &[("token", token)])
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{case}");
        assert_eq!(reply.json(), inactive, "{case}");
        assert_eq!(
            reply.text().replace(' ', ""),
            r#"{"active":false}"#,
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_resource_server_may_introspect_any_token() {
    let server = Server::start().await;
    let access = server.cc_token("svc").await;
    let answer = server.introspect("rs", &access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "svc");
    let login = server.login("web", "alice", &[]).await;
    assert_eq!(
        server.introspect("rs", login.refresh()).await["active"],
        true
    );
    // A client that is not a resource server sees only its own.
    assert_eq!(
        server.introspect("web2", login.refresh()).await,
        json!({"active": false})
    );
    assert_eq!(
        server.introspect("web2", &login.access).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn introspection_requires_client_authentication_and_a_token() {
    let server = Server::start().await;
    let token = server.cc_token("svc").await;
    let reply = server
        .post(INTROSPECT)
        .form(&[("token", &token)])
        .send()
        .await;
    assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = server
        .post(INTROSPECT)
        .basic("svc", "x")
        .form(&[("token", &token)])
        .send()
        .await;
    assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(reply.header("www-authenticate"), BASIC_CHALLENGE);
    let reply = server.post(INTROSPECT).form_as("svc", &[]).send().await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
}
