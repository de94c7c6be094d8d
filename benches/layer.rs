//! The Layer's cost against jsonwebtoken's own decode-and-validate of the same token, the
//! verified-token cache, and the no-token rejection.
//!
//! Run: `cargo bench --bench layer`. Compare ratios taken in one run on one machine.
#![allow(
    missing_docs,
    reason = "criterion_group! defines a public function without docs"
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::core::{Claims, KeySet, RevocationIndex, SigningAlgorithm, jws};
use tollgate::layer::{ValidateBearerLayer, Verifier};
use tower::{Layer, Service};

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "orders-api";

/// Polls a future that the benchmark knows completes at once (the inner service is ready).
fn complete<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmark future was not immediately ready"),
    }
}

fn token(keys: &KeySet) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE,
        "exp": now / 1000 + 3600, "iat": now / 1000, "iat_ms": now,
        "jti": "Yk3x0c8bQ4SmV1q2n9ZtGA", "client_id": "web",
        "scope": "orders:read profile", "tenant": "/Org/Sub", "roles": ["user"],
        "grant_id": "c2VjcmV0LWdyYW50LWlk",
    });
    jws::encode(&keys.signing_key().unwrap(), jws::ACCESS_TOKEN_TYP, &claims).unwrap()
}

fn jsonwebtoken_key(
    keys: &KeySet,
    alg: SigningAlgorithm,
    secret: Option<&[u8]>,
) -> jsonwebtoken::DecodingKey {
    match alg {
        SigningAlgorithm::HS256 => jsonwebtoken::DecodingKey::from_secret(secret.unwrap()),
        _ => jsonwebtoken::DecodingKey::from_jwk(&keys.to_jwks().keys[0]).unwrap(),
    }
}

fn layer_vs_jsonwebtoken(c: &mut Criterion) {
    let mut group = c.benchmark_group("accept");
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::HS256] {
        let keys = KeySet::generate(alg, "k1").unwrap();
        let secret = keys.signing_key().unwrap().to_der().to_vec();
        let token = token(&keys);
        let index = Arc::new(RevocationIndex::new());
        let verifier = |cache: bool| {
            let b = Verifier::builder()
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .keys(keys.clone())
                .revocation_index(index.clone());
            let b = if cache {
                b.cache_verified_tokens(10_000)
            } else {
                b
            };
            b.build().unwrap()
        };
        let inner = tower::service_fn(|req: Request<()>| async move {
            black_box(req.extensions().len());
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let bearer = format!("Bearer {token}");
        let request = || {
            Request::builder()
                .uri("/orders")
                .header(http::header::AUTHORIZATION, bearer.as_str())
                .body(())
                .unwrap()
        };

        let key = jsonwebtoken_key(&keys, alg, Some(&secret));
        let mut validation = jsonwebtoken::Validation::new(match alg {
            SigningAlgorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            _ => jsonwebtoken::Algorithm::EdDSA,
        });
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_ok());

        // The baseline: jsonwebtoken alone, decoding into the same claims type, on a prebuilt
        // request (so building the request is in neither side).
        group.bench_function(BenchmarkId::new("jsonwebtoken_decode", alg), |b| {
            b.iter_batched(
                request,
                |req| {
                    let value = req.headers().get(http::header::AUTHORIZATION).unwrap();
                    let t = &value.to_str().unwrap()[7..];
                    jsonwebtoken::decode::<Claims>(black_box(t), &key, &validation).unwrap()
                },
                criterion::BatchSize::SmallInput,
            )
        });

        let mut svc = ValidateBearerLayer::new(verifier(false)).layer(inner);
        group.bench_function(BenchmarkId::new("layer", alg), |b| {
            b.iter_batched(
                request,
                |req| {
                    let res = complete(svc.call(black_box(req))).unwrap();
                    assert_eq!(res.status(), 200);
                    res
                },
                criterion::BatchSize::SmallInput,
            )
        });

        let mut cached = ValidateBearerLayer::new(verifier(true)).layer(inner);
        group.bench_function(BenchmarkId::new("layer_cached", alg), |b| {
            b.iter_batched(
                request,
                |req| {
                    let res = complete(cached.call(black_box(req))).unwrap();
                    assert_eq!(res.status(), 200);
                    res
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn reject_without_token(c: &mut Criterion) {
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys)
        .revocation_index(Arc::new(RevocationIndex::new()))
        .build()
        .unwrap();
    let inner = tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut svc = ValidateBearerLayer::new(verifier).layer(inner);
    c.bench_function("reject/no_token", |b| {
        b.iter_batched(
            || Request::builder().uri("/orders").body(()).unwrap(),
            |req| {
                let res = complete(svc.call(black_box(req))).unwrap();
                assert_eq!(res.status(), 401);
                res
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, layer_vs_jsonwebtoken, reject_without_token);
criterion_main!(benches);
