//! Mutual-TLS client authentication and certificate-bound access tokens (RFC 8705): the
//! client certificate in the request's extensions as the TLS listener puts it there, the service
//! called through `tower::ServiceExt::oneshot`.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::sync::Arc;
use tollgate_core::{ClientCertificate, KeySet, SigningAlgorithm};
use tollgate_issuer::{
    CertificateName, Client, ClientAuthentication, ClientSecret, GrantType, MemoryStore,
    PasswordHash, StaticDirectory, SubjectDn, TokenService, User,
};
use tower::ServiceExt;

const ISSUER: &str = "https://id.example.test";

struct Certificate {
    der: Vec<u8>,
}

impl Certificate {
    fn x5t(&self) -> String {
        ClientCertificate::from_der(self.der.clone()).x5t_s256()
    }
}

/// A CA, and client certificates it issues or that sign themselves.
struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Client CA");
        Pki {
            ca: rcgen::Issuer::new(params, key),
        }
    }

    fn params(cn: &str, sans: &[rcgen::SanType]) -> rcgen::CertificateParams {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "SE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.subject_alt_names = sans.to_vec();
        params
    }

    /// A certificate the CA signed.
    fn issue(&self, cn: &str, sans: &[rcgen::SanType]) -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = Self::params(cn, sans).signed_by(&key, &self.ca).unwrap();
        Certificate {
            der: cert.der().to_vec(),
        }
    }

    /// A self-signed certificate.
    fn self_signed(cn: &str, sans: &[rcgen::SanType]) -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = Self::params(cn, sans).self_signed(&key).unwrap();
        Certificate {
            der: cert.der().to_vec(),
        }
    }
}

fn dns(name: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(name.try_into().unwrap())
}

async fn service(clients: Vec<Client>) -> TokenService {
    let password = PasswordHash::hash(b"alice-password").unwrap();
    let users = [User::new("alice", "u-alice", password)];
    let directory = Arc::new(StaticDirectory::new(clients, users).unwrap());
    TokenService::builder()
        .issuer(ISSUER)
        .keys(KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap())
        .store(Arc::new(MemoryStore::new()))
        .clients(directory.clone())
        .users(directory)
        .build()
        .await
        .unwrap()
}

/// How the listener saw the client's certificate.
#[derive(Clone, Copy)]
enum Presented<'a> {
    None,
    /// Verified against the listener's client CA.
    ByCa(&'a Certificate),
    /// Accepted without a CA (self-signed).
    Possession(&'a Certificate),
}

async fn post(
    service: &TokenService,
    path: &str,
    form: &[(&str, &str)],
    presented: Presented<'_>,
) -> (StatusCode, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let certificate = match presented {
        Presented::None => None,
        Presented::ByCa(c) => Some(ClientCertificate::from_der(c.der.clone()).verified_by_ca()),
        Presented::Possession(c) => Some(ClientCertificate::from_der(c.der.clone())),
    };
    if let Some(certificate) = certificate {
        request.extensions_mut().insert(certificate);
    }
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn cnf_of(access_token: &str) -> Value {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["cnf"].clone()
}

async fn cc(service: &TokenService, id: &str, presented: Presented<'_>) -> (StatusCode, Value) {
    post(
        service,
        "/connect/token",
        &[("grant_type", "client_credentials"), ("client_id", id)],
        presented,
    )
    .await
}

fn assert_invalid_client((status, body): &(StatusCode, Value)) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    // One answer for every failure: nothing says which part was wrong.
    assert_eq!(body["error_description"], "client authentication failed");
}

fn tls_client(id: &str, name: CertificateName) -> Client {
    Client::mutual_tls(id, ClientAuthentication::TlsClientAuth(name))
        .with_grants([
            GrantType::ClientCredentials,
            GrantType::Password,
            GrantType::RefreshToken,
        ])
        .with_scopes(["orders:read"])
}

#[tokio::test]
async fn tls_client_auth_by_subject_dn_and_by_san() {
    let pki = Pki::new();
    let by_dn = pki.issue("billing", &[]);
    let by_san = pki.issue("whatever", &[dns("reports.clients.example")]);
    let stranger = pki.issue("stranger", &[dns("other.clients.example")]);
    let service = service(vec![
        tls_client(
            "billing",
            CertificateName::SubjectDn(
                SubjectDn::parse("CN=billing,O=Example\\, Inc.,C=SE").unwrap(),
            ),
        ),
        tls_client(
            "reports",
            CertificateName::SanDns("Reports.Clients.Example".into()),
        ),
    ])
    .await;

    for (id, cert) in [("billing", &by_dn), ("reports", &by_san)] {
        let (status, body) = cc(&service, id, Presented::ByCa(cert)).await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            cnf_of(token),
            serde_json::json!({ "x5t#S256": cert.x5t() }),
            "{id}"
        );
    }

    // Another certificate of the same CA, no certificate, the right name on a certificate the
    // CA did not vouch for, or the client's own certificate for the other client: all one
    // answer.
    let forged_dn = Pki::self_signed("billing", &[]);
    for (id, presented) in [
        ("billing", Presented::ByCa(&stranger)),
        ("billing", Presented::None),
        ("billing", Presented::Possession(&forged_dn)),
        ("billing", Presented::Possession(&by_dn)),
        ("reports", Presented::ByCa(&by_dn)),
        ("nobody", Presented::ByCa(&by_dn)),
    ] {
        assert_invalid_client(&cc(&service, id, presented).await);
    }
    // A secret does not stand in for the certificate.
    let with_secret = post(
        &service,
        "/connect/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "billing"),
            ("client_secret", "guess"),
        ],
        Presented::ByCa(&by_dn),
    )
    .await;
    assert_invalid_client(&with_secret);
}

