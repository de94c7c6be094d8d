//! The follower's side of replication, against a private `redis-server`:
//!
//! 1. apply rate: 1,000,000 token revocations read from the stream and applied (events/s);
//! 2. snapshot load: a new follower starting from a snapshot of 1,000,000 revoked tokens;
//! 3. the snapshot's size in Redis for 1,000,000 revoked 22-character ids, and for 10,000
//!    (1% of 1,000,000 live tokens revoked).
//!
//! Run: `cargo bench -p tollgate-redis --bench feed` (release build; about a minute).

use base64::Engine;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::Keys;
use tollgate_redis::{Feed, Follower, RedisTarget, publish};

const MILLION: usize = 1_000_000;

/// A tollgate-shaped jti: 16 bytes, base64url, 22 characters.
fn jti(i: usize) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    bytes[8..].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn revocations(count: usize) -> Vec<RevocationEvent> {
    // One hour ahead: live, as a real token's revocation would be.
    let expires_at =
        UnixMillis::from(std::time::SystemTime::now()).saturating_add(Duration::from_secs(3600));
    (0..count)
        .map(|i| RevocationEvent::Token {
            jti: jti(i),
            expires_at,
        })
        .collect()
}

async fn fill(url: &str, keys: &Keys, events: &[RevocationEvent]) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for chunk in events.chunks(10_000) {
        publish(&mut conn, keys, chunk).await.unwrap();
    }
}

async fn wait(feed: &Feed, until: impl Fn(&Feed) -> bool) {
    while !until(feed) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn size(url: &str, keys: &Keys) -> (u64, u64) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let payload: u64 = redis::cmd("HSTRLEN")
        .arg(&keys.snapshot)
        .arg("events")
        .query_async(&mut conn)
        .await
        .unwrap();
    let memory: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&keys.snapshot)
        .query_async(&mut conn)
        .await
        .unwrap();
    (payload, memory)
}

#[tokio::main]
async fn main() {
    let redis = RedisServer::start();
    let url = redis.url();
    let target = RedisTarget::new(&url).unwrap();
    let keys = Keys::new("bench");
    let events = revocations(MILLION);
    fill(&url, &keys, &events).await;

    // The ceiling: the same stream read with plain XREADs, nothing decoded or applied.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let started = Instant::now();
    let (mut last, mut read) = ("0-0".to_owned(), 0usize);
    loop {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(4096)
            .arg("STREAMS")
            .arg(&keys.stream)
            .arg(&last)
            .query_async(&mut conn)
            .await
            .unwrap();
        let Some(ids) = reply.keys.into_iter().next().map(|k| k.ids) else {
            break;
        };
        if ids.is_empty() {
            break;
        }
        read += ids.len();
        last = ids.last().map(|e| e.id.clone()).unwrap_or_default();
    }
    let raw = started.elapsed();
    println!(
        "raw XREAD, for comparison: {read} entries in {:.2} s = {:.0} entries/s",
        raw.as_secs_f64(),
        read as f64 / raw.as_secs_f64()
    );

    // 1. Apply rate: a follower that reads the whole stream (and writes one snapshot at the end).
    let index = Arc::new(RevocationIndex::with_capacity(MILLION));
    let started = Instant::now();
    let feed = Follower::new(target.clone(), index.clone())
        .keys(keys.clone())
        .write_snapshots(MILLION as u64)
        .start()
        .await
        .unwrap();
    wait(&feed, |f| f.status().applied >= MILLION as u64).await;
    let applied_in = started.elapsed();
    println!(
        "apply: {MILLION} stream entries in {:.2} s = {:.0} events/s",
        applied_in.as_secs_f64(),
        MILLION as f64 / applied_in.as_secs_f64()
    );
    wait(&feed, |f| f.status().snapshots_written >= 1).await;
    feed.stop();

    // 2. Snapshot load: a new follower, on a snapshot of a million revoked tokens.
    let fresh = Arc::new(RevocationIndex::with_capacity(MILLION));
    let started = Instant::now();
    let feed = Follower::new(target.clone(), fresh.clone())
        .keys(keys.clone())
        .start()
        .await
        .unwrap();
    wait(&feed, Feed::is_synced).await;
    let loaded_in = started.elapsed();
    assert_eq!(
        fresh.stats().tokens,
        MILLION,
        "the snapshot did not hold every id"
    );
    println!(
        "snapshot load: {MILLION} revoked tokens, synced in {:.0} ms (snapshot loads: {})",
        loaded_in.as_secs_f64() * 1000.0,
        feed.status().snapshot_loads
    );
    feed.stop();

    // 3. Sizes.
    let (payload, memory) = size(&url, &keys).await;
    println!(
        "snapshot size, {MILLION} revoked 22-char ids: {:.1} MB payload, {:.1} MB in Redis \
         (MEMORY USAGE), {:.1} bytes per id",
        payload as f64 / 1e6,
        memory as f64 / 1e6,
        payload as f64 / MILLION as f64
    );
    let small = Keys::new("bench-1pct");
    fill(&url, &small, &events[..MILLION / 100]).await;
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target, index)
        .keys(small.clone())
        .write_snapshots((MILLION / 100) as u64)
        .start()
        .await
        .unwrap();
    wait(&feed, |f| f.status().snapshots_written >= 1).await;
    let (payload, memory) = size(&url, &small).await;
    println!(
        "snapshot size, 1% of {MILLION} live tokens revoked ({} ids): {:.1} KB payload, {:.1} KB \
         in Redis (Token Status List draft: 13.7 KB for the same)",
        MILLION / 100,
        payload as f64 / 1e3,
        memory as f64 / 1e3
    );
}
