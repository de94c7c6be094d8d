//! Heap bytes per live access token in the issuer (what batch counts walk), counted by a counting
//! allocator: every byte the live set allocates, bucket, chunk and growth slack included, for
//! several issuance rates, id kinds and sizes; then the batch count and the purge over them.
//!
//! "before" is the representation this replaced (a `DashMap` keyed by the id's text, interned
//! names), rebuilt here as it was so that both are measured in the same run.
//!
//! Run: `cargo bench -p tollgate-issuer --features test-util --bench live_memory`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use compact_str::CompactString;
use dashmap::DashMap;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tollgate_core::{CutoffScope, RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_issuer::LiveTokensBench;
use tollgate_issuer::store::AccessTokenRecord;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Issue instant of the first token (2026-01-01) and the access-token lifetime.
const START: i64 = 1_767_225_600_000;
const LIFETIME: i64 = 3_600_000;

type Hasher = foldhash::fast::RandomState;

/// Interned names: number by name, name by number.
type Symbols = (HashMap<Arc<str>, u32, Hasher>, Vec<Arc<str>>);

/// The live set as it was before (main @ 0b808bb): interned names, text ids.
#[derive(Default)]
struct Before {
    access: DashMap<CompactString, BeforeEntry, Hasher>,
    symbols: RwLock<Symbols>,
}

#[allow(dead_code)] // Only its size matters.
struct BeforeEntry {
    grant: Option<CompactString>,
    tenant: u32,
    subject: u32,
    client: u32,
    issued_at: i64,
    expires_at: i64,
}

impl Before {
    fn intern(&self, name: &str) -> u32 {
        if let Some(&id) = self.symbols.read().expect("not poisoned").0.get(name) {
            return id;
        }
        let mut symbols = self.symbols.write().expect("not poisoned");
        let id = symbols.1.len() as u32;
        let name: Arc<str> = name.into();
        symbols.1.push(name.clone());
        symbols.0.insert(name, id);
        id
    }

    fn insert(&self, r: &AccessTokenRecord) {
        let entry = BeforeEntry {
            grant: r.grant_id.as_deref().map(CompactString::from),
            tenant: self.intern(&r.tenant),
            subject: self.intern(&r.subject),
            client: self.intern(&r.client_id),
            issued_at: r.issued_at.0,
            expires_at: r.expires_at.0,
        };
        self.access.insert(CompactString::from(&r.jti), entry);
    }
}

/// How the tokens of a run look.
#[derive(Clone, Copy)]
struct Shape {
    /// Tokens issued per second (all with the same lifetime): tokens per expiry second.
    rate: usize,
    /// Every token has a grant (refresh-token families).
    grants: bool,
    /// Ids are 36-character UUIDs rather than tollgate ids.
    foreign: bool,
    /// Distinct subjects the tokens cycle through.
    subjects: usize,
}

const TOLLGATE: Shape = Shape {
    rate: 15_000,
    grants: false,
    foreign: false,
    subjects: 1,
};

/// The `i`th token of a run (ids derived from `i`, random-looking, as `random::id` makes them).
fn fill(record: &mut AccessTokenRecord, shape: Shape, i: usize) {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    bytes[8..].copy_from_slice(&(i as u64).to_le_bytes());
    record.jti.clear();
    if shape.foreign {
        record.jti = format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i as u64);
    } else {
        URL_SAFE_NO_PAD.encode_string(bytes, &mut record.jti);
    }
    if shape.grants {
        let grant = record.grant_id.get_or_insert_with(String::new);
        grant.clear();
        bytes[0] ^= 0xff;
        URL_SAFE_NO_PAD.encode_string(bytes, grant);
    }
    if shape.subjects > 1 {
        record.subject.clear();
        record
            .subject
            .push_str(&format!("user-{:07}", i % shape.subjects));
    }
    let issued_at = START + (i / shape.rate) as i64 * 1000 + (i % 1000) as i64;
    record.issued_at = UnixMillis(issued_at);
    // `exp` is whole seconds, as `Claims` makes it.
    record.expires_at = UnixMillis((issued_at + LIFETIME) / 1000 * 1000);
}

fn template() -> AccessTokenRecord {
    AccessTokenRecord {
        jti: String::with_capacity(40),
        grant_id: None,
        tenant: "/Acme".into(),
        subject: "service-account".into(),
        client_id: "svc".into(),
        issued_at: UnixMillis(0),
        expires_at: UnixMillis(0),
    }
}

