//! Certificate-bound access tokens (RFC 8705 §3) through the Layer: the client certificate in
//! the request's extensions as a TLS listener puts it there, or as `FromTrustedProxy` reads it
//! from a trusted proxy's header.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::Fixture;
use http::{HeaderValue, Request, Response, StatusCode};
use std::convert::Infallible;
use std::net::IpAddr;
use tollgate_core::{ClientCertificate, PeerAddr, SigningAlgorithm};
use tollgate_layer::client_cert::{FromTrustedProxyLayer, TrustedProxies};
use tollgate_layer::{ValidateBearerLayer, VerifiedClaims};
use tower::{ServiceBuilder, ServiceExt};

/// A self-signed client certificate, DER.
fn certificate(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![format!("{name}.client.test")]).unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

async fn echo(request: Request<()>) -> Result<Response<String>, Infallible> {
    let claims = request.extensions().get::<VerifiedClaims>().unwrap();
    // The application never sees the proxy's header.
    assert!(request.headers().get("client-cert").is_none());
    Ok(Response::new(claims.sub.clone()))
}

fn request(token: &str, certificate: Option<&[u8]>) -> Request<()> {
    let mut request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    if let Some(der) = certificate {
        request
            .extensions_mut()
            .insert(ClientCertificate::from_der(der.to_vec()));
    }
    request
}

fn challenge(response: &Response<String>) -> &str {
    response.headers()["www-authenticate"].to_str().unwrap()
}

fn bound_to(fx: &Fixture, der: &[u8]) -> String {
    let x5t = ClientCertificate::from_der(der.to_vec()).x5t_s256();
    fx.mint(|c| c["cnf"] = serde_json::json!({ "x5t#S256": x5t }))
}

#[tokio::test]
async fn a_bound_token_is_accepted_with_its_certificate_only() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let (mine, other) = (certificate("mine"), certificate("other"));
    let token = bound_to(&fx, &mine);
    let service = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .service_fn(echo);

    let accepted = service
        .clone()
        .oneshot(request(&token, Some(&mine)))
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);

    let another = service
        .clone()
        .oneshot(request(&token, Some(&other)))
        .await
        .unwrap();
    assert_eq!(another.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&another),
        "Bearer realm=\"tollgate\", error=\"invalid_token\", \
         error_description=\"token is bound to another client certificate\""
    );

    let none = service
        .clone()
        .oneshot(request(&token, None))
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&none).contains("error=\"invalid_token\""));
    assert!(challenge(&none).contains("none was presented"));

    // An unbound token is unaffected, with or without a certificate.
    let unbound = fx.mint(|_| {});
    for cert in [None, Some(&mine[..])] {
        let response = service
            .clone()
            .oneshot(request(&unbound, cert))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn cnf_the_layer_cannot_check_or_malformed_is_refused() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let mine = certificate("mine");
    let x5t = ClientCertificate::from_der(mine.clone()).x5t_s256();
    let service = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .service_fn(echo);
    for (cnf, description) in [
        (
            serde_json::json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" }),
            "unsupported token confirmation (cnf)",
        ),
        (
            serde_json::json!({ "x5t#S256": x5t, "jkt": "x" }),
            "unsupported token confirmation (cnf)",
        ),
        (
            serde_json::json!({}),
            "unsupported token confirmation (cnf)",
        ),
        (serde_json::json!({ "x5t#S256": 42 }), "invalid claims"),
        (serde_json::json!(x5t), "invalid claims"),
    ] {
        let token = fx.mint(|c| c["cnf"] = cnf.clone());
        let response = service
            .clone()
            .oneshot(request(&token, Some(&mine)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cnf}");
        assert!(
            challenge(&response).contains(description),
            "{cnf}: {}",
            challenge(&response)
        );
    }
}

#[tokio::test]
async fn require_bound_tokens_refuses_unbound_ones() {
    let fx = Fixture::new(SigningAlgorithm::ES256);
    let mine = certificate("mine");
    let service = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(fx.verifier.clone()).require_bound_tokens())
        .service_fn(echo);
    let unbound = fx.mint(|_| {});
    let response = service
        .clone()
        .oneshot(request(&unbound, Some(&mine)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("not bound to a client certificate"));
    let bound = bound_to(&fx, &mine);
    let response = service.oneshot(request(&bound, Some(&mine))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn rfc9440(der: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&format!(":{}:", STANDARD.encode(der))).unwrap()
}

/// nginx's `$ssl_client_escaped_cert`.
fn nginx_escaped(der: &[u8]) -> HeaderValue {
    let base64 = STANDARD.encode(der);
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let escaped: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    HeaderValue::from_str(&escaped).unwrap()
}

#[tokio::test]
async fn the_header_counts_from_a_trusted_proxy_only() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let (mine, other) = (certificate("mine"), certificate("other"));
    let token = bound_to(&fx, &mine);
    let trusted = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1"]).unwrap();
    let service = ServiceBuilder::new()
        .layer(FromTrustedProxyLayer::new(trusted))
        .layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .service_fn(echo);
    let call = |peer: &str, header: Option<HeaderValue>, listener_cert: Option<&[u8]>| {
        let mut request = request(&token, listener_cert);
        let ip: IpAddr = peer.parse().unwrap();
        request.extensions_mut().insert(PeerAddr(ip));
        if let Some(header) = header {
            request.headers_mut().insert("client-cert", header);
        }
        service.clone().oneshot(request)
    };

    // From a trusted proxy, in either form: the header's certificate is the client's.
    for header in [rfc9440(&mine), nginx_escaped(&mine)] {
        let response = call("10.1.2.3", Some(header), None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = call("127.0.0.1", Some(rfc9440(&other)), None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&response).contains("another client certificate"));
    // A malformed header from a trusted proxy is no certificate.
    let garbage = HeaderValue::from_static(":AAAA:");
    let response = call("10.1.2.3", Some(garbage), None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A trusted proxy that sends no header vouches for no certificate: what its own TLS
    // connection presented is not the client's.
    let response = call("10.1.2.3", None, Some(&mine)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // From anyone else the header is ignored (and removed)...
    for peer in ["127.0.0.2", "192.0.2.1", "::1"] {
        let response = call(peer, Some(rfc9440(&mine)), None).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{peer}");
        assert!(
            challenge(&response).contains("none was presented"),
            "{peer}"
        );
    }
    // ... while the certificate of their own TLS connection still counts.
    let response = call("192.0.2.1", Some(rfc9440(&other)), Some(&mine))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Without a peer address nothing is trusted.
    let mut request = request(&token, None);
    request.headers_mut().insert("client-cert", rfc9440(&mine));
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// An axum app served with `into_make_service_with_connect_info::<SocketAddr>()` has the peer as
/// `ConnectInfo`, which the layer reads like `PeerAddr`.
#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_connect_info_names_the_peer() {
    let fx = Fixture::new(SigningAlgorithm::EdDSA);
    let mine = certificate("mine");
    let token = bound_to(&fx, &mine);
    let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let service = ServiceBuilder::new()
        .layer(FromTrustedProxyLayer::new(trusted))
        .layer(ValidateBearerLayer::new(fx.verifier.clone()))
        .service_fn(echo);
    for (peer, status) in [
        ("10.9.8.7:4000", StatusCode::OK),
        ("192.0.2.1:4000", StatusCode::UNAUTHORIZED),
    ] {
        let mut request = request(&token, None);
        let addr: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        request.headers_mut().insert("client-cert", rfc9440(&mine));
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status, "{peer}");
    }
}
