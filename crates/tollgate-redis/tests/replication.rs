//! Relay and follower against a real `redis-server` (started by each test on a free port):
//! convergence (issuer and session cutoffs included), Redis lost and restarted empty, a follower
//! partitioned while the stream is trimmed past it, duplicates, entries a follower cannot read
//! (a newer producer's, garbage), the format versions entries and snapshots are written in,
//! credentials and health.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use tollgate_core::RevocationIndex;
use tollgate_layer::{NotReady, Readiness};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::{self, Keys};
use tollgate_redis::{Feed, Follower, HealthPolicy, OnUnreadable, RedisTarget, Relay, publish};
use tollgate_store::{Outbox, OutboxPosition};

const WITHIN: Duration = Duration::from_secs(15);

fn target(url: &str) -> RedisTarget {
    RedisTarget::new(url).unwrap()
}

async fn relay(url: &str, producer: &Producer) -> tollgate_redis::RelayHandle {
    Relay::new(target(url), producer.store())
        .wake_on(producer.wake.clone())
        .start()
        .await
        .expect("relay")
}

#[tokio::test]
async fn a_follower_in_step_with_a_producer() {
    let redis = RedisServer::start();
    let producer = Producer::new();
    let _relay = relay(&redis.url(), &producer).await;
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await, "never synced");
    for i in 0..100 {
        producer.revoke(token(i)).await;
    }
    producer.revoke(cutoff("alice", 1_000)).await;
    producer
        .revoke(tollgate_core::RevocationEvent::Grant {
            grant_id: "family".into(),
            expires_at: LATER,
        })
        .await;
    // Cutoffs of one issuer, and of a session: the store keeps them apart from everyone's, the
    // relay publishes them (as version 2), the follower applies them.
    producer
        .revoke(issuer_cutoff("https://a.example", "alice", 2_000))
        .await;
    producer
        .revoke(issuer_cutoff("https://b.example", "alice", 3_000))
        .await;
    producer.revoke(session_cutoff("sid-1", 4_000)).await;
    converge(&producer.index, &index, WITHIN).await;
    let status = feed.status();
    assert!(status.synced && status.connected);
    assert_eq!(status.applied, 105);
    assert!(status.lag.is_some());
    assert!(status.since_contact.unwrap() < Duration::from_secs(5));
}

#[tokio::test]
async fn what_was_committed_before_the_relay_started_is_published() {
    let redis = RedisServer::start();
    let producer = Producer::new();
    // Committed while no relay ran (Redis down, process dead): the outbox holds it.
    for i in 0..50 {
        producer.revoke(token(i)).await;
    }
    assert_eq!(producer.store.outbox_status().await.unwrap().pending, 50);
    let relay = relay(&redis.url(), &producer).await;
    let index = Arc::new(RevocationIndex::new());
    let _feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    converge(&producer.index, &index, WITHIN).await;
    eventually!(
        "the outbox marked published",
        producer.store.outbox_status().await.unwrap().pending == 0
    );
    assert_eq!(relay.status().backlog, 0);
    assert!(relay.status().healthy);
}

#[tokio::test]
async fn redis_lost_mid_burst_the_relay_republishes_and_followers_reload() {
    let mut redis = RedisServer::start();
    let producer = Producer::new();
    let _relay = relay(&redis.url(), &producer).await;
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .write_snapshots(200)
        .start()
        .await
        .unwrap();
    let other = Arc::new(RevocationIndex::new());
    let _other = Follower::new(target(&redis.url()), other.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await);
    for i in 0..1000 {
        producer.revoke(token(i)).await;
        if i == 400 {
            // Killed and restarted empty, in the middle of the burst.
            redis.restart();
        }
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    producer.revoke(cutoff("bob", 77)).await;
    converge(&producer.index, &index, WITHIN).await;
    converge(&producer.index, &other, WITHIN).await;
    // A follower that starts now, on the new Redis, gets everything too.
    let late = Arc::new(RevocationIndex::new());
    let _late = Follower::new(target(&redis.url()), late.clone())
        .start()
        .await
        .unwrap();
    converge(&producer.index, &late, WITHIN).await;
}

#[tokio::test]
async fn a_follower_partitioned_while_the_stream_is_trimmed_past_it_reloads_the_snapshot() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port()).await;
    let producer = Producer::new();
    let _relay = relay(&redis.url(), &producer).await;
    // The token service's follower writes snapshots (and so trims the stream).
    let writer_index = Arc::new(RevocationIndex::new());
    let writer = Follower::new(target(&redis.url()), writer_index.clone())
        .write_snapshots(1000)
        .start()
        .await
        .unwrap();
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&proxy.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await);
    producer.revoke(token(0)).await;
    converge(&producer.index, &index, WITHIN).await;

    proxy.partition();
    for i in 1..=10_000 {
        producer.revoke(token(i)).await;
    }
    converge(&producer.index, &writer_index, WITHIN).await;
    eventually!(
        "five snapshots written",
        writer.status().snapshots_written >= 5
    );
    let mut conn = support::redis(&redis.url()).await;
    let length = stream_len(&mut conn).await;
    assert!(
        length < 10_000,
        "the stream was not trimmed ({length} entries)"
    );

    let loads = feed.status().snapshot_loads;
    proxy.heal();
    converge(&producer.index, &index, WITHIN).await;
    assert!(
        feed.status().snapshot_loads > loads,
        "converged without reloading the snapshot: the trim went unnoticed"
    );
}