/// Net heap bytes `build` leaves allocated.
///
/// stats_alloc adds a `realloc`'s growth to `bytes_allocated` (a shrink to `bytes_deallocated`)
/// *and* to `bytes_reallocated`, so the net is allocated minus deallocated: adding
/// `bytes_reallocated` too would count every growth in place twice.
fn heap<T>(build: impl FnOnce() -> T) -> (T, isize) {
    let region = Region::new(GLOBAL);
    let built = build();
    let s = region.change();
    (
        built,
        s.bytes_allocated as isize - s.bytes_deallocated as isize,
    )
}

/// Builds `count` live tokens of `shape`, printing bytes per token and ns per insert.
fn after(label: &str, count: usize, shape: Shape) -> LiveTokensBench {
    let mut record = template();
    let started = Instant::now();
    let (live, bytes) = heap(|| {
        let live = LiveTokensBench::default();
        for i in 0..count {
            fill(&mut record, shape, i);
            live.insert(&record);
        }
        live
    });
    let per_insert = started.elapsed().as_nanos() as f64 / count as f64;
    println!(
        "after   {label:<44} {count:>10} tokens: {:>7.1} MiB, {:>6.1} B/token, {per_insert:>5.0} ns/insert",
        bytes as f64 / 1048576.0,
        bytes as f64 / count as f64
    );
    live
}

fn before(label: &str, count: usize, shape: Shape) {
    let mut record = template();
    let started = Instant::now();
    let (live, bytes) = heap(|| {
        let live = Before::default();
        for i in 0..count {
            fill(&mut record, shape, i);
            live.insert(&record);
        }
        live
    });
    let per_insert = started.elapsed().as_nanos() as f64 / count as f64;
    println!(
        "before  {label:<44} {count:>10} tokens: {:>7.1} MiB, {:>6.1} B/token, {per_insert:>5.0} ns/insert",
        bytes as f64 / 1048576.0,
        bytes as f64 / count as f64
    );
    drop(live);
}

/// The batch count over `live`: a first cut (nothing revoked yet), then the same cut repeated
/// once the index enforces it (every token already refused), as the admin API runs them.
fn batch(live: &LiveTokensBench) {
    let index = RevocationIndex::new();
    let scope = CutoffScope::Client("svc".into());
    let before = UnixMillis(START + 100 * LIFETIME);
    let now = UnixMillis(START);
    let started = Instant::now();
    let first = live.count_cut_off("https://bench", &scope, before, now, &index);
    let first_time = started.elapsed();
    index.apply(&RevocationEvent::Cutoff {
        scope: scope.clone(),
        issued_before: before,
    });
    let started = Instant::now();
    let repeat = live.count_cut_off("https://bench", &scope, before, now, &index);
    println!(
        "        batch count over {}: {first} in {:.0} ms; repeated: {repeat} in {:.0} ms",
        live.len(),
        first_time.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// Purges everything, in the ledger's steps, and reports the longest step.
fn purge(live: LiveTokensBench) {
    let len = live.len();
    let started = Instant::now();
    let (removed, steps) = live.purge(UnixMillis(i64::MAX), 65_536);
    println!(
        "        purge of {len}: {removed} in {steps} steps, {:.1} ms in all",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

fn main() {
    const M: usize = 1_000_000;
    let shapes = [
        ("tollgate ids, 15,000 tokens/s", TOLLGATE),
        (
            "tollgate ids, 278 tokens/s (1M per hour)",
            Shape {
                rate: 278,
                ..TOLLGATE
            },
        ),
        (
            "tollgate ids, 10 tokens/s",
            Shape {
                rate: 10,
                ..TOLLGATE
            },
        ),
        (
            "tollgate ids and grants, 15,000/s",
            Shape {
                grants: true,
                ..TOLLGATE
            },
        ),
        (
            "tollgate ids, 100,000 subjects, 15,000/s",
            Shape {
                subjects: 100_000,
                ..TOLLGATE
            },
        ),
        (
            "UUID ids (foreign: worst case), 15,000/s",
            Shape {
                foreign: true,
                ..TOLLGATE
            },
        ),
    ];
    for (label, shape) in shapes {
        before(label, M, shape);
        drop(after(label, M, shape));
    }
    // Tokens per expiry second just past a chunk's growth steps (the most unused capacity).
    for rate in [9, 17, 577, 1025, 1153, 2049, 9217] {
        let shape = Shape { rate, ..TOLLGATE };
        drop(after(&format!("tollgate ids, {rate} tokens/s"), M, shape));
    }
    let live = after("tollgate ids, 15,000 tokens/s", M, TOLLGATE);
    batch(&live);
    purge(live);
    let live = after(
        "tollgate ids, 2,778 tokens/s (10M per hour)",
        10 * M,
        Shape {
            rate: 2_778,
            ..TOLLGATE
        },
    );
    batch(&live);
    purge(live);
}
