//! Instructions per verification with one issuer against three (a token of the third), counted
//! by callgrind rather than timed, so that a busy machine cannot blur the ratio (see
//! docs/performance.md, "Several issuers"):
//!
//!     cargo build --release -p tollgate-layer --example issuers_count
//!     for w in one three; do for n in 0 2000; do
//!       valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!         target/release/examples/issuers_count $w $n HS256 2>&1 | grep Collected
//!     done; done
//!
//! (instructions with 2000 verifications − with 0) ÷ 2000 is one verification.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm, jws};
use tollgate_layer::{Issuer, Verifier};

const ISSUERS: [&str; 3] = [
    "https://id.example.com",
    "https://login.partner.example/realms/api",
    "https://accounts.third.example",
];
const AUDIENCE: &str = "orders-api";

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(which), Some(n), alg) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: issuers_count one|three <verifications> [EdDSA|ES256|RS256|HS256]");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("a number of verifications");
    let alg: SigningAlgorithm = alg
        .as_deref()
        .unwrap_or("HS256")
        .parse()
        .expect("an algorithm");
    let keys: Vec<KeySet> = ISSUERS
        .iter()
        .map(|_| KeySet::generate(alg, "k1").expect("a key"))
        .collect();
    let index = Arc::new(RevocationIndex::new());
    let verifier = if which == "one" {
        Verifier::builder()
            .issuer(ISSUERS[2])
            .audience(AUDIENCE)
            .keys(keys[2].clone())
            .revocation_index(index)
    } else {
        ISSUERS.iter().zip(&keys).fold(
            Verifier::builder().revocation_index(index),
            |builder, (iss, keys)| {
                builder.add_issuer(Issuer::new(*iss).audience(AUDIENCE).keys(keys.clone()))
            },
        )
    }
    .build()
    .expect("a verifier");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    // The claims of benches/layer.rs and the issuers bench.
    let claims = serde_json::json!({
        "iss": ISSUERS[2], "sub": "alice", "aud": AUDIENCE,
        "exp": now / 1000 + 3600, "iat": now / 1000, "iat_ms": now,
        "jti": "Yk3x0c8bQ4SmV1q2n9ZtGA", "client_id": "web",
        "scope": "orders:read profile", "tenant": "/Org/Sub", "roles": ["user"],
        "grant_id": "c2VjcmV0LWdyYW50LWlk",
    });
    let key = keys[2].signing_key().expect("a signing key");
    let token = jws::encode(&key, jws::ACCESS_TOKEN_TYP, &claims).expect("a token");
    for _ in 0..n {
        std::hint::black_box(
            verifier
                .verify(std::hint::black_box(&token))
                .expect("accepted"),
        );
    }
}