#[tokio::test]
async fn tls_client_auth_by_each_san_kind() {
    let pki = Pki::new();
    let cert = pki.issue(
        "svc",
        &[
            rcgen::SanType::URI("spiffe://example/svc".try_into().unwrap()),
            rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()),
            rcgen::SanType::Rfc822Name("svc@clients.example".try_into().unwrap()),
        ],
    );
    let service = service(vec![
        tls_client(
            "uri",
            CertificateName::SanUri("spiffe://example/svc".into()),
        ),
        tls_client("ip", CertificateName::SanIp("10.1.2.3".parse().unwrap())),
        tls_client(
            "email",
            CertificateName::SanEmail("svc@clients.example".into()),
        ),
        tls_client(
            "wrong-uri",
            CertificateName::SanUri("spiffe://example/other".into()),
        ),
        tls_client(
            "wrong-ip",
            CertificateName::SanIp("10.1.2.4".parse().unwrap()),
        ),
    ])
    .await;
    for id in ["uri", "ip", "email"] {
        let (status, body) = cc(&service, id, Presented::ByCa(&cert)).await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
    }
    for id in ["wrong-uri", "wrong-ip"] {
        assert_invalid_client(&cc(&service, id, Presented::ByCa(&cert)).await);
    }
}

#[tokio::test]
async fn self_signed_tls_client_auth_by_thumbprint() {
    let (old, new, other) = (
        Pki::self_signed("edge", &[]),
        Pki::self_signed("edge", &[]),
        Pki::self_signed("edge", &[]),
    );
    let service = service(vec![
        Client::mutual_tls(
            "edge",
            ClientAuthentication::SelfSignedTlsClientAuth(vec![old.x5t(), new.x5t()]),
        )
        .with_grants([GrantType::ClientCredentials])
        .with_scopes(["orders:read"]),
    ])
    .await;
    // Either registered certificate (a rollover), whether or not a CA was involved.
    for cert in [&old, &new] {
        let (status, body) = cc(&service, "edge", Presented::Possession(cert)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(cnf_of(token)["x5t#S256"], cert.x5t());

        // Introspection shows the binding (RFC 8705 §3.2); the client authenticates there
        // with its certificate too.
        let (status, answer) = post(
            &service,
            "/connect/introspect",
            &[("client_id", "edge"), ("token", token)],
            Presented::Possession(cert),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["active"], true);
        assert_eq!(answer["cnf"]["x5t#S256"], cert.x5t());
    }
    assert_invalid_client(&cc(&service, "edge", Presented::Possession(&other)).await);
    assert_invalid_client(&cc(&service, "edge", Presented::None).await);
}

#[tokio::test]
async fn a_secret_client_can_ask_for_bound_tokens() {
    let pki = Pki::new();
    let cert = pki.issue("web", &[]);
    let service = service(vec![
        Client::new("web", ClientSecret::from_plaintext("web-secret"))
            .with_grants([GrantType::Password, GrantType::RefreshToken])
            .with_scopes(["orders:read"])
            .with_certificate_bound_access_tokens(true),
        Client::new("plain", ClientSecret::from_plaintext("plain-secret"))
            .with_grants([GrantType::ClientCredentials])
            .with_scopes(["orders:read"]),
    ])
    .await;
    let login = [
        ("grant_type", "password"),
        ("client_id", "web"),
        ("client_secret", "web-secret"),
        ("username", "alice"),
        ("password", "alice-password"),
    ];
    let (status, body) = post(&service, "/connect/token", &login, Presented::ByCa(&cert)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        cnf_of(body["access_token"].as_str().unwrap())["x5t#S256"],
        cert.x5t()
    );
    // The refreshed access token is bound to the certificate of the refresh request.
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = post(
        &service,
        "/connect/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "web"),
            ("client_secret", "web-secret"),
            ("refresh_token", &refresh),
        ],
        Presented::Possession(&cert),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        cnf_of(body["access_token"].as_str().unwrap())["x5t#S256"],
        cert.x5t()
    );
    // Without a certificate it would get an unbound token: refused instead.
    assert_invalid_client(&post(&service, "/connect/token", &login, Presented::None).await);

    // A client that did not ask for bound tokens gets unbound ones, certificate or not.
    let (status, body) = post(
        &service,
        "/connect/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "plain"),
            ("client_secret", "plain-secret"),
        ],
        Presented::ByCa(&cert),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cnf_of(body["access_token"].as_str().unwrap()), Value::Null);
    // ... and a secret client never authenticates with a certificate alone.
    assert_invalid_client(&cc(&service, "plain", Presented::ByCa(&cert)).await);
}

#[tokio::test]
async fn discovery_advertises_mutual_tls() {
    let service = service(vec![]).await;
    let request = Request::get("/.well-known/oauth-authorization-server")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let metadata: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for method in [
        "tls_client_auth",
        "self_signed_tls_client_auth",
        "client_secret_basic",
    ] {
        assert!(methods.iter().any(|m| m == method), "{method}");
    }
}
