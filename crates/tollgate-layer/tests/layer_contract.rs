//! Every row of the Layer table in CONTRACT.md, for HTTP and gRPC requests, driven through the
//! tower Service with `oneshot`; plus forged tokens, the verified-token cache and readiness.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{AUDIENCE, Fixture, ISSUER, now_ms};
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tollgate_core::{CutoffScope, RevocationEvent, SigningAlgorithm, SigningKey, UnixMillis, jws};
use tollgate_layer::{
    DefaultRejection, Rejection, RequireScopeLayer, ValidateBearerLayer, VerifiedClaims,
};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// What the inner service saw: the subject of the claims it was handed, or "anonymous".
async fn echo(req: Request<()>) -> Result<Response<String>, Infallible> {
    let who = req
        .extensions()
        .get::<VerifiedClaims>()
        .map(|c| c.sub.clone())
        .unwrap_or_else(|| "anonymous".to_owned());
    Ok(Response::new(who))
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Http,
    Grpc,
}

fn request(kind: Kind, auth: &[&[u8]]) -> Request<()> {
    let mut req = Request::builder().uri("/orders");
    if kind == Kind::Grpc {
        req = req.header(CONTENT_TYPE, "application/grpc+proto");
    }
    for a in auth {
        req = req.header(AUTHORIZATION, HeaderValue::from_bytes(a).unwrap());
    }
    req.body(()).unwrap()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

async fn call(fx: &Fixture, req: Request<()>) -> Response<String> {
    ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .service_fn(echo)
        .oneshot(req)
        .await
        .unwrap()
}

fn header<'a>(res: &'a Response<String>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// Asserts an HTTP rejection: status, and the `error` attribute of the challenge (None: absent).
fn assert_http(res: &Response<String>, status: StatusCode, error: Option<&str>) {
    assert_eq!(res.status(), status);
    let challenge = header(res, "www-authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"tollgate\""),
        "{challenge}"
    );
    match error {
        None => assert!(!challenge.contains("error="), "{challenge}"),
        Some(code) => assert!(
            challenge.contains(&format!("error=\"{code}\"")),
            "{challenge}"
        ),
    }
    assert_eq!(res.body(), "", "the inner service must not run");
}

fn assert_grpc(res: &Response<String>, status: &str) {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res, "grpc-status"), status);
    assert!(!header(res, "grpc-message").is_empty());
    assert_eq!(header(res, "content-type"), "application/grpc");
    assert_eq!(res.body(), "");
}

async fn expect_rejected(fx: &Fixture, auth: &[&[u8]], status: StatusCode, error: Option<&str>) {
    let res = call(fx, request(Kind::Http, auth)).await;
    assert_http(&res, status, error);
    let res = call(fx, request(Kind::Grpc, auth)).await;
    assert_grpc(&res, "16");
}

#[tokio::test]
async fn valid_token_reaches_the_service_with_claims() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let token = fx.mint(|_| {});
    for kind in [Kind::Http, Kind::Grpc] {
        let res = call(&fx, request(kind, &[&bearer(&token)])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "alice");
    }
}

#[tokio::test]
async fn every_algorithm_is_accepted() {
    for &alg in SigningAlgorithm::ALL {
        let fx = Fixture::new(alg);
        let res = call(&fx, request(Kind::Http, &[&bearer(&fx.mint(|_| {}))])).await;
        assert_eq!(res.status(), StatusCode::OK, "{alg}");
    }
}

#[tokio::test]
async fn missing_header_is_401_without_error_code() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    expect_rejected(&fx, &[], StatusCode::UNAUTHORIZED, None).await;
}

#[tokio::test]
async fn malformed_credentials_are_400_invalid_request() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let token = fx.mint(|_| {});
    for auth in [
        &b"Basic YWxpY2U6c2VjcmV0"[..],
        b"Bearer",
        b"Bearer ",
        b"Token abc",
        b"Bearer \xc3\xa9t\xc3\xa9",
        b"Bearer a b",
    ] {
        expect_rejected(
            &fx,
            &[auth],
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
        )
        .await;
    }
    // Two Authorization headers, even both valid.
    let b = bearer(&token);
    expect_rejected(
        &fx,
        &[&b, &b],
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
    )
    .await;
}