#[tokio::test]
async fn duplicated_and_reordered_entries_converge() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let events = vec![
        cutoff("alice", 500),
        token(1),
        cutoff("alice", 900),
        token(2),
        cutoff("alice", 700),
    ];
    // Out of order (an older cutoff after a newer one) and every event twice.
    let mut stream = events.clone();
    stream.extend(events.iter().rev().cloned());
    publish(&mut conn, &keys, &stream).await.unwrap();
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await);
    let expected = RevocationIndex::new();
    for e in &events {
        expected.apply(e);
    }
    converge(&expected, &index, WITHIN).await;
    assert!(
        state(&index).iter().any(|e| e.contains("900")),
        "the latest cutoff wins"
    );
}

#[tokio::test]
async fn killed_between_publishing_and_marking_duplicates_are_harmless() {
    let redis = RedisServer::start();
    let producer = Producer::new();
    for i in 0..20 {
        producer.revoke(token(i)).await;
    }
    // A relay that published the batch and died before marking it: the entries are in the
    // stream, the outbox still says nothing was published.
    let mut conn = support::redis(&redis.url()).await;
    let pending = producer.store.outbox_read(0, 100).await.unwrap();
    let events: Vec<_> = pending.iter().map(|e| e.event.clone()).collect();
    publish(&mut conn, &Keys::default(), &events).await.unwrap();
    assert_eq!(producer.store.outbox_status().await.unwrap().pending, 20);
    // The next relay publishes them again.
    let _relay = relay(&redis.url(), &producer).await;
    let index = Arc::new(RevocationIndex::new());
    let _feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    converge(&producer.index, &index, WITHIN).await;
    eventually!(
        "every entry published twice",
        stream_len(&mut conn).await == 40
    );
    assert_eq!(state(&index), state(&producer.index));
}

/// Entries no tollgate writes, or a newer one: a follower stops at the first by default, and
/// skips them all (counted) under `skip`.
#[tokio::test]
async fn garbage_stops_a_follower_by_default_and_is_skipped_under_skip() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let good = format!("1763805600123 {}", wire::encode(&token(1)).unwrap());
    let entries: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("1", b"1763805600123 T 12")],
        vec![("3", good.as_bytes())],
        vec![("1", b"\xff\xfe not utf-8")],
        vec![("garbage", b"yes")],
        vec![("1", b"1763805600123 C 5 tenant not-a-path")],
        vec![("1", b"soon T 1 jti")],
        vec![("1", good.as_bytes()), ("1", good.as_bytes())],
        vec![("1", good.as_bytes())],
    ];
    let mut ids = Vec::new();
    for fields in &entries {
        ids.push(xadd(&mut conn, &keys, fields).await);
    }

    // The default: stopped at the first, which it names; nothing after it applied.
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert_stopped_at(&feed, &ids[0]).await;
    assert_eq!(index.stats().tokens, 0, "applied what follows the entry");
    assert_eq!(feed.status().applied, 0);
    feed.stop();

    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .on_unreadable(OnUnreadable::Skip)
        .start()
        .await
        .unwrap();
    assert!(
        feed.wait_synced(WITHIN).await,
        "garbage stalled the first sync under skip"
    );
    let expected = RevocationIndex::new();
    expected.apply(&token(1));
    converge(&expected, &index, WITHIN).await;
    let status = feed.status();
    assert_eq!(status.skipped, 7, "{status:?}");
    assert_eq!(status.applied, 1);
    assert_eq!(status.refused, None);
    assert_eq!(feed.health(HealthPolicy::default()).check(), Ok(()));
    // And it keeps following after them.
    publish(&mut conn, &keys, &[token(2)]).await.unwrap();
    expected.apply(&token(2));
    converge(&expected, &index, WITHIN).await;
}

