//! Heap bytes per revoked token id in the `RevocationIndex`, counted by a counting allocator
//! (every byte the index allocates, table slack and shard overhead included).
//!
//! Run: `cargo bench --bench index_memory`.

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use tollgate::core::{RevocationEvent, RevocationIndex, UnixMillis};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn measure(label: &str, count: usize, make_jti: impl Fn(usize) -> String) {
    // Build the ids first so that only the index's own allocations are counted.
    let events: Vec<RevocationEvent> = (0..count)
        .map(|i| RevocationEvent::Token {
            jti: make_jti(i),
            expires_at: UnixMillis(1_800_000_000_000),
        })
        .collect();
    let region = Region::new(GLOBAL);
    let index = RevocationIndex::new();
    for e in &events {
        index.apply(e);
    }
    let stats = region.change();
    let live =
        stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated;
    println!(
        "{label}: {count} ids, {:.1} MiB live, {:.1} bytes per revoked token id",
        live as f64 / (1024.0 * 1024.0),
        live as f64 / count as f64
    );
    drop(index);
}

fn main() {
    use base64::Engine;
    let b64 = |i: usize| {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        bytes[8..].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    // Criterion-style filters are passed to every bench binary; this one has a single run.
    measure("tollgate jti (22 chars)", 1_000_000, b64);
    measure("UUID jti (36 chars)", 1_000_000, |i| {
        format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i as u64)
    });
}