async fn expect_invalid_token(fx: &Fixture, token: &str, description: &str) {
    let res = call(fx, request(Kind::Http, &[&bearer(token)])).await;
    assert_http(&res, StatusCode::UNAUTHORIZED, Some("invalid_token"));
    let challenge = header(&res, "www-authenticate");
    assert!(
        challenge.contains(&format!("error_description=\"{description}")),
        "{challenge} should say {description}"
    );
    let res = call(fx, request(Kind::Grpc, &[&bearer(token)])).await;
    assert_grpc(&res, "16");
    assert!(header(&res, "grpc-message").starts_with(description));
}

/// A change to a token's claims.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[tokio::test]
async fn claim_checks_are_401_invalid_token() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let now = now_ms() / 1000;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| c["iss"] = json!("https://evil.test")),
            "wrong issuer",
        ),
        (
            Box::new(|c| c["aud"] = json!("other-api")),
            "wrong audience",
        ),
        (Box::new(|c| c["aud"] = json!(["a", "b"])), "wrong audience"),
        (
            Box::new(move |c| c["exp"] = json!(now - 31)),
            "token expired",
        ),
        (
            Box::new(move |c| c["nbf"] = json!(now + 120)),
            "token not yet valid",
        ),
        (
            Box::new(move |c| c["iat"] = json!(now + 120)),
            "token not yet valid",
        ),
        (Box::new(|c| c["sub"] = json!(42)), "invalid claims"),
    ];
    for (edit, description) in cases {
        expect_invalid_token(&fx, &fx.mint(edit), description).await;
    }
    // Within the leeway (30 s) both ways is fine; several audiences with ours is fine.
    for edit in [
        Box::new(move |c: &mut serde_json::Value| c["exp"] = json!(now - 10)) as Edit,
        Box::new(move |c| c["nbf"] = json!(now + 10)),
        Box::new(|c| c["aud"] = json!(["x", AUDIENCE])),
    ] {
        let res = call(&fx, request(Kind::Http, &[&bearer(&fx.mint(edit))])).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// Builds a compact JWS by hand: the header is whatever the attacker wants.
fn forge(
    header: serde_json::Value,
    claims: &serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let mut token = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = sign(token.as_bytes());
    token.push('.');
    token.push_str(&B64.encode(sig));
    token
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let claims = fx.claims(|_| {});

    // alg: none, with and without a signature, in every spelling.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let unsigned = forge(
            json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}),
            &claims,
            |_| vec![],
        );
        expect_invalid_token(&fx, &unsigned, "signing algorithm not allowed").await;
        let trimmed = unsigned.trim_end_matches('.').to_owned() + ".";
        expect_invalid_token(&fx, &trimmed, "signing algorithm not allowed").await;
    }

    // HS256 "signed" with the public key: the classic RS/HS confusion, for each public algorithm.
    for alg in [
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
    ] {
        let fx = Fixture::new(alg);
        let jwk = fx.keys.to_jwks().keys[0].clone();
        let public_json = serde_json::to_vec(&jwk).unwrap();
        let mut candidates = vec![public_json];
        if let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) = &jwk.algorithm {
            candidates.push(B64.decode(&p.x).unwrap());
        }
        for secret in candidates {
            let forged = forge(
                json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}),
                &claims,
                |m| {
                    let key = aws_hmac(&secret);
                    key(m)
                },
            );
            expect_invalid_token(&fx, &forged, "signing algorithm does not match the key").await;
        }
    }

    // A kid that points nowhere.
    let other = SigningKey::generate(SigningAlgorithm::EdDSA, "elsewhere").unwrap();
    let token = jws::encode(&other, jws::ACCESS_TOKEN_TYP, &claims).unwrap();
    expect_invalid_token(&fx, &token, "unknown signing key").await;

    // The right kid, but signed by another key.
    let impostor = SigningKey::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let token = jws::encode(&impostor, jws::ACCESS_TOKEN_TYP, &claims).unwrap();
    expect_invalid_token(&fx, &token, "invalid signature").await;

    // Wrong or missing typ (an ID token is not an access token).
    let key = fx.keys.signing_key().unwrap();
    for typ in ["JWT", "id_token+jwt"] {
        let token = jws::encode(&key, typ, &claims).unwrap();
        expect_invalid_token(&fx, &token, "token type must be at+jwt").await;
    }
    let no_typ = forge(json!({"alg": "EdDSA", "kid": "k1"}), &claims, |m| {
        key.sign(m).unwrap()
    });
    expect_invalid_token(&fx, &no_typ, "token type must be at+jwt").await;

    // An unknown critical header.
    let crit = forge(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt", "crit": ["exp"], "exp": 1}),
        &claims,
        |m| key.sign(m).unwrap(),
    );
    expect_invalid_token(&fx, &crit, "unsupported critical header").await;
    let crit_null = forge(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt", "crit": null}),
        &claims,
        |m| key.sign(m).unwrap(),
    );
    expect_invalid_token(&fx, &crit_null, "unsupported critical header").await;

    // A header that is a JSON array, not an object, even one naming a good alg, kid and typ in
    // the order a derived deserializer would take them, and properly signed.
    let array = forge(json!(["EdDSA", "k1", "at+jwt"]), &claims, |m| {
        key.sign(m).unwrap()
    });
    expect_invalid_token(&fx, &array, "malformed token").await;

    // A multi-byte character where "application/" would end must not panic (unsigned token:
    // the header is judged before the signature).
    for typ in [
        "aaaaaaaaaaa\u{e9}x",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
    ] {
        let weird = forge(
            json!({"alg": "EdDSA", "kid": "k1", "typ": typ}),
            &claims,
            |_| vec![1],
        );
        expect_invalid_token(&fx, &weird, "token type must be at+jwt").await;
    }

    // No kid while several keys are trusted: no key can be chosen.
    fx.keys
        .add_verifying_key(
            SigningKey::generate(SigningAlgorithm::EdDSA, "k0")
                .unwrap()
                .verifying_key()
                .to_jwk()
                .map(|j| tollgate_core::VerifyingKey::from_jwk(j).unwrap())
                .unwrap(),
        )
        .unwrap();
    let kidless = forge(json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims, |m| {
        key.sign(m).unwrap()
    });
    expect_invalid_token(&fx, &kidless, "token names no signing key").await;

    // A header that points at the attacker's own key is ignored: the signature still has to
    // verify with the configured key.
    let attacker = SigningKey::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let jwk = attacker.verifying_key().to_jwk().unwrap().clone();
    let embedded = forge(
        json!({"alg": "EdDSA", "kid": "k1", "typ": "at+jwt", "jwk": jwk, "jku": "http://evil.test/jwks"}),
        &claims,
        |m| attacker.sign(m).unwrap(),
    );
    expect_invalid_token(&fx, &embedded, "invalid signature").await;

    // Huge tokens.
    let huge = fx.mint(|c| c["pad"] = json!("x".repeat(20_000)));
    expect_invalid_token(&fx, &huge, "token too large").await;

    // Garbage: not base64, not JSON, wrong number of parts, duplicate claims.
    let valid = fx.mint(|_| {});
    let parts: Vec<&str> = valid.split('.').collect();
    for garbage in [
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}..{}", parts[0], parts[2]),
        format!("a~b.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", B64.encode(b"not json"), parts[1], parts[2]),
        format!(
            "{}.{}.{}",
            B64.encode([0xff, 0xfe, 0x00]),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", parts[0], parts[1], "x".repeat(800)),
    ] {
        let res = call(&fx, request(Kind::Http, &[&bearer(&garbage)])).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{garbage}");
        assert!(header(&res, "www-authenticate").contains("invalid_token"));
    }
    let mut dup = serde_json::to_string(&claims).unwrap();
    dup.insert_str(1, "\"sub\":\"mallory\",");
    let dup_token = format!("{}.{}", parts[0], B64.encode(dup));
    let sig = key.sign(dup_token.as_bytes()).unwrap();
    let dup_token = format!("{dup_token}.{}", B64.encode(sig));
    expect_invalid_token(&fx, &dup_token, "invalid claims").await;
}

