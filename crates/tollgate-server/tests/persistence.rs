//! The binary forgets nothing: across a clean restart, and across `kill -9` with revocations in
//! flight.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_revocations_cutoffs_rotations_and_live_refresh_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Server::start(dir.path(), &config);
    let http = http();

    let revoked = password_token(&server, "alice", "alice-password", "/Acme").await;
    let kept = password_token(&server, "alice", "alice-password", "/Acme").await;
    let globex = password_token(&server, "bob", "alice-password", "/Globex").await;
    let service = service_token(&server).await;
    let revoked_at = revoked["access_token"].as_str().unwrap();
    let (status, _) = post_form(
        &http,
        &server.url("/connect/revocation"),
        INTEGRATION,
        &[("token", revoked_at)],
    )
    .await;
    assert_eq!(status, 200);

    // Rotate `kept`'s refresh token once: the first one is now spent.
    let spent = kept["refresh_token"].as_str().unwrap().to_owned();
    let (status, rotated) = post_form(
        &http,
        &server.url("/connect/token"),
        INTEGRATION,
        &[("grant_type", "refresh_token"), ("refresh_token", &spent)],
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let live_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();

    // Cut off the /Globex tenant.
    let admin = password_token(&server, "admin", "admin-password", "/").await;
    let admin_token = admin["access_token"].as_str().unwrap().to_owned();
    let response = http
        .post(server.url("/api/v2/identity/token/batch-revocation"))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"tenantPath": "/Globex"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let count: serde_json::Value = response.json().await.unwrap();
    assert_eq!(count["count"], 2, "bob's access and refresh token");

    server.stop();
    let server = Server::start(dir.path(), &config);

    assert_eq!(
        token_status(&server, revoked_at).await,
        401,
        "revoked token"
    );
    assert_eq!(
        token_status(&server, globex["access_token"].as_str().unwrap()).await,
        401,
        "cut-off tenant"
    );
    assert_eq!(
        token_status(&server, rotated["access_token"].as_str().unwrap()).await,
        200,
        "tokens signed before the restart still verify (same key)"
    );
    assert_eq!(token_status(&server, &service).await, 200);
    let (status, body) = post_form(
        &http,
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", globex["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "cut-off grant"
    );

    // The live refresh token still refreshes.
    let (status, refreshed) = post_form(
        &http,
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &live_refresh),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    // The batch count remembers what is already revoked: nothing left in /Globex.
    let response = http
        .post(server.url("/api/v2/identity/token/batch-revocation"))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"tenantPath": "/Globex"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["count"],
        0
    );

    // The spent refresh token is still known as spent: replaying it revokes the whole family.
    let (status, _) = post_form(
        &http,
        &server.url("/connect/token"),
        INTEGRATION,
        &[("grant_type", "refresh_token"), ("refresh_token", &spent)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        token_status(&server, refreshed["access_token"].as_str().unwrap()).await,
        401,
        "reuse after a restart revokes the family"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Server::start(dir.path(), &config);
    let mut tokens = Vec::new();
    for _ in 0..1000 {
        tokens.push(service_token(&server).await);
    }
    let tokens = Arc::new(tokens);
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = server.url("/connect/revocation");
    let mut workers = Vec::new();
    for worker in 0..64 {
        let (tokens, acknowledged, stop, url) = (
            tokens.clone(),
            acknowledged.clone(),
            stop.clone(),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            let http = http();
            let mut i = worker;
            while i < tokens.len() && !stop.load(Ordering::Relaxed) {
                let sent = http
                    .post(&url)
                    .basic_auth(SVC.0, Some(SVC.1))
                    .form(&[("token", tokens[i].as_str())])
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().push(i),
                    // The crash cut the connection: this one was never acknowledged.
                    _ => break,
                }
                i += 64;
            }
        }));
    }
    // Let revocations flow, then crash mid-stream.
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.crash();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300);
    assert!(
        acknowledged.len() < tokens.len(),
        "the crash came mid-stream"
    );

    let server = Server::start(dir.path(), &config);
    for &i in &acknowledged {
        assert_eq!(
            token_status(&server, &tokens[i]).await,
            401,
            "revocation {i} was answered 200 before the crash"
        );
    }
    // Tokens whose revocation was never sent still work: nothing was revoked by accident.
    let untouched = (0..tokens.len())
        .rev()
        .find(|i| !acknowledged.contains(i))
        .unwrap();
    let status = token_status(&server, &tokens[untouched]).await;
    assert!(status == 200 || status == 401);
    server.stop();
}
