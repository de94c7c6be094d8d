//! The rules every endpoint follows: methods, content types, body limits, repeated and empty
//! parameters, client authentication, hostile input.
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        // A server per endpoint: the unknown id's failures add up, and would be throttled.
        let server = Server::start().await;
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

#[tokio::test]
async fn client_ids_longer_than_256_bytes_are_an_unknown_client() {
    let server = Server::start().await;
    let long = "c".repeat(257);
    let reply = server
        .post(TOKEN)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &long),
            ("client_secret", "x"),
        ])
        .send()
        .await;
    assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn repeated_failed_client_authentications_are_throttled_per_client() {
    let server = Server::start().await;
    let guess = |secret: &'static str| {
        let server = &server;
        async move {
            server
                .post(TOKEN)
                .basic("svc", secret)
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
        }
    };
    for _ in 0..5 {
        let reply = guess("wrong").await;
        assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // Throttled before any comparison: a guess, even the right secret, waits.
    let right = secret_of("svc");
    let reply = server
        .post(TOKEN)
        .basic("svc", &right)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(reply.header("retry-after").parse::<u64>().unwrap() >= 1);
    // Unknown client ids are throttled alike (the throttle reveals nothing), and other clients
    // are not affected.
    for _ in 0..5 {
        let reply = server
            .post(TOKEN)
            .basic("nobody", "x")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        assert_oauth_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let reply = server
        .post(TOKEN)
        .basic("nobody", "x")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(server.cc("svc2", &[]).await.body["token_type"], "Bearer");
}

#[tokio::test]
async fn with_a_peer_address_a_guesser_delays_only_its_own_address() {
    use tower::ServiceExt;
    let server = Server::start().await;
    let attempt = |ip: [u8; 4], secret: &str| {
        let credentials = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("svc:{secret}"),
        );
        let mut request = http::Request::post(TOKEN)
            .header("authorization", format!("Basic {credentials}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .unwrap();
        request
            .extensions_mut()
            .insert(tollgate_issuer::PeerAddr(ip.into()));
        server.service.clone().oneshot(request)
    };
    for _ in 0..5 {
        let reply = attempt([203, 0, 113, 7], "wrong").await.unwrap();
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }
    let reply = attempt([203, 0, 113, 7], &secret_of("svc")).await.unwrap();
    assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
    // The client itself, calling from its own address, is not locked out.
    let reply = attempt([192, 0, 2, 10], &secret_of("svc")).await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}