fn aws_hmac(secret: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> + use<> {
    // An independent HMAC (jsonwebtoken's encoder) so the forgery does not depend on our code.
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    move |m: &[u8]| {
        let sig = jsonwebtoken::crypto::sign(m, &key, jsonwebtoken::Algorithm::HS256).unwrap();
        B64.decode(sig).unwrap()
    }
}

#[tokio::test]
async fn tokens_from_an_independent_encoder_are_accepted() {
    // jsonwebtoken signs an HS256 token; our verifier must accept it (interoperability).
    let secret = [7u8; 32];
    let keys = tollgate_core::KeySet::new();
    keys.add_verifying_key(tollgate_core::VerifyingKey::hmac("shared", &secret).unwrap())
        .unwrap();
    let fx = Fixture::with(SigningAlgorithm::EdDSA, |b| b.keys(keys));
    let claims = fx.claims(|_| {});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("shared".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let res = call(&fx, request(Kind::Http, &[&bearer(&token)])).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoked_tokens_grants_and_cutoffs_are_refused() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let revoked = fx.mint(|c| c["jti"] = json!("revoke-me"));
    let sibling = fx.mint(|c| c["grant_id"] = json!("family"));
    let cousin = fx.mint(|c| c["grant_id"] = json!("family"));
    for t in [&revoked, &sibling, &cousin] {
        assert_eq!(
            call(&fx, request(Kind::Http, &[&bearer(t)])).await.status(),
            StatusCode::OK
        );
    }
    let exp = UnixMillis(now_ms() + 300_000);
    fx.index.apply(&RevocationEvent::Token {
        jti: "revoke-me".into(),
        expires_at: exp,
    });
    expect_invalid_token(&fx, &revoked, "token revoked").await;
    fx.index.apply(&RevocationEvent::Grant {
        grant_id: "family".into(),
        expires_at: exp,
    });
    expect_invalid_token(&fx, &sibling, "token revoked (grant revoked)").await;
    expect_invalid_token(&fx, &cousin, "token revoked (grant revoked)").await;

    // A cutoff on a parent tenant rejects older tokens and accepts newer ones, to the ms.
    let issued = now_ms();
    let older = fx.mint(|c| c["iat_ms"] = json!(issued));
    fx.index.apply(&RevocationEvent::Cutoff {
        scope: CutoffScope::Tenant("/Org".into()),
        issued_before: UnixMillis(issued + 1),
    });
    expect_invalid_token(
        &fx,
        &older,
        "token revoked (issued before a revocation cutoff)",
    )
    .await;
    let at_cutoff = fx.mint(|c| {
        c["iat_ms"] = json!(issued + 1);
        c["iat"] = json!((issued + 1) / 1000);
    });
    assert_eq!(
        call(&fx, request(Kind::Http, &[&bearer(&at_cutoff)]))
            .await
            .status(),
        StatusCode::OK
    );
    let other_tenant = fx.mint(|c| {
        c["iat_ms"] = json!(issued);
        c["tenant"] = json!("/Organic");
    });
    assert_eq!(
        call(&fx, request(Kind::Http, &[&bearer(&other_tenant)]))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn require_scope_is_403_insufficient_scope() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let svc = |scope: &str| {
        ServiceBuilder::new()
            .layer(ValidateBearerLayer::new(fx.verifier.clone()).optional())
            .layer(RequireScopeLayer::new(scope))
            .service_fn(echo)
    };
    let token = fx.mint(|_| {});
    let ok = svc("orders:read")
        .oneshot(request(Kind::Http, &[&bearer(&token)]))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let res = svc("orders:write orders:read")
        .oneshot(request(Kind::Http, &[&bearer(&token)]))
        .await
        .unwrap();
    assert_http(&res, StatusCode::FORBIDDEN, Some("insufficient_scope"));
    assert!(header(&res, "www-authenticate").contains("scope=\"orders:write orders:read\""));
    let res = svc("orders:write")
        .oneshot(request(Kind::Grpc, &[&bearer(&token)]))
        .await
        .unwrap();
    assert_grpc(&res, "7");
    // Optional outer layer, no token: RequireScope answers 401.
    let res = svc("orders:read")
        .oneshot(request(Kind::Http, &[]))
        .await
        .unwrap();
    assert_http(&res, StatusCode::UNAUTHORIZED, None);
}

#[tokio::test]
async fn optional_mode_passes_anonymous_requests_but_not_bad_tokens() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let svc = || {
        ServiceBuilder::new()
            .layer(ValidateBearerLayer::new(fx.verifier.clone()).optional())
            .service_fn(echo)
    };
    let res = svc().oneshot(request(Kind::Http, &[])).await.unwrap();
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::OK, "anonymous")
    );
    let res = svc()
        .oneshot(request(Kind::Http, &[b"Bearer nope"]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let token = fx.mint(|_| {});
    let res = svc()
        .oneshot(request(Kind::Http, &[&bearer(&token)]))
        .await
        .unwrap();
    assert_eq!(res.body(), "alice");
}

#[tokio::test]
async fn claims_smuggled_into_extensions_are_removed() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    // A request that already carries claims (from some earlier code) and no token: the optional
    // layer must not let those claims through.
    let mut req = request(Kind::Http, &[]);
    let token = fx.mint(|c| c["sub"] = json!("mallory"));
    let smuggled = fx.verifier.verify(&token).unwrap();
    req.extensions_mut().insert(smuggled);
    let res = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(fx.verifier.clone()).optional())
        .service_fn(echo)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.body(), "anonymous");
}

