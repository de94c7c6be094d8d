//! Relay and follower against a real `redis-server` (started by each test on a free port):
//! convergence, Redis lost and restarted empty, a follower partitioned while the stream is
//! trimmed past it, duplicates, garbage, credentials and health.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use tollgate_core::RevocationIndex;
use tollgate_layer::{NotReady, Readiness};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::{self, Keys};
use tollgate_redis::{Follower, HealthPolicy, RedisTarget, Relay, publish};
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
    converge(&producer.index, &index, WITHIN).await;
    let status = feed.status();
    assert!(status.synced && status.connected);
    assert_eq!(status.applied, 102);
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

#[tokio::test]
async fn garbage_truncated_and_future_entries_are_skipped_never_a_stall() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let good = format!("1763805600123 {}", wire::encode(&token(1)).unwrap());
    let entries: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("1", b"1763805600123 T 12")],
        vec![("2", good.as_bytes())],
        vec![("1", b"\xff\xfe not utf-8")],
        vec![("garbage", b"yes")],
        vec![("1", b"1763805600123 C 5 tenant not-a-path")],
        vec![("1", b"soon T 1 jti")],
        vec![("1", good.as_bytes()), ("1", good.as_bytes())],
        vec![("1", good.as_bytes())],
    ];
    for fields in &entries {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&keys.stream).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query_async::<String>(&mut conn).await.unwrap();
    }
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert!(
        feed.wait_synced(WITHIN).await,
        "garbage stalled the first sync"
    );
    let expected = RevocationIndex::new();
    expected.apply(&token(1));
    converge(&expected, &index, WITHIN).await;
    let status = feed.status();
    assert_eq!(status.skipped, 7, "{status:?}");
    assert_eq!(status.applied, 1);
    // And it keeps following after them.
    publish(&mut conn, &keys, &[token(2)]).await.unwrap();
    expected.apply(&token(2));
    converge(&expected, &index, WITHIN).await;
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
