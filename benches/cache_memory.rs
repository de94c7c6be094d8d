//! Heap bytes per entry of the verified-token cache, counted by a counting allocator: the token
//! string the entry is keyed by, the shared claims, and the cache's own table. This is what
//! `cache_verified_tokens = N` costs at most (a full cache), and the figure behind the gateway's
//! default.
//!
//! Run: `cargo bench --bench cache_memory`.

use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::core::{KeySet, RevocationIndex, SigningAlgorithm, jws};
use tollgate::layer::Verifier;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "orders-api";

/// `count` distinct tokens with the claims `extra` adds to tollgate's own.
fn tokens(keys: &KeySet, count: usize, extra: &Value) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = keys.signing_key().unwrap();
    (0..count)
        .map(|i| {
            let mut claims = json!({
                "iss": ISSUER, "sub": format!("user-{i}"), "aud": AUDIENCE,
                "exp": now + 3600, "iat": now, "iat_ms": now * 1000,
                "jti": format!("{i:022}"), "client_id": "web",
                "scope": "orders:read profile", "tenant": "/Org/Sub", "roles": ["user"],
            });
            if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
                claims.extend(extra.clone());
            }
            jws::encode(&key, jws::ACCESS_TOKEN_TYP, &claims).unwrap()
        })
        .collect()
}

fn measure(label: &str, capacity: usize, extra: Value) {
    let keys = KeySet::generate(SigningAlgorithm::HS256, "k1").unwrap();
    let tokens = tokens(&keys, capacity, &extra);
    let length = tokens.iter().map(String::len).sum::<usize>() / tokens.len();
    let region = Region::new(GLOBAL);
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys)
        .revocation_index(Arc::new(RevocationIndex::new()))
        .cache_verified_tokens(capacity)
        .build()
        .unwrap();
    let empty = region.change();
    for token in &tokens {
        drop(verifier.verify(token).unwrap());
    }
    let full = region.change();
    let live = |s: stats_alloc::Stats| {
        s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
    };
    let entries = live(full) - live(empty);
    println!(
        "{label}: {capacity} entries of {length}-byte tokens: {:.1} MiB full ({:.0} bytes per \
         entry), {:.1} MiB for the empty cache and verifier",
        live(full) as f64 / (1024.0 * 1024.0),
        entries as f64 / capacity as f64,
        live(empty) as f64 / (1024.0 * 1024.0),
    );
    drop(verifier);
}

fn main() {
    // Criterion-style filters are passed to every bench binary; this one has a single run.
    measure("tollgate token", 100_000, json!({}));
    // An identity provider's token carries more: names, e-mail, groups, session, ACR.
    measure(
        "Keycloak-sized token",
        100_000,
        json!({
            "sid": "5f0c3f5e-2a64-4d8c-9a3b-0c6e7d0b9f41", "azp": "web", "acr": "1",
            "name": "Alice Example", "preferred_username": "alice", "given_name": "Alice",
            "family_name": "Example", "email": "alice@example.com", "email_verified": true,
            "realm_access": {"roles": ["offline_access", "uma_authorization", "default-roles"]},
            "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
            "allowed-origins": ["https://app.example.com"],
        }),
    );
}