#[tokio::test]
async fn rejection_hook_shapes_the_response() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let layer = ValidateBearerLayer::new(fx.verifier.clone()).on_rejection(
        |rejection: &Rejection, _: &http::HeaderMap| {
            let mut res = Response::new(
                json!({"error": rejection.error_code(), "revoked": rejection.is_revoked()})
                    .to_string(),
            );
            *res.status_mut() = rejection.status();
            res
        },
    );
    let res = layer
        .layer(tower::service_fn(echo))
        .oneshot(request(Kind::Http, &[b"Bearer x"]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.body(), r#"{"error":"invalid_token","revoked":false}"#);
    // Custom realm through the default hook.
    let layer = ValidateBearerLayer::new(fx.verifier.clone())
        .on_rejection(DefaultRejection::with_realm("orders"));
    let res = layer
        .layer(tower::service_fn(echo))
        .oneshot(request(Kind::Http, &[]))
        .await
        .unwrap();
    assert_eq!(
        header(&res, WWW_AUTHENTICATE.as_str()),
        "Bearer realm=\"orders\""
    );
}

#[tokio::test]
async fn verified_token_cache_still_checks_revocation_and_keys() {
    let fx = Fixture::with(SigningAlgorithm::EdDSA, |b| b.cache_verified_tokens(1000));
    let token = fx.mint(|c| c["jti"] = json!("cached"));
    for _ in 0..3 {
        assert_eq!(
            call(&fx, request(Kind::Http, &[&bearer(&token)]))
                .await
                .status(),
            StatusCode::OK
        );
    }
    // A tampered copy of a cached token is a different token: verified from scratch, refused.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        call(&fx, request(Kind::Http, &[&bearer(&tampered)]))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Revocation applies to cached tokens at once.
    fx.index.apply(&RevocationEvent::Token {
        jti: "cached".into(),
        expires_at: UnixMillis(now_ms() + 300_000),
    });
    expect_invalid_token(&fx, &token, "token revoked").await;

    // Removing the signing key empties the cache: a cached token of that key is refused.
    let fresh = fx.mint(|_| {});
    assert_eq!(
        call(&fx, request(Kind::Http, &[&bearer(&fresh)]))
            .await
            .status(),
        StatusCode::OK
    );
    fx.keys
        .set_signing_key(SigningKey::generate(SigningAlgorithm::EdDSA, "k2").unwrap());
    assert_eq!(
        call(&fx, request(Kind::Http, &[&bearer(&fresh)]))
            .await
            .status(),
        StatusCode::OK
    );
    assert!(fx.keys.remove("k1"));
    expect_invalid_token(&fx, &fresh, "unknown signing key").await;
}

#[tokio::test]
async fn cached_tokens_still_expire() {
    use tollgate_core::{Clock, ManualClock};
    let clock = std::sync::Arc::new(ManualClock::new(UnixMillis(now_ms())));
    let fx = Fixture::with(SigningAlgorithm::EdDSA, |b| {
        b.cache_verified_tokens(10)
            .clock(clock.clone())
            .leeway(Duration::from_secs(0))
    });
    let exp = clock.now().as_secs() + 60;
    let token = fx.mint(|c| c["exp"] = json!(exp));
    assert_eq!(
        call(&fx, request(Kind::Http, &[&bearer(&token)]))
            .await
            .status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(61));
    expect_invalid_token(&fx, &token, "token expired").await;
}

#[tokio::test]
async fn readiness_is_delegated_and_the_ready_service_is_used() {
    // The inner service is a concurrency limit of 1: once its permit is taken, the layered
    // service must report Pending too (back-pressure), and become ready when it is released.
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let inner = tower::limit::ConcurrencyLimit::new(
        tower::service_fn(move |_req: Request<()>| {
            let mut gate = gate_rx.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok::<_, Infallible>(Response::new(String::from("done")))
            }
        }),
        1,
    );
    let mut svc = ValidateBearerLayer::new(fx.verifier.clone()).layer(inner);
    let token = fx.mint(|_| {});
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    let first = svc.call(request(Kind::Http, &[&bearer(&token)]));
    let first = tokio::spawn(first);
    let mut clone = svc.clone();
    let pending = futures_poll_once(&mut clone).await;
    assert!(
        pending,
        "the layer must report the inner service's back-pressure"
    );
    gate_tx.send(true).unwrap();
    assert_eq!(first.await.unwrap().unwrap().body(), "done");
    std::future::poll_fn(|cx| clone.poll_ready(cx))
        .await
        .unwrap();
    let res = clone
        .call(request(Kind::Http, &[&bearer(&token)]))
        .await
        .unwrap();
    assert_eq!(res.body(), "done");
}