/// Asserts that `feed` stopped at the entry `id` and stays there (not synced, not ready under
/// the default policy, the entry and the way on in its status) for longer than its retries.
async fn assert_stopped_at(feed: &Feed, id: &str) {
    eventually!("stopped at an entry", feed.status().refused.is_some());
    let before = feed.status();
    // It reads the entry again every second, and stays where it is.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = feed.status();
    let why = status.refused.clone().unwrap_or_default();
    assert!(
        why.starts_with(&format!("cannot read stream entry {id} (")),
        "{why}"
    );
    assert!(
        why.ends_with(
            "written by a newer tollgate or not by tollgate: upgrade this follower, or set \
             on_unreadable = skip"
        ),
        "{why}"
    );
    assert!(!status.synced, "{status:?}");
    assert_eq!(status.last_id, before.last_id, "moved past the entry");
    assert_eq!(status.applied, before.applied, "applied past the entry");
    assert_eq!(status.skipped, 0, "{status:?}");
    assert_eq!(
        feed.health(HealthPolicy::default()).check(),
        Err(NotReady::Inconsistent)
    );
    assert_eq!(
        feed.health(HealthPolicy {
            require_sync: false,
            max_silence: Some(Duration::from_secs(30)),
        })
        .check(),
        Err(NotReady::Inconsistent)
    );
}

/// What a follower of this version does with an entry of a newer one (the previous release
/// meets version 2 entries the same way): a future format version, or a kind of event it does
/// not know in a version it reads. It is not ready, says which entry, applies what came before
/// it and nothing after it; under `skip` it goes on.
#[tokio::test]
async fn an_older_follower_meeting_a_newer_entry_stops_there_or_skips_it_as_told() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let futures: [(&str, &str, &[u8]); 2] = [
        (
            "future-version",
            "3",
            b"1763805600123 T 4000000000000 jti-9",
        ),
        (
            "future-kind",
            "1",
            b"1763805600123 X 4000000000000 whatever it is",
        ),
    ];
    for (prefix, field, value) in futures {
        let keys = Keys::new(prefix);
        publish(&mut conn, &keys, &[token(1), session_cutoff("sid-1", 5)])
            .await
            .unwrap();
        let newer = xadd(&mut conn, &keys, &[(field, value)]).await;
        publish(&mut conn, &keys, &[token(2)]).await.unwrap();

        let index = Arc::new(RevocationIndex::new());
        let feed = Follower::new(target(&redis.url()), index.clone())
            .keys(keys.clone())
            .start()
            .await
            .unwrap();
        assert_stopped_at(&feed, &newer).await;
        let before = RevocationIndex::new();
        before.apply(&token(1));
        before.apply(&session_cutoff("sid-1", 5));
        assert_eq!(
            state(&index),
            state(&before),
            "{prefix}: what came before it"
        );
        assert!(
            !index.is_token_revoked("jti-2"),
            "{prefix}: applied past it"
        );
        assert_eq!(feed.status().applied, 2, "{prefix}");
        feed.stop();

        let index = Arc::new(RevocationIndex::new());
        let feed = Follower::new(target(&redis.url()), index.clone())
            .keys(keys.clone())
            .on_unreadable(OnUnreadable::Skip)
            .start()
            .await
            .unwrap();
        assert!(
            feed.wait_synced(WITHIN).await,
            "{prefix}: {:?}",
            feed.status()
        );
        before.apply(&token(2));
        converge(&before, &index, WITHIN).await;
        let status = feed.status();
        assert_eq!(
            (status.applied, status.skipped),
            (3, 1),
            "{prefix}: {status:?}"
        );
        feed.stop();
    }
}

