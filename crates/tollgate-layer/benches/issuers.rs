//! What trusting several issuers costs: the Layer accepting a token with one issuer configured,
//! against three issuers and a token of the third (whose `iss` is read before its signature to
//! choose its keys), uncached (EdDSA, HS256) and with the verified-token cache (EdDSA).
//!
//! Run: `cargo bench -p tollgate-layer --bench issuers`. Compare ratios taken in one run.
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
use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm, jws};
use tollgate_layer::{Issuer, ValidateBearerLayer, Verifier, VerifierBuilder};
use tower::{Layer, Service};

const ISSUERS: [&str; 3] = [
    "https://id.example.com",
    "https://login.partner.example/realms/api",
    "https://accounts.third.example",
];
const AUDIENCE: &str = "orders-api";

/// Polls a future that the benchmark knows completes at once (the inner service is ready).
fn complete<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmark future was not immediately ready"),
    }
}

/// A token of `iss` with the claims of `benches/layer.rs`.
fn token(keys: &KeySet, iss: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let claims = json!({
        "iss": iss, "sub": "alice", "aud": AUDIENCE,
        "exp": now / 1000 + 3600, "iat": now / 1000, "iat_ms": now,
        "jti": "Yk3x0c8bQ4SmV1q2n9ZtGA", "client_id": "web",
        "scope": "orders:read profile", "tenant": "/Org/Sub", "roles": ["user"],
        "grant_id": "c2VjcmV0LWdyYW50LWlk",
    });
    jws::encode(&keys.signing_key().unwrap(), jws::ACCESS_TOKEN_TYP, &claims).unwrap()
}

fn issuers_vs_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("issuers");
    for (alg, cache) in [
        (SigningAlgorithm::EdDSA, false),
        (SigningAlgorithm::HS256, false),
        (SigningAlgorithm::EdDSA, true),
    ] {
        // Every issuer has its own key, all under the same kid.
        let keys: Vec<KeySet> = ISSUERS
            .iter()
            .map(|_| KeySet::generate(alg, "k1").unwrap())
            .collect();
        let cached = |builder: VerifierBuilder| match cache {
            true => builder.cache_verified_tokens(10_000),
            false => builder,
        };
        let index = Arc::new(RevocationIndex::new());
        let one = cached(
            Verifier::builder()
                .issuer(ISSUERS[2])
                .audience(AUDIENCE)
                .keys(keys[2].clone())
                .revocation_index(index.clone()),
        );
        let three = ISSUERS.iter().zip(&keys).fold(
            cached(Verifier::builder().revocation_index(index)),
            |builder, (iss, keys)| {
                builder.add_issuer(Issuer::new(*iss).audience(AUDIENCE).keys(keys.clone()))
            },
        );
        let bearer = format!("Bearer {}", token(&keys[2], ISSUERS[2]));
        let request = || {
            Request::builder()
                .uri("/orders")
                .header(http::header::AUTHORIZATION, bearer.as_str())
                .body(())
                .unwrap()
        };
        let inner = tower::service_fn(|req: Request<()>| async move {
            black_box(req.extensions().len());
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let label = format!("{alg}{}", if cache { "_cached" } else { "" });
        for (name, builder) in [("one_issuer", one), ("three_issuers_token_of_third", three)] {
            let mut svc = ValidateBearerLayer::new(builder.build().unwrap()).layer(inner);
            group.bench_function(BenchmarkId::new(name, &label), |b| {
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
        }
    }
    group.finish();
}

criterion_group!(benches, issuers_vs_one);
criterion_main!(benches);