/// Polls `poll_ready` once; true if it was Pending.
async fn futures_poll_once<S: Service<Request<()>>>(svc: &mut S) -> bool {
    std::future::poll_fn(|cx| std::task::Poll::Ready(svc.poll_ready(cx).is_pending())).await
}

#[tokio::test]
async fn tokens_without_an_id_are_refused() {
    // A token whose `jti` is empty can never be revoked by id: refused, with the same
    // description as one without `jti` at all (or with a null one).
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let cases: Vec<Edit> = vec![
        Box::new(|c| c["jti"] = json!("")),
        Box::new(|c| {
            c.as_object_mut().unwrap().remove("jti");
        }),
        Box::new(|c| c["jti"] = json!(null)),
    ];
    for edit in cases {
        expect_invalid_token(&fx, &fx.mint(edit), "token has no id (jti)").await;
    }
    // A `jti` that is there but not a string is a mistyped claim, as before.
    expect_invalid_token(&fx, &fx.mint(|c| c["jti"] = json!(7)), "invalid claims").await;
    // A one-character id is an id.
    let res = call(
        &fx,
        request(Kind::Http, &[&bearer(&fx.mint(|c| c["jti"] = json!("j")))]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_tenant_claims_are_refused() {
    // A tenant that is not a canonical path could escape a cutoff on its parent.
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    for tenant in ["Org", "Org/Sub", "//Org", "/Org/", "/x/../Org", ""] {
        let token = fx.mint(|c| c["tenant"] = json!(tenant));
        expect_invalid_token(&fx, &token, "invalid claims").await;
    }
}

#[tokio::test]
async fn revocations_outlive_the_leeway_after_purge() {
    // The verifier accepts a token until exp + leeway; purging its revocation at exp would
    // revive it for the rest of the leeway.
    use tollgate_core::{Clock, ManualClock};
    let clock = std::sync::Arc::new(ManualClock::new(UnixMillis(now_ms())));
    let fx = Fixture::with(SigningAlgorithm::EdDSA, |b| {
        b.clock(clock.clone()).leeway(Duration::from_secs(30))
    });
    let exp = clock.now().as_secs() + 60;
    let token = fx.mint(|c| {
        c["exp"] = json!(exp);
        c["jti"] = json!("short-lived");
    });
    fx.index.apply(&RevocationEvent::Token {
        jti: "short-lived".into(),
        expires_at: UnixMillis::from_secs(exp),
    });
    clock.set(UnixMillis::from_secs(exp + 5));
    fx.index.purge_expired(clock.now());
    expect_invalid_token(&fx, &token, "token revoked").await;
    clock.set(UnixMillis::from_secs(exp + 30));
    assert_eq!(
        fx.index.purge_expired(clock.now()),
        1,
        "forgotten once the leeway is over"
    );
    expect_invalid_token(&fx, &token, "token expired").await;
}

#[tokio::test]
async fn issuer_and_audience_are_matched_exactly() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    for iss in [
        format!("{ISSUER}/"),
        ISSUER.to_uppercase(),
        format!(" {ISSUER}"),
    ] {
        let token = fx.mint(|c| c["iss"] = json!(iss));
        expect_invalid_token(&fx, &token, "wrong issuer").await;
    }
}
