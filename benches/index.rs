//! `RevocationIndex::check` with 1,000,000 revoked token ids and 10,000 cutoffs.
//!
//! Run: `cargo bench --bench index`.
#![allow(
    missing_docs,
    reason = "criterion_group! defines a public function without docs"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::core::{CutoffScope, RevocationEvent, RevocationIndex, TokenIdentity, UnixMillis};

const NOW: i64 = 1_800_000_000_000;

/// A 22-character id like tollgate's own (16 random bytes, base64url).
fn jti(i: u64) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes[8..].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn loaded_index() -> RevocationIndex {
    let index = RevocationIndex::with_capacity(1_000_000);
    for i in 0..1_000_000u64 {
        index.apply(&RevocationEvent::Token {
            jti: jti(i),
            expires_at: UnixMillis(NOW + 3_600_000),
        });
    }
    for i in 0..10_000u64 {
        let scope = match i % 3 {
            0 => CutoffScope::Tenant(format!("/T{i}/Sub")),
            1 => CutoffScope::Subject(format!("user-{i}")),
            _ => CutoffScope::Client(format!("client-{i}")),
        };
        index.apply(&RevocationEvent::Cutoff {
            scope,
            issued_before: UnixMillis(NOW - 60_000 + i as i64),
        });
    }
    index
}

fn check(c: &mut Criterion) {
    let index = loaded_index();
    let live_jti = jti(5_000_000);
    let revoked_jti = jti(123_456);
    // Its subject, client and parent tenant all have cutoffs (user-1, client-2, /T3/Sub), each
    // older than the tokens below, so every look-up finds an entry and none rejects.
    let token = |jti: &'static str, issued_at: i64| TokenIdentity {
        jti,
        grant_id: Some("grant-1"),
        tenant: "/T3/Sub/Team",
        subject: "user-1",
        client_id: "client-2",
        issuer: "https://id.example.com",
        session: Some("session-1"),
        issued_at: UnixMillis(issued_at),
    };
    let live_jti: &'static str = Box::leak(live_jti.into_boxed_str());
    let revoked_jti: &'static str = Box::leak(revoked_jti.into_boxed_str());

    let mut group = c.benchmark_group("index_check_1M_ids_10k_cutoffs");
    // The common case: a live token issued after every cutoff.
    let recent = token(live_jti, NOW);
    assert!(index.check(&recent).is_ok());
    group.bench_function("live_recent_token", |b| {
        b.iter(|| index.check(black_box(&recent)))
    });
    // The worst case: a live token older than the latest cutoff of any scope, so every scope is
    // looked up (subject, client, and four tenant levels) and each finds an entry.
    let old = token(live_jti, NOW - 55_000);
    assert!(index.check(&old).is_ok());
    group.bench_function("live_old_token_all_scopes", |b| {
        b.iter(|| index.check(black_box(&old)))
    });
    let revoked = token(revoked_jti, NOW);
    assert!(index.check(&revoked).is_err());
    group.bench_function("revoked_token", |b| {
        b.iter(|| index.check(black_box(&revoked)))
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