/// An event format 1 can carry is written as version 1, whoever publishes it (the relay, or
/// `publish`), so that followers of the previous release keep reading it during an upgrade;
/// only issuer and session cutoffs are version 2. A snapshot is version 2 once it holds one,
/// and a follower that starts from it has them.
#[tokio::test]
async fn entries_and_snapshots_name_the_lowest_version_that_carries_them() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let producer = Producer::new();
    let _relay = relay(&redis.url(), &producer).await;
    let writer_index = Arc::new(RevocationIndex::new());
    let writer = Follower::new(target(&redis.url()), writer_index.clone())
        .write_snapshots(1)
        .start()
        .await
        .unwrap();
    assert!(writer.wait_synced(WITHIN).await);
    producer.revoke(token(1)).await;
    producer.revoke(cutoff("alice", 10)).await;
    converge(&producer.index, &writer_index, WITHIN).await;
    let version = || async {
        let mut conn = support::redis(&redis.url()).await;
        redis::cmd("HGET")
            .arg(&keys.snapshot)
            .arg("v")
            .query_async::<Option<String>>(&mut conn)
            .await
            .unwrap()
    };
    eventually!(
        "a snapshot of version 1 lines",
        version().await.as_deref() == Some("1")
    );

    producer
        .revoke(issuer_cutoff("https://id.example.com", "alice", 20))
        .await;
    publish(&mut conn, &keys, &[session_cutoff("sid-1", 30), token(2)])
        .await
        .unwrap();
    producer.index.apply(&session_cutoff("sid-1", 30));
    producer.index.apply(&token(2));
    converge(&producer.index, &writer_index, WITHIN).await;
    eventually!(
        "a snapshot holding version 2 lines",
        version().await.as_deref() == Some("2")
    );

    let late = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), late.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await, "{:?}", feed.status());
    converge(&producer.index, &late, WITHIN).await;
    assert!(feed.status().snapshot_loads >= 1);
}

/// Each entry is named for the version its own line needs.
#[tokio::test]
async fn a_version_1_line_keeps_the_field_name_1() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let events = [
        token(1),
        cutoff("alice", 5),
        session_cutoff("sid-1", 5),
        issuer_cutoff("https://id.example.com", "alice", 5),
        tollgate_core::RevocationEvent::Grant {
            grant_id: "family".into(),
            expires_at: LATER,
        },
    ];
    publish(&mut conn, &keys, &events).await.unwrap();
    assert_eq!(
        field_names(&mut conn, &keys).await,
        ["1", "1", "2", "2", "1"]
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_at_start() {
    let redis = RedisServer::start_with_password("right-password");
    let url = format!("redis://:wrong-password@127.0.0.1:{}/", redis.port());
    let index = Arc::new(RevocationIndex::new());
    let error = Follower::new(target(&url), index)
        .start()
        .await
        .expect_err("started with a wrong password");
    assert!(error.is_refused());
    let message = error.to_string();
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(!message.contains("wrong-password"), "{message}");
    let producer = Producer::new();
    let error = Relay::new(target(&url), producer.store())
        .start()
        .await
        .expect_err("relay started with a wrong password");
    assert!(error.is_refused(), "{error}");
    // The right one works.
    let feed = Follower::new(target(&redis.url()), Arc::new(RevocationIndex::new()))
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await);
}

#[tokio::test]
async fn health_refuses_until_the_first_sync_and_once_stale() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port()).await;
    proxy.partition();
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&proxy.url()), index)
        .block(Duration::from_millis(100))
        .start()
        .await
        .expect("Redis out of reach is retried, not an error");
    let strict = feed.health(HealthPolicy {
        require_sync: true,
        max_silence: Some(Duration::from_millis(800)),
    });
    let lenient = feed.health(HealthPolicy::always_serve());
    assert_eq!(strict.check(), Err(NotReady::NotSynced));
    assert_eq!(lenient.check(), Ok(()));

    proxy.heal();
    assert!(feed.wait_synced(WITHIN).await);
    assert_eq!(strict.check(), Ok(()));

    proxy.partition();
    eventually!("stale", strict.check() == Err(NotReady::Stale));
    assert_eq!(lenient.check(), Ok(()), "always_serve never refuses");
    assert!(!feed.status().connected);

    proxy.heal();
    eventually!("ready again", strict.check().is_ok());
}

