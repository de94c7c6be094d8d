//! A Layer trusting several issuers, each with its own keys served by its own JWKS endpoint on a
//! local socket: every token is judged by the issuer its `iss` names, with that issuer's keys,
//! audiences and algorithms only; an issuer's cutoff leaves the other issuers' tokens alone; an
//! unknown `kid` refetches the token's issuer's JWKS and no other.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate_core::{
    CutoffScope, KeySet, RevocationEvent, RevocationIndex, SigningAlgorithm, SigningKey,
    UnixMillis, VerifyingKey, jws,
};
use tollgate_layer::{Issuer, RemoteJwks, ValidateBearerLayer, VerifiedClaims, Verifier};
use tower::{ServiceBuilder, ServiceExt};

const ISSUER_A: &str = "https://a.id.test";
const ISSUER_B: &str = "https://b.id.test";
const AUDIENCE: &str = "orders-api";

/// Generous bound for anything that should happen "soon"; only reached when a test fails.
const SOON: Duration = Duration::from_secs(5);

/// One issuer's JWKS endpoint on 127.0.0.1: serves its key set's public keys as they are now,
/// and counts the requests.
struct JwksEndpoint {
    uri: http::Uri,
    published: Arc<Mutex<KeySet>>,
    requests: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl JwksEndpoint {
    async fn start(keys: &KeySet) -> JwksEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/jwks.json", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let published = Arc::new(Mutex::new(keys.clone()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (keys, count) = (published.clone(), requests.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (keys, count) = (keys.clone(), count.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let jwks = keys.lock().unwrap().to_jwks();
                        let body = Bytes::from(serde_json::to_vec(&jwks).unwrap());
                        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksEndpoint {
            uri,
            published,
            requests,
            server,
        }
    }

