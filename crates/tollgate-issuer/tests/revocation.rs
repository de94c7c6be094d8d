//! `POST /connect/revocation` (RFC 7009) and the Revoke Auth Token API.
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use support::*;
use tollgate_core::{SigningAlgorithm, SigningKey, UnixMillis, jws};
use tollgate_issuer::{Store, TokenService};
use tollgate_sqlite::SqliteStore;

#[tokio::test]
async fn a_revoked_access_token_is_refused_by_a_layer_sharing_the_index_once_the_200_is_answered() {
    let server = Server::start().await;
    // Every hint: none, right, wrong (extends the search), unknown (ignored).
    for hint in [
        None,
        Some("access_token"),
        Some("refresh_token"),
        Some("id_token"),
    ] {
        let token = server.cc_token("svc").await;
        assert!(server.accepted(&token).await);
        let reply = server.revoke("svc", &token, hint).await;
        assert_empty_ok(&reply);
        // The very next request, and the index itself, already see it.
        let claims = decode_jwt(&token).1;
        assert!(server.refused_as_revoked(&token).await, "hint {hint:?}");
        assert!(server.app_verifier.verify(&token).is_err());
        assert!(
            server
                .index
                .is_token_revoked(claims["jti"].as_str().unwrap())
        );
        assert_eq!(
            server.introspect("svc", &token).await,
            json!({"active": false})
        );
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_whole_grant() {
    let server = Server::start().await;
    let login = server.login("web", "alice", &[]).await;
    let refreshed = server.refresh("web", login.refresh(), &[]).await.tokens();
    let unrelated = server.cc_token("svc").await;
    assert_empty_ok(
        &server
            .revoke("web", refreshed.refresh(), Some("refresh_token"))
            .await,
    );
    assert!(server.refused_as_revoked(&login.access).await);
    assert!(server.refused_as_revoked(&refreshed.access).await);
    let reply = server.refresh("web", refreshed.refresh(), &[]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(server.accepted(&unrelated).await);
}

#[tokio::test]
async fn a_refresh_token_is_revoked_whatever_the_hint() {
    let server = Server::start().await;
    for hint in [Some("access_token"), Some("not_a_type")] {
        let login = server.login("web", "alice", &[]).await;
        assert_empty_ok(&server.revoke("web", login.refresh(), hint).await);
        assert!(server.refused_as_revoked(&login.access).await, "{hint:?}");
        let reply = server.refresh("web", login.refresh(), &[]).await;
        assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

#[tokio::test]
async fn revoking_garbage_expired_revoked_or_foreign_tokens_answers_200_with_an_empty_body() {
    let server = Server::start().await;
    let signing = server.keys.signing_key().unwrap();
    let now = now_ms() / 1000;
    let claims = |iss: &str, exp: i64| {
        json!({
            "iss": iss, "sub": "svc", "aud": iss, "exp": exp, "iat": exp - 300,
            "jti": format!("forged-{exp}"), "client_id": "svc",
        })
    };
    let expired = jws::encode(
        &signing,
        jws::ACCESS_TOKEN_TYP,
        &claims(&server.base, now - 3600),
    )
    .unwrap();
    let other_keys = SigningKey::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let other_issuer = jws::encode(
        &other_keys,
        jws::ACCESS_TOKEN_TYP,
        &claims("https://elsewhere", now + 300),
    )
    .unwrap();
    let same_iss_other_key = jws::encode(
        &other_keys,
        jws::ACCESS_TOKEN_TYP,
        &claims(&server.base, now + 300),
    )
    .unwrap();
    let revoked = server.cc_token("svc").await;
    assert_empty_ok(&server.revoke("svc", &revoked, None).await);
    for token in [
        "garbage",
        "a.b.c",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        expired.as_str(),
        other_issuer.as_str(),
        same_iss_other_key.as_str(),
        revoked.as_str(),
    ] {
        for hint in [None, Some("access_token"), Some("refresh_token")] {
            assert_empty_ok(&server.revoke("svc", token, hint).await);
        }
    }
}

#[tokio::test]
async fn revocation_without_a_token_is_invalid_request_and_without_client_authentication_401() {
    let server = Server::start().await;
    let reply = server.post(REVOCATION).form_as("svc", &[]).send().await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    let token = server.cc_token("svc").await;
    let reply = server
        .post(REVOCATION)
        .form(&[("token", &token)])
        .send()
        .await;
    assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    let reply = server
        .post(REVOCATION)
        .basic("svc", "wrong")
        .form(&[("token", &token)])
        .send()
        .await;
    assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(reply.header("www-authenticate"), BASIC_CHALLENGE);
    assert!(
        server.accepted(&token).await,
        "a refused request revokes nothing"
    );
}

#[tokio::test]
async fn revoking_another_clients_token_is_unauthorized_client_and_leaves_it_alone() {
    let server = Server::start().await;
    let access = server.cc_token("svc").await;
    let login = server.login("web", "alice", &[]).await;
    for (client, token) in [
        ("svc2", access.as_str()),
        ("web2", login.refresh()),
        ("web2", login.access.as_str()),
    ] {
        for hint in [None, Some("access_token"), Some("refresh_token")] {
            let reply = server.revoke(client, token, hint).await;
            assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
        }
    }
    assert!(server.accepted(&access).await);
    assert!(server.accepted(&login.access).await);
    server.refresh("web", login.refresh(), &[]).await.tokens();
}

#[tokio::test]
async fn revocations_are_durable_before_the_200() {
    let server = Server::start().await;
    let single = server.cc_token("svc").await;
    let in_batch = server.cc_token("svc2").await;
    assert_empty_ok(&server.revoke("svc", &single, None).await);
    let count = server
        .batch_count(&server.admin_token().await, json!({"clientId": "svc2"}))
        .await;
    assert_eq!(count, 1);
    // A copy of the database taken now (the service still running, nothing flushed), as a
    // backup or the `sqlite3` shell would read it, holds both revocations. (The running store
    // locks its directory, so the copy is opened in a directory of its own.)
    let copy = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(server.dir.path().join("tollgate.sqlite3"))
        .unwrap()
        .execute(
            "VACUUM INTO ?1",
            [copy.path().join("tollgate.sqlite3").to_str().unwrap()],
        )
        .unwrap();
    let reopened = SqliteStore::open(copy.path()).unwrap();
    let loaded = reopened.load(UnixMillis(now_ms())).await.unwrap();
    let jti = decode_jwt(&single).1["jti"].as_str().unwrap().to_owned();
    assert!(
        loaded.revocations.iter().any(
            |e| matches!(e, tollgate_core::RevocationEvent::Token { jti: j, .. } if *j == jti)
        )
    );
    // A service restarted on it refuses both tokens.
    let restarted = TokenService::builder()
        .issuer(server.base.clone())
        .keys(server.keys.clone())
        .store(Arc::new(reopened))
        .clients(Arc::new(tollgate_issuer::StaticDirectory::default()))
        .users(Arc::new(tollgate_issuer::StaticDirectory::default()))
        .build()
        .await
        .unwrap();
    let verifier = tollgate_layer::Verifier::builder()
        .issuer(server.base.clone())
        .audience(server.base.clone())
        .keys(server.keys.clone())
        .revocation_index(restarted.index().clone())
        .build()
        .unwrap();
    assert!(verifier.verify(&single).is_err());
    assert!(verifier.verify(&in_batch).is_err());
    assert!(verifier.verify(&server.cc_token("svc").await).is_ok());
}

#[tokio::test]
async fn api_revoke_revokes_with_token_type_hint_or_its_token_type_alias() {
    let server = Server::start().await;
    let api_revoke = |client: &'static str, params: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .post(API_REVOKE)
                .basic(client, &secret_of(client))
                .form(&params)
                .send()
                .await
        }
    };
    for hint in [None, Some("token_type_hint"), Some("token_type")] {
        let token = server.cc_token("svc").await;
        let mut params = vec![("token", token.clone())];
        if let Some(name) = hint {
            params.push((name, "access_token".into()));
        }
        assert_empty_ok(&api_revoke("svc", params).await);
        assert!(server.refused_as_revoked(&token).await, "{hint:?}");
    }
    let login = server.login("web", "alice", &[]).await;
    let params = vec![
        ("token", login.refresh().to_owned()),
        ("token_type", "refresh_token".into()),
    ];
    assert_empty_ok(&api_revoke("web", params).await);
    assert!(server.refused_as_revoked(&login.access).await);
    // Unknown tokens: 200.
    assert_empty_ok(&api_revoke("svc", vec![("token", "unknown".into())]).await);
}

#[tokio::test]
async fn api_revoke_answers_errors_as_error_and_error_description() {
    let server = Server::start().await;
    let token = server.cc_token("svc").await;
    for hint in ["id_token", "Access_Token", "refresh"] {
        for name in ["token_type_hint", "token_type"] {
            let reply = server
                .post(API_REVOKE)
                .form_as("svc", &[("token", &token), (name, hint)])
                .send()
                .await;
            assert_camel_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    let reply = server.post(API_REVOKE).form_as("svc", &[]).send().await;
    assert_camel_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    let reply = server
        .post(API_REVOKE)
        .form(&[("token", &token)])
        .send()
        .await;
    assert_camel_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(!reply.headers.contains_key("www-authenticate"));
    let reply = server
        .post(API_REVOKE)
        .basic("svc", "nope")
        .form(&[("token", &token)])
        .send()
        .await;
    assert_camel_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(reply.header("www-authenticate"), BASIC_CHALLENGE);
    // Another client's token: refused, and left alone.
    let reply = server
        .post(API_REVOKE)
        .form_as("svc2", &[("token", &token)])
        .send()
        .await;
    assert_camel_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    assert!(server.accepted(&token).await);
}