#[tokio::test]
async fn a_relay_resumes_from_its_mark_and_keeps_it_per_epoch() {
    let redis = RedisServer::start();
    let producer = Producer::new();
    producer.revoke(token(1)).await;
    let relay1 = relay(&redis.url(), &producer).await;
    // Published, and the position recorded (the relay records it once idle).
    eventually!(
        "published and marked",
        relay1.status().published >= 1
            && producer.store.outbox_status().await.unwrap().pending == 0
    );
    relay1.stop();
    let OutboxPosition {
        epoch,
        published_through,
    } = producer.store.outbox_status().await.unwrap().position;
    assert!(!epoch.is_empty() && published_through > 0);
    producer.revoke(token(2)).await;
    let relay2 = relay(&redis.url(), &producer).await;
    eventually!(
        "the outbox marked published",
        producer.store.outbox_status().await.unwrap().pending == 0
    );
    assert_eq!(
        relay2.status().published,
        1,
        "only what was new was published again"
    );
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let redis = RedisServer::start_tls();
    let untrusted = Follower::new(target(&redis.url()), Arc::new(RevocationIndex::new()))
        .block(Duration::from_millis(100))
        .start()
        .await
        .expect("an unverifiable certificate is retried, like any connection failure");
    assert!(
        !untrusted.wait_synced(Duration::from_millis(500)).await,
        "synced with a server whose certificate nobody vouched for"
    );
    untrusted.stop();
    let trusted = target(&redis.url()).with_ca_pem(redis.ca_pem()).unwrap();
    let producer = Producer::new();
    let _relay = Relay::new(trusted.clone(), producer.store())
        .wake_on(producer.wake.clone())
        .start()
        .await
        .unwrap();
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(trusted, index.clone()).start().await.unwrap();
    assert!(feed.wait_synced(WITHIN).await);
    producer.revoke(token(7)).await;
    converge(&producer.index, &index, WITHIN).await;
    assert!(
        target("redis://127.0.0.1:1/")
            .with_ca_pem(redis.ca_pem())
            .is_err(),
        "a CA for a plain-text URL is a mistake worth saying"
    );
}

/// An outbox whose publisher lease the test hands out and takes back, as replicas sharing one
/// database do.
#[derive(Debug)]
struct Leased {
    store: Arc<tollgate_store::MemoryStore>,
    held: std::sync::atomic::AtomicBool,
}

impl Outbox for Leased {
    fn outbox_status(&self) -> tollgate_store::StoreFuture<'_, tollgate_store::OutboxStatus> {
        self.store.outbox_status()
    }
    fn outbox_read(
        &self,
        after: u64,
        limit: usize,
    ) -> tollgate_store::StoreFuture<'_, Vec<tollgate_store::OutboxEntry>> {
        self.store.outbox_read(after, limit)
    }
    fn outbox_mark(&self, position: OutboxPosition) -> tollgate_store::StoreFuture<'_, ()> {
        self.store.outbox_mark(position)
    }
    fn publisher_lease(&self) -> tollgate_store::StoreFuture<'_, bool> {
        let held = self.held.load(std::sync::atomic::Ordering::Relaxed);
        Box::pin(std::future::ready(Ok(held)))
    }
}

#[tokio::test]
async fn without_the_lease_a_relay_stands_by_and_resumes_from_the_store_when_it_takes_it() {
    use std::sync::atomic::Ordering::Relaxed;
    let redis = RedisServer::start();
    let producer = Producer::new();
    let leased = Arc::new(Leased {
        store: producer.store.clone(),
        held: true.into(),
    });
    let relay = Relay::new(target(&redis.url()), leased.clone())
        .wake_on(producer.wake.clone())
        .start()
        .await
        .expect("relay");
    producer.revoke(token(1)).await;
    eventually!(
        "published and marked",
        relay.status().published == 1 && producer.store.outbox_status().await.unwrap().pending == 0
    );
    assert!(!relay.status().standby);

    // Another replica takes the lease and publishes token 2 (here: only its mark is recorded).
    leased.held.store(false, Relaxed);
    eventually!("standing by", relay.status().standby);
    producer.revoke(token(2)).await;
    let position = producer.store.outbox_status().await.unwrap().position;
    let entries = producer
        .store
        .outbox_read(position.published_through, 10)
        .await
        .unwrap();
    producer
        .store
        .outbox_mark(OutboxPosition {
            epoch: position.epoch,
            published_through: entries[0].seq,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(relay.status().published, 1, "published without the lease");
    assert!(relay.status().healthy, "standing by is healthy");

    // The lease comes back: the relay resumes from the recorded position, not from its own.
    leased.held.store(true, Relaxed);
    eventually!("publishing again", !relay.status().standby);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        relay.status().published,
        1,
        "what the other holder published was published again"
    );
    producer.revoke(token(3)).await;
    eventually!("token 3 published", relay.status().published == 2);
}