    /// A fetcher of this endpoint that may refetch at once (the tests count refetches, they do
    /// not wait out the rate limit), once its first fetch has installed the keys.
    async fn remote(&self) -> RemoteJwks {
        let remote = RemoteJwks::builder(self.uri.clone())
            .min_refetch_interval(Duration::ZERO)
            .build()
            .unwrap();
        let filled = async {
            while remote.keys().kids().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(SOON, filled)
            .await
            .expect("the first fetch");
        remote
    }

    /// From now on the endpoint publishes `keys`.
    fn publish(&self, keys: &KeySet) {
        *self.published.lock().unwrap() = keys.clone();
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Claims of a token of `iss` for `alice`, issued now.
fn claims(iss: &str) -> Value {
    let now = now_ms();
    json!({
        "iss": iss,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": now / 1000 + 300,
        "iat": now / 1000,
        "iat_ms": now,
        "jti": format!("jti-{iss}-{now}"),
        "client_id": "web",
    })
}

fn mint(key: &SigningKey, claims: &Value) -> String {
    jws::encode(key, jws::ACCESS_TOKEN_TYP, claims).unwrap()
}

fn signing(keys: &KeySet) -> Arc<SigningKey> {
    keys.signing_key().unwrap()
}

/// The Layer's answer to `token`: `Ok(subject)` when accepted, else the `error_description`.
async fn judge(verifier: &Verifier, token: &str) -> Result<String, String> {
    let request = Request::builder()
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap();
    let response = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(verifier.clone()))
        .service_fn(|request: Request<()>| async move {
            let claims = request.extensions().get::<VerifiedClaims>().unwrap();
            Ok::<_, Infallible>(Response::new(format!("{}@{}", claims.sub, claims.iss)))
        })
        .oneshot(request)
        .await
        .unwrap();
    if response.status() == StatusCode::OK {
        return Ok(response.into_body());
    }
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let description = challenge
        .split("error_description=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    Err(description.to_owned())
}

fn verifier_of(issuers: impl IntoIterator<Item = Issuer>) -> (Verifier, Arc<RevocationIndex>) {
    let index = Arc::new(RevocationIndex::new());
    let mut builder = Verifier::builder().revocation_index(index.clone());
    for issuer in issuers {
        builder = builder.add_issuer(issuer);
    }
    (builder.build().unwrap(), index)
}

/// Two issuers whose keys both carry the kid `k1`.
fn two_key_sets() -> (KeySet, KeySet) {
    (
        KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap(),
        KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap(),
    )
}

#[tokio::test]
async fn each_issuer_is_judged_by_its_own_jwks() {
    let (a_keys, b_keys) = two_key_sets();
    let (a, b) = (
        JwksEndpoint::start(&a_keys).await,
        JwksEndpoint::start(&b_keys).await,
    );
    let (verifier, _) = verifier_of([
        Issuer::new(ISSUER_A)
            .audience(AUDIENCE)
            .remote_jwks(a.remote().await),
        Issuer::new(ISSUER_B)
            .audience(AUDIENCE)
            .remote_jwks(b.remote().await),
    ]);

    let from_a = mint(&signing(&a_keys), &claims(ISSUER_A));
    let from_b = mint(&signing(&b_keys), &claims(ISSUER_B));
    assert_eq!(
        judge(&verifier, &from_a).await,
        Ok(format!("alice@{ISSUER_A}"))
    );
    assert_eq!(
        judge(&verifier, &from_b).await,
        Ok(format!("alice@{ISSUER_B}"))
    );

    // Same kid at both issuers: A's key signing a token that claims B is checked with B's `k1`.
    let forged = mint(&signing(&a_keys), &claims(ISSUER_B));
    assert_eq!(
        judge(&verifier, &forged).await,
        Err("invalid signature".into())
    );

    // A third issuer, even signing with a key both others publish under that kid: refused by
    // its `iss` before any signature work (a garbage signature says so).
    let third = mint(&signing(&a_keys), &claims("https://c.id.test"));
    assert_eq!(judge(&verifier, &third).await, Err("wrong issuer".into()));
    let unsigned_third = format!("{}.AAAA", third.rsplit_once('.').unwrap().0);
    assert_eq!(
        judge(&verifier, &unsigned_third).await,
        Err("wrong issuer".into())
    );
    let mut anonymous = claims(ISSUER_A);
    anonymous.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        judge(&verifier, &mint(&signing(&a_keys), &anonymous)).await,
        Err("wrong issuer".into()),
        "no issuer names none of them"
    );

    let (keys, remote) = verifier.issuer_keys(ISSUER_B).unwrap();
    assert!(remote.is_some());
    assert_eq!(keys.to_jwks(), b_keys.to_jwks());
    assert!(verifier.issuer_keys("https://c.id.test").is_none());
}

#[tokio::test]
async fn an_issuer_cutoff_leaves_the_same_subject_at_another_issuer_alone() {
    let (a_keys, b_keys) = two_key_sets();
    let (verifier, index) = verifier_of([
        Issuer::new(ISSUER_A)
            .audience(AUDIENCE)
            .keys(a_keys.clone()),
        Issuer::new(ISSUER_B)
            .audience(AUDIENCE)
            .keys(b_keys.clone()),
    ]);
    let from_a = mint(&signing(&a_keys), &claims(ISSUER_A));
    let from_b = mint(&signing(&b_keys), &claims(ISSUER_B));
    index.apply(&RevocationEvent::IssuerCutoff {
        issuer: ISSUER_B.into(),
        scope: CutoffScope::Subject("alice".into()),
        issued_before: UnixMillis(now_ms() + 1_000),
    });
    assert_eq!(
        judge(&verifier, &from_b).await,
        Err("token revoked (issued before a revocation cutoff)".into())
    );
    assert_eq!(
        judge(&verifier, &from_a).await,
        Ok(format!("alice@{ISSUER_A}")),
        "alice at A is another person"
    );
}

#[tokio::test]
async fn audiences_algorithms_and_token_types_are_each_issuers_own() {
    let a_keys = KeySet::generate(SigningAlgorithm::EdDSA, "a1").unwrap();
    let b_keys = KeySet::generate(SigningAlgorithm::ES256, "b1").unwrap();
    let b_eddsa = SigningKey::generate(SigningAlgorithm::EdDSA, "b2").unwrap();
    b_keys
        .add_verifying_key(
            VerifyingKey::from_jwk(b_eddsa.verifying_key().to_jwk().unwrap()).unwrap(),
        )
        .unwrap();
    let (verifier, _) = verifier_of([
        Issuer::new(ISSUER_A)
            .audience(AUDIENCE)
            .algorithms([SigningAlgorithm::EdDSA])
            .keys(a_keys.clone()),
        Issuer::new(ISSUER_B)
            .audience("partner-api")
            .algorithms([SigningAlgorithm::ES256])
            .require_at_jwt(false)
            .keys(b_keys.clone()),
    ]);
    let b_claims = |aud: &str| {
        let mut c = claims(ISSUER_B);
        c["aud"] = json!(aud);
        c
    };

    assert!(
        judge(
            &verifier,
            &mint(&signing(&b_keys), &b_claims("partner-api"))
        )
        .await
        .is_ok()
    );
    assert_eq!(
        judge(&verifier, &mint(&signing(&b_keys), &claims(ISSUER_B))).await,
        Err("wrong audience".into()),
        "A's audience is not B's"
    );
    assert_eq!(
        judge(&verifier, &mint(&b_eddsa, &b_claims("partner-api"))).await,
        Err("signing algorithm not allowed".into()),
        "EdDSA is A's algorithm, not B's"
    );
    let plain_jwt = |key: &SigningKey, claims: &Value| jws::encode(key, "JWT", claims).unwrap();
    assert!(
        judge(
            &verifier,
            &plain_jwt(&signing(&b_keys), &b_claims("partner-api"))
        )
        .await
        .is_ok(),
        "B does not require at+jwt"
    );
    assert_eq!(
        judge(&verifier, &plain_jwt(&signing(&a_keys), &claims(ISSUER_A))).await,
        Err("token type must be at+jwt".into()),
        "A does"
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_tokens_issuer_only() {
    let (a_keys, b_keys) = two_key_sets();
    let (a, b) = (
        JwksEndpoint::start(&a_keys).await,
        JwksEndpoint::start(&b_keys).await,
    );
    let (verifier, _) = verifier_of([
        Issuer::new(ISSUER_A)
            .audience(AUDIENCE)
            .remote_jwks(a.remote().await),
        Issuer::new(ISSUER_B)
            .audience(AUDIENCE)
            .remote_jwks(b.remote().await),
    ]);
    let (a_before, b_before) = (a.requests(), b.requests());

    // B rotates to `k2`: B's first token signed with it makes the Layer refetch B's JWKS.
    let rotated = KeySet::generate(SigningAlgorithm::EdDSA, "k2").unwrap();
    b.publish(&rotated);
    let token = mint(&signing(&rotated), &claims(ISSUER_B));
    assert_eq!(
        judge(&verifier, &token).await,
        Ok(format!("alice@{ISSUER_B}"))
    );
    assert_eq!(b.requests(), b_before + 1, "B's JWKS refetched");
    assert_eq!(a.requests(), a_before, "A's JWKS not asked");

    // `k2` is B's, not A's: a token claiming A with it refetches A's JWKS, finds no k2 there.
    let claiming_a = mint(&signing(&rotated), &claims(ISSUER_A));
    assert_eq!(
        judge(&verifier, &claiming_a).await,
        Err("unknown signing key".into())
    );
    assert_eq!(a.requests(), a_before + 1, "A's JWKS refetched");
    assert_eq!(b.requests(), b_before + 1, "B's JWKS not asked again");
}

#[tokio::test]
async fn the_cache_forgets_when_any_issuers_keys_change() {
    let (a_keys, b_keys) = two_key_sets();
    let index = Arc::new(RevocationIndex::new());
    let verifier = Verifier::builder()
        .issuer(ISSUER_A)
        .audience(AUDIENCE)
        .keys(a_keys.clone())
        .add_issuer(
            Issuer::new(ISSUER_B)
                .audience(AUDIENCE)
                .keys(b_keys.clone()),
        )
        .cache_verified_tokens(100)
        .revocation_index(index)
        .build()
        .unwrap();
    let from_b = mint(&signing(&b_keys), &claims(ISSUER_B));
    for _ in 0..2 {
        assert!(judge(&verifier, &from_b).await.is_ok());
    }
    // The second issuer's key goes: its cached token must go with it.
    assert!(b_keys.remove("k1"));
    assert_eq!(
        judge(&verifier, &from_b).await,
        Err("unknown signing key".into())
    );
    assert_eq!(
        verifier.keys().to_jwks(),
        a_keys.to_jwks(),
        "keys(): the first issuer's"
    );
}
