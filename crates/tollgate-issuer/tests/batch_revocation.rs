//! `POST /api/v2/identity/token/batch-revocation`: admin only, exact counts.
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::StatusCode;
use serde_json::json;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn batch_revocation_requires_an_admin_bearer_token() {
    let server = Server::start().await;
    let victim = server.cc_token("svc2").await;
    let reply = server.post(BATCH).json(&json!({})).send().await;
    assert_plugin_error(&reply, StatusCode::UNAUTHORIZED);
    assert!(
        reply
            .header("www-authenticate")
            .starts_with("Bearer realm=")
    );
    // Another scheme is an invalid credential here: 401, not the Layer's usual 400.
    let reply = server
        .post(BATCH)
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .json(&json!({}))
        .send()
        .await;
    let body = assert_plugin_error(&reply, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_request");
    let revoked_admin = server.admin_token().await;
    assert_empty_ok(&server.revoke("admin", &revoked_admin, None).await);
    for token in ["garbage", "a.b.c", revoked_admin.as_str()] {
        let reply = server.batch(token, json!({})).await;
        let body = assert_plugin_error(&reply, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "invalid_token");
        assert!(reply.header("www-authenticate").contains("invalid_token"));
    }
    // Valid, but not an admin.
    for client in ["svc", "short"] {
        let reply = server
            .batch(&server.cc_token(client).await, json!({}))
            .await;
        assert_plugin_error(&reply, StatusCode::FORBIDDEN);
    }
    assert!(
        server.accepted(&victim).await,
        "refused calls revoke nothing"
    );
    assert_eq!(
        server
            .batch_count(&server.admin_token().await, json!({"clientId": "svc2"}))
            .await,
        1
    );
}

#[tokio::test]
async fn batch_revocation_accepts_the_admin_token_in_a_reference_token_header() {
    let server = Server::start().await;
    for prefix in ["", "Bearer "] {
        let victim = server.cc_token("svc").await;
        let admin = server.admin_token().await;
        settle().await;
        let reply = server
            .post(BATCH)
            .header("reference-token", format!("{prefix}{admin}"))
            .json(&json!({"clientId": "svc"}))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json(), json!({"count": 1}));
        assert!(server.refused_as_revoked(&victim).await);
    }
    let reply = server
        .post(BATCH)
        .header("reference-token", "garbage")
        .json(&json!({}))
        .send()
        .await;
    assert_plugin_error(&reply, StatusCode::UNAUTHORIZED);
    let reply = server
        .post(BATCH)
        .header("reference-token", server.cc_token("svc").await)
        .json(&json!({}))
        .send()
        .await;
    assert_plugin_error(&reply, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn batch_revocation_counts_exactly_what_it_revoked_and_cut_off_grants_cannot_refresh() {
    let server = Server::start().await;
    let services = [
        server.cc_token("svc").await,
        server.cc_token("svc").await,
        server.cc_token("svc2").await,
    ];
    let already = server.cc_token("svc").await;
    assert_empty_ok(&server.revoke("svc", &already, None).await);
    let login = server.login("web", "alice", &[]).await;
    let refreshed = server.refresh("web", login.refresh(), &[]).await.tokens();
    // Live before the instant: 3 service tokens, alice's 2 access tokens and her current refresh
    // token (the rotated one and the revoked token do not count).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let admin = server.admin_token().await;
    let body = json!({"creationBefore": rfc3339(before, 0)});
    assert_eq!(server.batch_count(&admin, body.clone()).await, 6);
    // The same call again revokes nothing more.
    assert_eq!(server.batch_count(&admin, body).await, 0);

    for token in services.iter().chain([&login.access, &refreshed.access]) {
        assert!(server.refused_as_revoked(token).await);
        assert_eq!(
            server.introspect("rs", token).await,
            json!({"active": false})
        );
    }
    let reply = server.refresh("web", refreshed.refresh(), &[]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    // Issued at or after the instant: working.
    assert!(server.accepted(&admin).await);
    let after = server.login("web", "alice", &[]).await;
    assert!(server.accepted(&after.access).await);
    assert!(server.accepted(&server.cc_token("svc").await).await);
    server.refresh("web", after.refresh(), &[]).await.tokens();
}

#[tokio::test]
async fn creation_before_absent_or_null_means_now() {
    let server = Server::start().await;
    let mut victim = server.cc_token("svc").await;
    for body in [json!({}), json!({"creationBefore": null})] {
        let admin = server.admin_token().await;
        let reply = server.batch(&admin, body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {}", reply.text());
        // The victim and the caller's own token: everything live was issued before now.
        assert_eq!(reply.json(), json!({"count": 2}), "{body}");
        assert!(server.refused_as_revoked(&victim).await);
        assert!(server.refused_as_revoked(&admin).await);
        victim = server.cc_token("svc").await;
        assert!(server.accepted(&victim).await);
    }
}

#[tokio::test]
async fn a_missing_null_or_mistyped_body_is_400_and_cuts_off_nothing() {
    let server = Server::start().await;
    let victim = server.cc_token("svc").await;
    let admin = server.admin_token().await;
    settle().await;
    let cases: [(&str, Option<&str>); 6] = [
        ("no body, no content type", None),
        ("application/json", Some("")),
        ("application/json", Some("null")),
        ("application/json", Some("[]")),
        ("application/json", Some("\"2025-01-01\"")),
        ("text/plain", Some("{}")),
    ];
    for (content_type, body) in cases {
        let call = server.post(BATCH).bearer(&admin);
        let reply = match body {
            Some(body) => call.body(content_type, body.to_owned()).send().await,
            None => call.send().await,
        };
        assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
        assert!(server.accepted(&victim).await, "{content_type} {body:?}");
    }
    // A narrowing field that is null or empty never widens the cut.
    for body in [
        json!({"clientId": null}),
        json!({"subject": null, "clientId": null}),
        json!({"tenantPath": null}),
        json!({"subject": ""}),
        json!({"clientId": ""}),
    ] {
        let reply = server.batch(&admin, body.clone()).await;
        assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
        assert!(server.accepted(&victim).await, "{body}");
    }
    // A form body is not a JSON object either.
    let reply = server
        .post(BATCH)
        .bearer(&admin)
        .body("application/x-www-form-urlencoded", "creationBefore=")
        .send()
        .await;
    assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
    assert!(server.accepted(&victim).await);
}

#[tokio::test]
async fn an_admin_below_the_root_tenant_reaches_only_its_own_tenant() {
    let server = Server::start().await;
    let in_org = server
        .cc("svc", &[("tenant_path", "/Org/Sub")])
        .await
        .access;
    let elsewhere = server.cc("svc", &[("tenant_path", "/Other")]).await.access;
    let org_admin = server.cc_token("org-admin").await;
    for body in [
        json!({}),
        json!({"tenantPath": "/Other"}),
        json!({"tenantPath": "/"}),
        json!({"subject": "svc"}),
        json!({"clientId": "svc"}),
    ] {
        let reply = server.batch(&org_admin, body.clone()).await;
        assert_plugin_error(&reply, StatusCode::FORBIDDEN);
        assert!(server.accepted(&in_org).await, "{body}");
        assert!(server.accepted(&elsewhere).await, "{body}");
    }
    assert_eq!(
        server
            .batch_count(&org_admin, json!({"tenantPath": "/Org/Sub"}))
            .await,
        1
    );
    assert!(server.refused_as_revoked(&in_org).await);
    assert!(server.accepted(&elsewhere).await);
    // The root tenant's admin reaches everything.
    let admin = server.admin_token().await;
    assert_eq!(
        server
            .batch_count(&admin, json!({"tenantPath": "/Other"}))
            .await,
        1
    );
}

#[tokio::test]
async fn creation_before_takes_dates_as_midnight_utc_and_honours_offsets() {
    let server = Server::start().await;
    let admin = server.admin_token().await;
    let token = server.cc_token("svc").await;
    // Midnight UTC of today and of earlier days: before every token here.
    for date in [utc_date(0), utc_date(-1), "2025-10-01".to_owned()] {
        assert_eq!(
            server
                .batch_count(&admin, json!({"creationBefore": date}))
                .await,
            0,
            "{date}"
        );
    }
    assert!(server.accepted(&token).await);
    assert!(server.accepted(&admin).await);

    let issued = decode_jwt(&token).1["iat_ms"].as_i64().unwrap();
    // Just before the token, in New York time: the token stays.
    let earlier = rfc3339(issued - 1, -5);
    assert_eq!(
        server
            .batch_count(
                &admin,
                json!({"creationBefore": earlier, "clientId": "svc"})
            )
            .await,
        0
    );
    assert!(server.accepted(&token).await, "{earlier}");
    // Just after it, in UTC+2 (read as UTC, the instant would be 2 h in the future and refused).
    let later = rfc3339(issued + 1, 2);
    assert_eq!(
        server
            .batch_count(&admin, json!({"creationBefore": later, "clientId": "svc"}))
            .await,
        1
    );
    assert!(server.refused_as_revoked(&token).await, "{later}");
    assert!(server.accepted(&admin).await);
}

#[tokio::test]
async fn creation_before_in_the_future_or_unparseable_is_400() {
    let server = Server::start().await;
    let admin = server.admin_token().await;
    let victim = server.cc_token("svc").await;
    let in_ten_seconds = rfc3339(now_ms() + 10_000, 0);
    let in_an_hour_offset = rfc3339(now_ms() + 3_600_000, -3);
    let bodies = [
        json!({"creationBefore": in_ten_seconds}),
        json!({"creationBefore": in_an_hour_offset}),
        json!({"creationBefore": utc_date(1)}),
        json!({"creationBefore": "yesterday"}),
        json!({"creationBefore": "2025-13-01"}),
        json!({"creationBefore": "2025-10-01T25:00:00Z"}),
        json!({"creationBefore": ""}),
        json!({"creationBefore": 1_700_000_000}),
        json!({"creationBefore": true}),
        json!([]),
        json!("2025-10-01"),
    ];
    for body in bodies {
        let reply = server.batch(&admin, body.clone()).await;
        let error = assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
        assert_eq!(error["code"], "invalid_request", "{body}");
    }
    // Far in the future is said to be in the future, even past the years dates are parsed for.
    for far in [
        utc_date(3_650),
        "9999-12-31T23:59:59Z".into(),
        "10000-01-01T00:00:00Z".into(),
        "+010000-01-01".into(),
    ] {
        let reply = server.batch(&admin, json!({"creationBefore": far})).await;
        let error = assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
        assert_eq!(error["message"], "creationBefore is in the future", "{far}");
    }
    let reply = server
        .post(BATCH)
        .bearer(&admin)
        .body("application/json", "{not json")
        .send()
        .await;
    assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
    assert!(
        server.accepted(&victim).await,
        "a refused call revokes nothing"
    );
    // Within the second of skew allowed, a future instant means now.
    let skewed = rfc3339(now_ms() + 400, 0);
    assert_eq!(
        server
            .batch_count(&admin, json!({"creationBefore": skewed, "clientId": "svc"}))
            .await,
        1
    );
}

#[tokio::test]
async fn batch_revocation_narrows_to_one_tenant_subject_or_client() {
    let server = Server::start().await;
    let admin = server.admin_token().await;
    let token = |client: &'static str, tenant: &'static str| {
        let server = &server;
        async move { server.cc(client, &[("tenant_path", tenant)]).await.access }
    };
    // Tenant: the tenant and its sub-tenants, not a sibling with a common prefix.
    let (org, sub, organic, root) = (
        token("svc", "/Org").await,
        token("svc", "/Org/Sub").await,
        token("svc", "/Organic").await,
        token("svc", "/").await,
    );
    assert_eq!(
        server
            .batch_count(&admin, json!({"tenantPath": "/Org"}))
            .await,
        2
    );
    assert!(server.refused_as_revoked(&org).await);
    assert!(server.refused_as_revoked(&sub).await);
    assert!(server.accepted(&organic).await);
    assert!(server.accepted(&root).await);
    // Subject.
    let (svc, svc2) = (token("svc", "/").await, token("svc2", "/").await);
    assert_eq!(
        server.batch_count(&admin, json!({"subject": "svc2"})).await,
        1
    );
    assert!(server.refused_as_revoked(&svc2).await);
    assert!(server.accepted(&svc).await);
    // Client: svc's tokens still live (organic, root, svc).
    let short = token("short", "/").await;
    assert_eq!(
        server.batch_count(&admin, json!({"clientId": "svc"})).await,
        3
    );
    for t in [&organic, &root, &svc] {
        assert!(server.refused_as_revoked(t).await);
    }
    assert!(server.accepted(&short).await);
    assert!(
        server.accepted(&admin).await,
        "the caller was in none of the scopes"
    );
    // A user's tokens (access and refresh) under a subject cutoff.
    let login = server.login("web", "alice", &[]).await;
    assert_eq!(
        server
            .batch_count(&admin, json!({"subject": "u-alice"}))
            .await,
        2
    );
    assert!(server.refused_as_revoked(&login.access).await);
    assert_oauth_error(
        &server.refresh("web", login.refresh(), &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test]
async fn batch_revocation_narrows_by_at_most_one_field() {
    let server = Server::start().await;
    let admin = server.admin_token().await;
    let victim = server.cc_token("svc").await;
    for body in [
        json!({"tenantPath": "/Org", "subject": "svc"}),
        json!({"tenantPath": "/Org", "clientId": "svc"}),
        json!({"subject": "svc", "clientId": "svc"}),
        json!({"tenantPath": "/", "subject": "svc", "clientId": "svc"}),
        json!({"tenantPath": "Org"}),
        json!({"tenantPath": "/Org/"}),
    ] {
        let reply = server.batch(&admin, body.clone()).await;
        assert_eq!(
            assert_plugin_error(&reply, StatusCode::BAD_REQUEST)["code"],
            "invalid_request",
            "{body}"
        );
    }
    assert!(server.accepted(&victim).await);
    // A null narrowing field is refused, not taken as absent: the cut never widens by mistake.
    let reply = server
        .batch(
            &admin,
            json!({"tenantPath": null, "subject": null, "clientId": "svc"}),
        )
        .await;
    assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
    assert_eq!(
        server.batch_count(&admin, json!({"clientId": "svc"})).await,
        1
    );
}

#[tokio::test]
async fn subjects_and_client_ids_longer_than_256_bytes_are_refused() {
    let server = Server::start().await;
    let admin = server.admin_token().await;
    let long = "s".repeat(257);
    for body in [json!({"subject": long}), json!({"clientId": long})] {
        let reply = server.batch(&admin, body.clone()).await;
        assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
    }
    assert!(server.accepted(&admin).await, "nothing was cut off");
    let at_limit = "s".repeat(256);
    assert_eq!(
        server
            .batch_count(&admin, json!({"subject": at_limit}))
            .await,
        0
    );
}
