//! `/connect/userinfo`, the discovery documents and the JWKS.
//!
//! Part of the contract suite: every row of the behaviour reference, checked over a real socket
//! with a real store (see `support/mod.rs`).

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use support::*;
use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm, SigningKey};

#[tokio::test]
async fn userinfo_describes_the_token_subject_and_refuses_missing_or_revoked_tokens() {
    let server = Server::start().await;
    let login = server.login("oidc", "alice", &[]).await;
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
        assert_eq!(info["email"], "alice@example.com");
        assert_eq!(info["client_id"], "oidc");
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
    assert_empty_ok(&server.revoke("oidc", &login.access, None).await);
    let reply = server.get(USERINFO).bearer(&login.access).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").contains("revoked"));
    assert_no_store(&reply);
}

#[tokio::test]
async fn userinfo_requires_openid_and_the_services_audience_and_releases_claims_by_scope() {
    let server = Server::start().await;
    // No `openid` scope: 403 insufficient_scope.
    let no_openid = server.login("web", "alice", &[]).await;
    let reply = server.get(USERINFO).bearer(&no_openid.access).send().await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"insufficient_scope\""),
        "{:?}",
        reply.headers
    );
    assert_no_store(&reply);
    // A token of this issuer for another audience is not for userinfo.
    let elsewhere = server.login("other-api", "alice", &[]).await;
    let reply = server.get(USERINFO).bearer(&elsewhere.access).send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    // Signed with the issuer's key but with an empty audience: refused too.
    for aud in [json!(""), json!([])] {
        let forged = server.sign_claims(json!({"aud": aud, "scope": "openid profile"}));
        let reply = server.get(USERINFO).bearer(&forged).send().await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "aud {aud}");
    }
    // Claims by scope: `openid` alone gives the subject, never the profile or the email.
    let bare = server.login("oidc", "alice", &[("scope", "openid")]).await;
    let info = server
        .get(USERINFO)
        .bearer(&bare.access)
        .send()
        .await
        .json();
    assert_eq!(info["sub"], "u-alice");
    assert!(
        info.get("name").is_none() && info.get("preferred_username").is_none(),
        "{info}"
    );
    assert!(info.get("email").is_none(), "{info}");
    let email_only = server
        .login("oidc", "alice", &[("scope", "openid email")])
        .await;
    let info = server
        .get(USERINFO)
        .bearer(&email_only.access)
        .send()
        .await
        .json();
    assert_eq!(info["email"], "alice@example.com");
    assert!(info.get("name").is_none(), "{info}");
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
                json!([
                    "client_secret_basic",
                    "client_secret_post",
                    "tls_client_auth",
                    "self_signed_tls_client_auth"
                ]),
                "{field}"
            );
        }
        assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
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
