//! `POST /connect/token`: the password, client credentials and refresh grants.
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tollgate_core::{ManualClock, UnixMillis};

#[tokio::test]
async fn grant_type_missing_is_invalid_request_and_unknown_is_unsupported_grant_type() {
    let server = Server::start().await;
    let reply = server.token("svc", &[]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    for unknown in [
        "authorization_code",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "PASSWORD",
        "client_credentials ",
    ] {
        let reply = server.token("svc", &[("grant_type", unknown)]).await;
        assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn a_grant_the_client_is_not_configured_for_is_unauthorized_client() {
    let server = Server::start().await;
    // `password` is off unless the client's configuration enables it.
    let reply = server
        .token(
            "svc",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    let reply = server
        .token("web", &[("grant_type", "client_credentials")])
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    let reply = server
        .token(
            "svc",
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
    let reply = server
        .token("rs", &[("grant_type", "client_credentials")])
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
}

#[tokio::test]
async fn password_grant_without_username_or_password_is_invalid_request() {
    let server = Server::start().await;
    for params in [
        vec![("grant_type", "password")],
        vec![("grant_type", "password"), ("username", "alice")],
        vec![("grant_type", "password"), ("password", PASSWORD)],
        vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ""),
        ],
    ] {
        let reply = server.token("web", &params).await;
        assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn password_grant_issues_an_rfc_9068_access_token_and_a_refresh_token() {
    let server = Server::start().await;
    let tokens = server.login("web", "alice", &[]).await;
    let body = tokens.body.as_object().unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "orders:read orders:write profile");

    let (header, claims) = decode_jwt(&tokens.access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "k1");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["iss"], server.base);
    assert_eq!(claims["aud"], server.base);
    assert_eq!(claims["sub"], "u-alice");
    assert_eq!(claims["client_id"], "web");
    assert_eq!(claims["scope"], "orders:read orders:write profile");
    assert_eq!(claims["roles"], json!(["user"]));
    assert!(claims["grant_id"].as_str().is_some_and(|g| !g.is_empty()));
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let (iat, exp, iat_ms) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
        claims["iat_ms"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 300);
    assert_eq!(iat_ms / 1000, iat);
    assert!((iat_ms - now_ms()).abs() < 60_000);
    // Verifies with the app's verifier (signature, typ, iss, aud, exp).
    assert!(server.accepted(&tokens.access).await);

    // Opaque, random, ≥ 256 bits.
    let refresh = tokens.refresh();
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, refresh).unwrap();
    assert!(raw.len() >= 32);
    assert_eq!(refresh.split('.').count(), 1, "not a JWT");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    let server = Server::start().await;
    let tokens = server.login("web", "alice", &[]).await;
    let refreshed = server.refresh("web", tokens.refresh(), &[]).await.tokens();
    server.service.flush().await.unwrap();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(server.dir.path()).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    for refresh in [tokens.refresh(), refreshed.refresh()] {
        assert!(
            !contains(refresh.as_bytes()),
            "a refresh token is stored in clear"
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, refresh.as_bytes());
        assert!(
            contains(digest.as_ref()),
            "the refresh token's hash is what is stored"
        );
    }
}

#[tokio::test]
async fn client_credentials_tokens_have_the_client_as_subject_and_no_refresh_token() {
    let server = Server::start().await;
    // `both` may use the refresh_token grant, yet client_credentials never yields a refresh token.
    for client in ["svc", "both"] {
        let tokens = server.cc(client, &[]).await;
        assert!(
            tokens.body.get("refresh_token").is_none(),
            "{}",
            tokens.body
        );
        let (header, claims) = decode_jwt(&tokens.access);
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(claims["sub"], client);
        assert_eq!(claims["client_id"], client);
        assert!(server.accepted(&tokens.access).await);
    }
    let (_, claims) = decode_jwt(&server.cc_token("svc").await);
    assert_eq!(claims["roles"], json!(["service"]));
}

#[tokio::test]
async fn the_three_password_failures_give_the_same_answer_in_the_same_time() {
    let server = Server::start().await;
    let cases = [
        ("wrong password", "alice", "not the password"),
        ("unknown user", "zoe", PASSWORD),
        ("disabled user", "carol", PASSWORD),
    ];
    let mut answers = Vec::new();
    let mut fastest = [Duration::MAX; 3];
    // The fastest of three rounds per case: scheduling noise only ever adds time.
    for _round in 0..3 {
        for (i, (_, username, password)) in cases.iter().enumerate() {
            let started = Instant::now();
            let reply = server
                .token(
                    "web",
                    &[
                        ("grant_type", "password"),
                        ("username", username),
                        ("password", password),
                        ("tenant_path", "/"),
                    ],
                )
                .await;
            fastest[i] = fastest[i].min(started.elapsed());
            assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
            answers.push(reply);
        }
    }
    for reply in &answers[1..] {
        assert_eq!(reply.body, answers[0].body);
        let mut headers = reply.headers.clone();
        let mut first = answers[0].headers.clone();
        headers.remove("date");
        first.remove("date");
        assert_eq!(headers, first);
    }
    // Every failure verifies a password hash: none is answered much faster than the others
    // (skipping the hash makes a case some 50 times faster even with an optimised argon2).
    let slowest = fastest.iter().max().unwrap();
    for (i, took) in fastest.iter().enumerate() {
        assert!(
            *took * 8 >= *slowest,
            "{} took {took:?}, the slowest case {slowest:?}",
            cases[i].0
        );
    }
}

#[tokio::test]
async fn once_the_password_is_proven_a_tenant_problem_is_named() {
    let server = Server::start().await;
    let sign_in = |username: &'static str, password: &'static str, tenant: Option<&'static str>| {
        let server = &server;
        async move {
            let mut params = vec![
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ];
            params.extend(tenant.map(|t| ("tenant_path", t)));
            server.token("web", &params).await
        }
    };
    let description = |reply: &Reply| reply.json()["error_description"].to_string();
    // Not a member of the named tenant: invalid_grant, saying so.
    let reply = sign_in("bob", PASSWORD, Some("/Other")).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(description(&reply).contains("not a member"), "{reply:?}");
    // A user with one tenant gets it without naming it.
    let bob = server.login("web", "bob", &[]).await;
    assert_eq!(decode_jwt(&bob.access).1["tenant"], "/Org");
    // A user with several must name one: invalid_request naming the parameter.
    let reply = sign_in("erin", PASSWORD, None).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(description(&reply).contains("tenant_path"), "{reply:?}");
    let erin = server
        .login("web", "erin", &[("tenant_path", "/Other")])
        .await;
    assert_eq!(decode_jwt(&erin.access).1["tenant"], "/Other");
    // A wrong password is still the generic answer, tenant or not.
    let reply = sign_in("erin", "wrong", None).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(description(&reply).contains("invalid username or password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_password_guesses_cannot_outrun_the_throttle() {
    let server = Server::start().await;
    let guesses = (0..20).map(|_| {
        server.token(
            "web",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "guess"),
            ],
        )
    });
    let replies = futures_join_all(guesses).await;
    let verified = replies
        .iter()
        .filter(|r| r.status == StatusCode::BAD_REQUEST)
        .count();
    let throttled = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(verified + throttled, 20);
    assert!(verified <= 5, "{verified} guesses were verified at once");
}

/// Polls every future to completion concurrently (no extra dependency for a join).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, future) in pending.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => outputs[i] = Some(out),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

#[tokio::test]
async fn repeated_password_failures_are_throttled_without_locking_the_user_out() {
    let clock = Arc::new(ManualClock::new(UnixMillis(now_ms())));
    let server = Setup::default().clock(clock.clone()).start().await;
    let attempt = |password: &'static str| {
        let server = &server;
        async move {
            server
                .token(
                    "web",
                    &[
                        ("grant_type", "password"),
                        ("username", "alice"),
                        ("password", password),
                    ],
                )
                .await
        }
    };
    for _ in 0..5 {
        assert_oauth_error(
            &attempt("guess").await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
    }
    // Throttled: even the right password waits.
    for password in ["guess", PASSWORD] {
        let reply = attempt(password).await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.text()
        );
        assert_no_store(&reply);
        let wait: u64 = reply.header("retry-after").parse().unwrap();
        assert!((1..=300).contains(&wait));
    }
    // Another user is not affected.
    server.login("web", "dave", &[]).await;
    // After the wait, the legitimate user gets in.
    clock.advance(Duration::from_millis(1_001));
    attempt(PASSWORD).await.tokens();
    // ... and the success cleared the record: one failure is not throttled.
    assert_oauth_error(
        &attempt("guess").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_oauth_error(
        &attempt("guess").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

#[tokio::test]
async fn tenant_path_defaults_to_the_root_and_malformed_paths_are_invalid_request() {
    let server = Server::start().await;
    let introspected_tenant = |token: String| {
        let server = &server;
        async move { server.introspect("svc", &token).await["tenant"].clone() }
    };
    let default = server.cc_token("svc").await;
    assert_eq!(introspected_tenant(default).await, "/");
    // A client confined to one tenant acts in it without naming it.
    let confined = server.cc_token("org-svc").await;
    assert_eq!(decode_jwt(&confined).1["tenant"], "/Org");
    for path in ["/", "/Org", "/Org/Sub"] {
        let token = server.cc("svc", &[("tenant_path", path)]).await.access;
        assert_eq!(introspected_tenant(token.clone()).await, path);
        // The claim is always present, the root tenant included.
        assert_eq!(decode_jwt(&token).1["tenant"], path);
    }
    for bad in [
        "Org",
        "/Org/",
        "//",
        "/Org//Sub",
        "/../Org",
        "/Org/..",
        "/O rg",
        "/Org\\Sub",
    ] {
        for (client, grant) in [("svc", "client_credentials"), ("web", "password")] {
            let reply = server
                .token(
                    client,
                    &[
                        ("grant_type", grant),
                        ("username", "alice"),
                        ("password", PASSWORD),
                        ("tenant_path", bad),
                    ],
                )
                .await;
            assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    // A user of /Org signs in to a sub-tenant.
    let bob = server
        .login("web", "bob", &[("tenant_path", "/Org/Sub")])
        .await;
    assert_eq!(decode_jwt(&bob.access).1["tenant"], "/Org/Sub");
}

#[tokio::test]
async fn access_token_lifetime_must_be_a_positive_integer() {
    let server = Server::start().await;
    for bad in [
        "0", "00", "-1", "abc", "1.5", "+5", " 5", "5 ", "1e3", "0x10", "６０",
    ] {
        let reply = server
            .token(
                "svc",
                &[
                    ("grant_type", "client_credentials"),
                    ("access-token-lifetime", bad),
                ],
            )
            .await;
        assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn access_token_lifetime_above_the_maximum_is_clamped_and_expires_in_tells_the_truth() {
    let server = Server::start().await;
    let cases = [
        ("svc", None, 300),
        ("svc", Some("60"), 60),
        ("svc", Some("0060"), 60),
        ("svc", Some("3600"), 3600),
        ("svc", Some("999999"), 3600),
        ("svc", Some("99999999999999999999999999"), 3600),
        ("short", Some("120"), 60),
        ("short", None, 60),
        ("short", Some("30"), 30),
    ];
    for (client, asked, expected) in cases {
        let mut params = vec![];
        if let Some(asked) = asked {
            params.push(("access-token-lifetime", asked));
        }
        let tokens = server.cc(client, &params).await;
        assert_eq!(tokens.body["expires_in"], expected, "{client} {asked:?}");
        let (_, claims) = decode_jwt(&tokens.access);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            expected,
            "{client} {asked:?}"
        );
    }
}

#[tokio::test]
async fn scope_defaults_to_everything_allowed_and_refuses_anything_else() {
    let server = Server::start().await;
    let scope_of = |params: Vec<(&'static str, &'static str)>| {
        let server = &server;
        async move {
            let tokens = server.cc("svc", &params).await;
            let (_, claims) = decode_jwt(&tokens.access);
            assert_eq!(claims["scope"], tokens.body["scope"]);
            tokens.body["scope"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(scope_of(vec![]).await, "orders:read reports");
    assert_eq!(scope_of(vec![("scope", "reports")]).await, "reports");
    assert_eq!(
        scope_of(vec![("scope", "reports orders:read")]).await,
        "orders:read reports"
    );
    assert_eq!(
        scope_of(vec![("scope", "reports  reports")]).await,
        "reports"
    );
    // A scope of separators only lists no scope: empty, so everything allowed.
    assert_eq!(
        scope_of(vec![("scope", "   ")]).await,
        "orders:read reports"
    );
    for bad in [
        "orders:write",
        "reports orders:write",
        "REPORTS",
        "orders:read,reports",
    ] {
        let reply = server
            .token(
                "svc",
                &[("grant_type", "client_credentials"), ("scope", bad)],
            )
            .await;
        assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
    }
}

#[tokio::test]
async fn a_user_limited_to_some_scopes_gets_only_those() {
    let server = Server::start().await;
    let dave = server.login("web", "dave", &[]).await;
    assert_eq!(dave.body["scope"], "orders:read");
    let reply = server
        .token(
            "web",
            &[
                ("grant_type", "password"),
                ("username", "dave"),
                ("password", PASSWORD),
                ("scope", "orders:read orders:write"),
            ],
        )
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
}

#[tokio::test]
async fn refresh_rotates_and_reusing_a_rotated_token_revokes_the_whole_grant() {
    let server = Server::start().await;
    let first = server.login("web", "alice", &[]).await;
    let second = server.refresh("web", first.refresh(), &[]).await.tokens();
    assert_ne!(second.refresh(), first.refresh());
    let grant = decode_jwt(&first.access).1["grant_id"].clone();
    assert_eq!(decode_jwt(&second.access).1["grant_id"], grant);
    assert_eq!(decode_jwt(&second.access).1["sub"], "u-alice");
    let third = server.refresh("web", second.refresh(), &[]).await.tokens();
    for tokens in [&first, &second, &third] {
        assert!(server.accepted(&tokens.access).await);
    }
    // The rotated token is presented again: someone else holds it.
    let reply = server.refresh("web", first.refresh(), &[]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    // The whole family is gone: the newest refresh token and every access token minted from it.
    let reply = server.refresh("web", third.refresh(), &[]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    for tokens in [&first, &second, &third] {
        assert!(server.refused_as_revoked(&tokens.access).await);
        assert_eq!(
            server.introspect("web", &tokens.access).await,
            json!({"active": false})
        );
    }
    assert_eq!(
        server.introspect("web", third.refresh()).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let server = Server::start().await;
    let login = server
        .login("web", "alice", &[("scope", "orders:read profile")])
        .await;
    let reply = server
        .refresh(
            "web",
            login.refresh(),
            &[("scope", "orders:read orders:write")],
        )
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope");
    // A refused exchange does not consume the refresh token.
    let narrowed = server
        .refresh("web", login.refresh(), &[("scope", "profile")])
        .await
        .tokens();
    assert_eq!(narrowed.body["scope"], "profile");
    assert_eq!(decode_jwt(&narrowed.access).1["scope"], "profile");
    // Narrowing one access token does not shrink the grant.
    let again = server
        .refresh("web", narrowed.refresh(), &[])
        .await
        .tokens();
    assert_eq!(again.body["scope"], "orders:read profile");
}

#[tokio::test]
async fn another_clients_refresh_token_is_invalid_grant_and_stays_usable_by_its_owner() {
    let server = Server::start().await;
    let login = server.login("web", "alice", &[]).await;
    let reply = server.refresh("web2", login.refresh(), &[]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(server.accepted(&login.access).await);
    server.refresh("web", login.refresh(), &[]).await.tokens();
}

#[tokio::test]
async fn refresh_without_or_with_an_unknown_refresh_token_is_refused() {
    let server = Server::start().await;
    let reply = server
        .token("web", &[("grant_type", "refresh_token")])
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    let access = server.cc_token("svc").await;
    for unknown in [
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        access.as_str(),
    ] {
        let reply = server.refresh("web", unknown, &[]).await;
        assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

#[tokio::test]
async fn usernames_longer_than_256_bytes_are_refused_before_anything_is_kept() {
    let server = Server::start().await;
    let long = "u".repeat(257);
    let reply = server
        .token(
            "web",
            &[
                ("grant_type", "password"),
                ("username", &long),
                ("password", "guess"),
            ],
        )
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // At the limit, a name is an ordinary (unknown) user.
    let reply = server
        .token(
            "web",
            &[
                ("grant_type", "password"),
                ("username", &"u".repeat(256)),
                ("password", "guess"),
            ],
        )
        .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant");
}
