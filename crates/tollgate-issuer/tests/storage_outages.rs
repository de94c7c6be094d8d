//! Storage outages: `503` with `Retry-After`, and nothing changed.
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use support::*;

#[track_caller]
fn assert_unavailable(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(
        reply
            .header("retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1),
        "{:?}",
        reply.headers
    );
    assert_no_store(reply);
    let text = reply.text();
    for leak in ["/var/lib", "sqlite", "rusqlite", "I/O"] {
        assert!(!text.contains(leak), "leaks {leak}: {text}");
    }
}

#[tokio::test]
async fn a_storage_outage_answers_503_with_retry_after_and_revokes_nothing() {
    let store = Arc::new(FlakyStore::default());
    let server = Setup::default().store(store.clone()).start().await;
    let token = server.cc_token("svc").await;
    let admin = server.admin_token().await;
    store.set_down(true);

    let reply = server.revoke("svc", &token, None).await;
    assert_oauth_error(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    );
    assert_unavailable(&reply);
    let reply = server
        .post(API_REVOKE)
        .form_as("svc", &[("token", &token)])
        .send()
        .await;
    assert_camel_error(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    );
    assert_unavailable(&reply);
    let reply = server.batch(&admin, json!({})).await;
    assert_plugin_error(&reply, StatusCode::SERVICE_UNAVAILABLE);
    assert_unavailable(&reply);
    // Issuance cannot be recorded either.
    let reply = server
        .token("svc", &[("grant_type", "client_credentials")])
        .await;
    assert_oauth_error(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    );
    assert_unavailable(&reply);

    // Nothing was revoked, as the 503 said.
    assert!(server.accepted(&token).await);
    assert!(server.accepted(&admin).await);
    assert_eq!(server.introspect("svc", &token).await["active"], true);

    store.set_down(false);
    assert_empty_ok(&server.revoke("svc", &token, None).await);
    assert!(server.refused_as_revoked(&token).await);
}

#[tokio::test]
async fn a_refresh_during_a_storage_outage_fails_with_503_and_the_refresh_token_stays_usable() {
    let store = Arc::new(FlakyStore::default());
    let server = Setup::default().store(store.clone()).start().await;
    let login = server.login("web", "alice", &[]).await;
    store.set_down(true);
    let reply = server.refresh("web", login.refresh(), &[]).await;
    assert_oauth_error(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    );
    assert_unavailable(&reply);
    let reply = server.revoke("web", login.refresh(), None).await;
    assert_unavailable(&reply);
    store.set_down(false);
    // Not taken for a replay: the failed exchange did not rotate it, nor was it revoked.
    assert!(server.accepted(&login.access).await);
    let refreshed = server.refresh("web", login.refresh(), &[]).await.tokens();
    assert!(server.accepted(&refreshed.access).await);
}
