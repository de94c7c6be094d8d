//! CONTRACT.md, endpoint by endpoint: the `TokenService` over a real socket (hyper), with a real
//! store (SQLite in a temporary directory; an injected failing store for outages), called by a
//! real HTTP client. Each test starts its own server, so they run in parallel.

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_core::{
    KeySet, ManualClock, RevocationIndex, SigningAlgorithm, SigningKey, UnixMillis, jws,
};
use tollgate_issuer::{SqliteStore, Store, TokenService};

const TOKEN: &str = "/connect/token";
const REVOCATION: &str = "/connect/revocation";
const API_REVOKE: &str = "/api/id/v1/auth/token/revoke";
const BATCH: &str = "/api/v2/identity/token/batch-revocation";
const INTROSPECT: &str = "/connect/introspect";
const USERINFO: &str = "/connect/userinfo";
const FORM_ENDPOINTS: [&str; 4] = [TOKEN, REVOCATION, API_REVOKE, INTROSPECT];

/// Asserts the error shape of `path`'s endpoint: camelCase for the Revoke Auth Token API, RFC 6749
/// for the others.
#[track_caller]
fn assert_endpoint_error(path: &str, reply: &Reply, status: StatusCode, code: &str) {
    if path == API_REVOKE {
        assert_camel_error(reply, status, code);
    } else {
        assert_oauth_error(reply, status, code);
    }
}

/// A minimal valid form for `path` (client credentials of `svc` in the body).
fn valid_params(path: &str) -> Vec<(&'static str, &'static str)> {
    match path {
        TOKEN => vec![("grant_type", "client_credentials")],
        _ => vec![("token", "not-a-token")],
    }
}

// ---------------------------------------------------------------------------------------------
// Common rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oauth_endpoints_answer_other_methods_with_405_and_allow_post() {
    let server = Server::start().await;
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        for path in FORM_ENDPOINTS {
            let reply = server
                .request(method.clone(), path)
                .form_as("svc", &valid_params(path))
                .send()
                .await;
            assert_endpoint_error(
                path,
                &reply,
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
            );
            assert_eq!(reply.header("allow"), "POST", "{method} {path}");
        }
        let reply = server
            .request(method.clone(), BATCH)
            .bearer(&server.admin_token().await)
            .json(&json!({}))
            .send()
            .await;
        assert_plugin_error(&reply, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.header("allow"), "POST");
    }
    // The published documents are read-only; userinfo takes GET and POST (OpenID Connect).
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let reply = server.post(path).form(&[]).send().await;
        assert_oauth_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
        assert_eq!(reply.header("allow"), "GET, HEAD");
    }
    let reply = server.request(Method::DELETE, USERINFO).send().await;
    assert_oauth_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    assert_eq!(reply.header("allow"), "GET, POST");
}

#[tokio::test]
async fn form_endpoints_refuse_other_content_types_with_invalid_request() {
    let server = Server::start().await;
    let secret = secret_of("svc");
    for path in FORM_ENDPOINTS {
        let mut params = vec![("client_id", "svc"), ("client_secret", secret.as_str())];
        params.extend(valid_params(path));
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let as_json = json!(
            params
                .iter()
                .cloned()
                .collect::<std::collections::HashMap<_, _>>()
        );
        for (content_type, body) in [
            ("application/json", as_json.to_string()),
            ("text/plain", form.clone()),
            ("multipart/form-data; boundary=x", form.clone()),
            ("application/x-www-form-urlencoded-evil", form.clone()),
        ] {
            let reply = server.post(path).body(content_type, body).send().await;
            assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");
        }
        let reply = server.post(path).raw(form.clone()).send().await;
        assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");

        // A charset parameter is fine.
        let reply = server
            .post(path)
            .body("application/x-www-form-urlencoded; charset=UTF-8", form)
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
}

#[tokio::test]
async fn bodies_over_16_kib_are_refused_with_413() {
    let server = Server::start().await;
    const LIMIT: usize = 16 * 1024;
    let secret = secret_of("svc");
    for path in FORM_ENDPOINTS {
        let mut params = vec![("client_id", "svc"), ("client_secret", secret.as_str())];
        params.extend(valid_params(path));
        let mut body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        body.push_str("&pad=");
        let fill = LIMIT - body.len();
        body.push_str(&"a".repeat(fill));
        assert_eq!(body.len(), LIMIT);
        // Exactly at the limit: processed (the unknown `pad` is ignored).
        let reply = server
            .post(path)
            .body("application/x-www-form-urlencoded", body.clone())
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        body.push('a');
        let reply = server
            .post(path)
            .body("application/x-www-form-urlencoded", body)
            .send()
            .await;
        assert_endpoint_error(
            path,
            &reply,
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
        );
    }
    let reply = server
        .post(BATCH)
        .bearer(&server.admin_token().await)
        .body(
            "application/json",
            format!(
                "{{\"creationBefore\": null, \"x\": \"{}\"}}",
                "a".repeat(LIMIT)
            ),
        )
        .send()
        .await;
    assert_plugin_error(&reply, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_oversized_body_is_refused_without_waiting_for_all_of_it() {
    let server = Server::start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Announces 1 GiB, sends 32 KiB: a server that buffered the whole body would never answer.
    stream
        .write_all(
            b"POST /connect/token HTTP/1.1\r\nhost: tollgate\r\n\
              content-type: application/x-www-form-urlencoded\r\ncontent-length: 1073741824\r\n\r\n",
        )
        .await
        .unwrap();
    stream.write_all(&[b'a'; 32 * 1024]).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the body was sent")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_parameter_sent_twice_is_invalid_request() {
    let server = Server::start().await;
    let cases: [(&str, &str); 6] = [
        (
            TOKEN,
            "grant_type=client_credentials&grant_type=client_credentials",
        ),
        (
            TOKEN,
            "grant_type=client_credentials&scope=orders:read&scope=reports",
        ),
        (TOKEN, "grant_type=client_credentials&client_id=svc"),
        (REVOCATION, "token=a&token=b"),
        (INTROSPECT, "token=a&token=a"),
        (
            API_REVOKE,
            "token=a&token_type_hint=access_token&token_type_hint=access_token",
        ),
    ];
    for (path, params) in cases {
        let body = format!("client_id=svc&client_secret=svc-secret&{params}");
        let reply = server
            .post(path)
            .body("application/x-www-form-urlencoded", body)
            .send()
            .await;
        assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn empty_parameter_values_count_as_absent() {
    let server = Server::start().await;
    // grant_type= is a missing grant_type.
    let reply = server.token("svc", &[("grant_type", "")]).await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    // scope= is no scope: everything allowed; access-token-lifetime= is the default.
    let tokens = server
        .cc(
            "svc",
            &[
                ("scope", ""),
                ("access-token-lifetime", ""),
                ("tenant_path", ""),
            ],
        )
        .await;
    assert_eq!(tokens.body["scope"], "orders:read reports");
    assert_eq!(tokens.body["expires_in"], 300);
    // token= is a missing token.
    for path in [REVOCATION, INTROSPECT, API_REVOKE] {
        let reply = server
            .post(path)
            .form_as("svc", &[("token", "")])
            .send()
            .await;
        assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    // An empty client_secret beside Basic is not a second authentication method.
    let reply = server
        .post(TOKEN)
        .basic("svc", &secret_of("svc"))
        .form(&[("grant_type", "client_credentials"), ("client_secret", "")])
        .send()
        .await;
    reply.tokens();
}

#[tokio::test]
async fn clients_authenticate_with_basic_or_with_body_credentials() {
    let server = Server::start().await;
    let cc = [("grant_type", "client_credentials")];
    // client_secret_post
    let by_body = server.token("svc", &cc).await.tokens();
    // client_secret_basic
    let by_basic = server
        .post(TOKEN)
        .basic("svc", &secret_of("svc"))
        .form(&cc)
        .send()
        .await
        .tokens();
    for tokens in [by_body, by_basic] {
        assert_eq!(decode_jwt(&tokens.access).1["client_id"], "svc");
    }
    // Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1).
    let odd = server
        .post(TOKEN)
        .basic(ODD_CLIENT, ODD_SECRET)
        .form(&cc)
        .send()
        .await
        .tokens();
    assert_eq!(decode_jwt(&odd.access).1["client_id"], ODD_CLIENT);
    // ... and body credentials are plain form values.
    let odd = server
        .post(TOKEN)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ODD_CLIENT),
            ("client_secret", ODD_SECRET),
        ])
        .send()
        .await
        .tokens();
    assert_eq!(decode_jwt(&odd.access).1["client_id"], ODD_CLIENT);
    // Every form endpoint takes both.
    for path in [REVOCATION, INTROSPECT, API_REVOKE] {
        let reply = server
            .post(path)
            .basic("svc", &secret_of("svc"))
            .form(&[("token", "x")])
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let reply = server
            .post(path)
            .form_as("svc", &[("token", "x")])
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn basic_and_body_credentials_together_are_invalid_request() {
    let server = Server::start().await;
    for path in FORM_ENDPOINTS {
        let reply = server
            .post(path)
            .basic("svc", &secret_of("svc"))
            .form_as("svc", &valid_params(path))
            .send()
            .await;
        assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");
        // Even when the header's credentials are wrong: the request is malformed first.
        let reply = server
            .post(path)
            .basic("svc", "wrong")
            .form_as("svc", &valid_params(path))
            .send()
            .await;
        assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn failed_client_authentication_is_401_invalid_client_with_a_basic_challenge_only_for_the_header()
 {
    let server = Server::start().await;
    let b64 = |s: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let header_cases = [
        (
            "unknown client",
            format!("Basic {}", b64(b"nobody:nobody-secret")),
        ),
        (
            "wrong secret",
            format!("Basic {}", b64(b"svc:svc-secret-x")),
        ),
        ("bad base64", "Basic !!not*base64!!".to_owned()),
        ("missing colon", format!("Basic {}", b64(b"svc"))),
        ("not Basic", "Bearer abc".to_owned()),
        ("no credentials", "Basic".to_owned()),
        ("not UTF-8", format!("Basic {}", b64(&[0xff, b':', b'x']))),
    ];
    let secret = secret_of("svc");
    let body_cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "unknown client",
            vec![("client_id", "nobody"), ("client_secret", "nobody-secret")],
        ),
        (
            "wrong secret",
            vec![("client_id", "svc"), ("client_secret", "SVC-secret")],
        ),
        ("no secret", vec![("client_id", "svc")]),
        ("nothing", vec![]),
    ];
    for path in FORM_ENDPOINTS {
        for (case, header) in &header_cases {
            let reply = server
                .post(path)
                .header("authorization", header)
                .form(&valid_params(path))
                .send()
                .await;
            assert_endpoint_error(path, &reply, StatusCode::UNAUTHORIZED, "invalid_client");
            assert_eq!(
                reply.header("www-authenticate"),
                BASIC_CHALLENGE,
                "{path}: {case}"
            );
        }
        for (case, credentials) in &body_cases {
            let mut params = credentials.clone();
            params.extend(valid_params(path));
            let reply = server.post(path).form(&params).send().await;
            assert_endpoint_error(path, &reply, StatusCode::UNAUTHORIZED, "invalid_client");
            assert!(
                !reply.headers.contains_key("www-authenticate"),
                "{path}: {case}: no challenge without the header"
            );
        }
        // The right secret works, so the above failed for the reason given.
        let mut params = vec![("client_id", "svc"), ("client_secret", secret.as_str())];
        params.extend(valid_params(path));
        assert_eq!(
            server.post(path).form(&params).send().await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let server = Server::start().await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "svc:svc-secret");
    for path in FORM_ENDPOINTS {
        let reply = server
            .post(path)
            .header("authorization", format!("Basic {b64}"))
            .header("authorization", format!("Basic {b64}"))
            .form(&valid_params(path))
            .send()
            .await;
        assert_endpoint_error(path, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn hostile_input_never_panics_or_leaks_internals() {
    let server = Server::start().await;
    let admin = server.admin_token().await;
    let long = "x".repeat(15 * 1024);
    let header_b64 = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"alg":"none","typ":"at+jwt"}"#,
    );
    let none_jwt = format!("{header_b64}.e30.");
    let bodies: Vec<Vec<u8>> = vec![
        b"%".to_vec(),
        b"%zz=%zz&&&==&=".to_vec(),
        b"token=%FF%FE%00&grant_type=%C0%AF".to_vec(),
        vec![0xff, 0xfe, 0x00, b'=', 0x80],
        format!("grant_type=password&username={long}&password=x").into_bytes(),
        format!("grant_type=refresh_token&refresh_token={long}").into_bytes(),
        format!("token={long}").into_bytes(),
        b"token=a.b.c".to_vec(),
        b"token=....".to_vec(),
        format!("token={none_jwt}&token_type_hint=access_token").into_bytes(),
        b"grant_type=client_credentials&access-token-lifetime=18446744073709551616".to_vec(),
        b"grant_type=client_credentials&tenant_path=/%00".to_vec(),
        b"grant_type=client_credentials&scope=%20%20%20".to_vec(),
    ];
    for path in FORM_ENDPOINTS {
        for body in &bodies {
            for auth in [true, false] {
                let mut call = server.post(path);
                if auth {
                    call = call.basic("svc", &secret_of("svc"));
                } else {
                    call = call.header(
                        "authorization",
                        [b'B', b'a', b's', b'i', b'c', b' ', 0xc3, 0x28],
                    );
                }
                let reply = call
                    .body("application/x-www-form-urlencoded", body.clone())
                    .send()
                    .await;
                assert!(reply.status.as_u16() < 500, "{path}: {:?}", reply);
                let text = reply.text().to_lowercase();
                for leak in ["sqlite", "/tmp", "panick", "src/", "stack"] {
                    assert!(!text.contains(leak), "{path} leaks {leak}: {text}");
                }
            }
        }
    }
    let nested = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    for body in [
        nested.as_str(),
        "{\"creationBefore\": 12}",
        "{\"creationBefore\": \"\u{0}\"}",
        "{\"creationBefore\": \"99999-01-01\"}",
        "\"creationBefore\"",
        "{\"tenantPath\": \"/../..\"}",
    ] {
        let reply = server
            .post(BATCH)
            .bearer(&admin)
            .body("application/json", body.to_owned())
            .send()
            .await;
        assert_plugin_error(&reply, StatusCode::BAD_REQUEST);
    }
    // Still serving.
    server.cc_token("svc").await;
}

// ---------------------------------------------------------------------------------------------
// POST /connect/token
// ---------------------------------------------------------------------------------------------

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
async fn the_four_password_failures_give_the_same_answer_in_the_same_time() {
    let server = Server::start().await;
    let cases = [
        ("wrong password", "alice", "not the password", "/"),
        ("unknown user", "zoe", PASSWORD, "/"),
        ("disabled user", "carol", PASSWORD, "/"),
        ("not in tenant_path", "bob", PASSWORD, "/Other"),
    ];
    let mut answers = Vec::new();
    let mut fastest = [Duration::MAX; 4];
    // The fastest of three rounds per case: scheduling noise only ever adds time.
    for _round in 0..3 {
        for (i, (_, username, password, tenant)) in cases.iter().enumerate() {
            let started = Instant::now();
            let reply = server
                .token(
                    "web",
                    &[
                        ("grant_type", "password"),
                        ("username", username),
                        ("password", password),
                        ("tenant_path", tenant),
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

// ---------------------------------------------------------------------------------------------
// POST /connect/revocation
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// POST /api/id/v1/auth/token/revoke
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// POST /api/v2/identity/token/batch-revocation
// ---------------------------------------------------------------------------------------------

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
    for body in [
        Some(json!({})),
        Some(json!({"creationBefore": null})),
        Some(Value::Null),
        None,
    ] {
        let admin = server.admin_token().await;
        settle().await;
        let call = server.post(BATCH).bearer(&admin);
        let reply = match &body {
            Some(body) => call.json(body).send().await,
            None => call.send().await,
        };
        assert_eq!(reply.status, StatusCode::OK, "{body:?}: {}", reply.text());
        // The victim and the caller's own token: everything live was issued before now.
        assert_eq!(reply.json(), json!({"count": 2}), "{body:?}");
        assert!(server.refused_as_revoked(&victim).await);
        assert!(server.refused_as_revoked(&admin).await);
        victim = server.cc_token("svc").await;
        assert!(server.accepted(&victim).await);
    }
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
    // Null narrowing fields are absent ones.
    assert_eq!(
        server
            .batch_count(
                &admin,
                json!({"tenantPath": null, "subject": null, "clientId": "svc"})
            )
            .await,
        1
    );
}

// ---------------------------------------------------------------------------------------------
// POST /connect/introspect
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// /connect/userinfo, discovery, JWKS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn userinfo_describes_the_token_subject_and_refuses_missing_or_revoked_tokens() {
    let server = Server::start().await;
    let login = server.login("web", "alice", &[]).await;
    for method in [Method::GET, Method::POST] {
        let reply = server
            .request(method, USERINFO)
            .bearer(&login.access)
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_no_store(&reply);
        let info = reply.json();
        assert_eq!(info["sub"], "u-alice");
        assert_eq!(info["preferred_username"], "alice");
        assert_eq!(info["name"], "Alice Liddell");
        assert_eq!(info["client_id"], "web");
    }
    let reply = server.get(USERINFO).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"tollgate\""
    );
    assert_no_store(&reply);
    let reply = server
        .get(USERINFO)
        .basic("web", &secret_of("web"))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"invalid_request\"")
    );
    assert_no_store(&reply);
    let reply = server.get(USERINFO).bearer("garbage").send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
    assert_no_store(&reply);
    assert_empty_ok(&server.revoke("web", &login.access, None).await);
    let reply = server.get(USERINFO).bearer(&login.access).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").contains("revoked"));
    assert_no_store(&reply);
}

#[tokio::test]
async fn discovery_documents_name_the_issuer_endpoints_grants_auth_methods_and_jwks() {
    let server = Server::start().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let reply = server.get(path).send().await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-type"), "application/json");
        let doc = reply.json();
        assert_eq!(doc["issuer"], server.base);
        for (field, endpoint) in [
            ("token_endpoint", TOKEN),
            ("revocation_endpoint", REVOCATION),
            ("introspection_endpoint", INTROSPECT),
            ("userinfo_endpoint", USERINFO),
            ("jwks_uri", "/.well-known/jwks.json"),
        ] {
            assert_eq!(doc[field], format!("{}{endpoint}", server.base), "{field}");
        }
        let mut grants: Vec<&str> = doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        grants.sort_unstable();
        assert_eq!(grants, ["client_credentials", "password", "refresh_token"]);
        for field in [
            "token_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported",
            "introspection_endpoint_auth_methods_supported",
        ] {
            assert_eq!(
                doc[field],
                json!(["client_secret_basic", "client_secret_post"]),
                "{field}"
            );
        }
        let reply = server.request(Method::HEAD, path).send().await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}

/// The JWKS, checked to hold public keys only.
async fn published_jwks(server: &Server) -> Value {
    let reply = server.get("/.well-known/jwks.json").send().await;
    assert_eq!(reply.status, StatusCode::OK);
    let jwks = reply.json();
    for key in jwks["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} in {key}"
            );
        }
    }
    jwks
}

#[tokio::test]
async fn jwks_publishes_every_verification_key_and_no_private_material() {
    let server = Server::start().await;
    let old = server.cc_token("svc").await;
    let published = published_jwks(&server).await;
    let kids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["k1"]);
    // A resource server that knows only the JWKS verifies the issuer's tokens.
    let verifier = |jwks: &Value| {
        let keys = KeySet::from_jwks(&serde_json::from_value(jwks.clone()).unwrap()).unwrap();
        tollgate_layer::Verifier::builder()
            .issuer(server.base.clone())
            .audience(server.base.clone())
            .keys(keys)
            .revocation_index(Arc::new(RevocationIndex::new()))
            .build()
            .unwrap()
    };
    assert!(verifier(&published).verify(&old).is_ok());
    // Rotation: the new key signs, the old one stays published while tokens signed with it live.
    server
        .keys
        .set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    let new = server.cc_token("svc").await;
    assert_eq!(decode_jwt(&new).0["kid"], "k2");
    let published = published_jwks(&server).await;
    let mut kids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    kids.sort_unstable();
    assert_eq!(kids, ["k1", "k2"]);
    let verifier = verifier(&published);
    assert!(verifier.verify(&old).is_ok());
    assert!(verifier.verify(&new).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Storage outages
// ---------------------------------------------------------------------------------------------

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
