//! What someone with write access to Redis can do to followers (against a real `redis-server`
//! started by each test on a free port): a planted snapshot that claims more of the stream than
//! the stream holds, a stream cut below a snapshot, an unreadable snapshot. Followers refuse
//! them, stay not ready with the reason in their status, and recover when a producer writes a
//! consistent snapshot again. And the ACL users of `docs/replication.md`: followers work
//! read-only, producers with their own few commands.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use tollgate_core::RevocationIndex;
use tollgate_layer::{NotReady, Readiness};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::{self, Keys};
use tollgate_redis::{Feed, Follower, HealthPolicy, RedisTarget, Relay, publish};

const WITHIN: Duration = Duration::from_secs(15);
/// Long enough for a follower to have loaded several times (it retries every second).
const SETTLE: Duration = Duration::from_millis(2500);

fn target(url: &str) -> RedisTarget {
    RedisTarget::new(url).unwrap()
}

/// A hash field as written: its name and its bytes.
type Field<'a> = (&'a str, &'a [u8]);

/// Writes the snapshot hash as an attacker (or a foreign producer) would: any fields.
async fn plant(conn: &mut redis::aio::MultiplexedConnection, fields: &[Field<'_>]) {
    let keys = Keys::default();
    let mut cmd = redis::cmd("HSET");
    cmd.arg(&keys.snapshot);
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async::<()>(conn).await.expect("HSET");
}

/// Asserts that `feed` refuses (not synced, not ready under the default policy, not even when
/// only silence is bounded) for a reason containing `reason`.
async fn assert_refused(feed: &Feed, reason: &str) {
    eventually!("refused", feed.status().refused.is_some());
    tokio::time::sleep(SETTLE).await;
    let status = feed.status();
    let why = status.refused.clone().unwrap_or_default();
    assert!(why.contains(reason), "refused for {why:?}, not {reason:?}");
    assert!(!status.synced, "{status:?}");
    let health = feed.health(HealthPolicy::default());
    assert_eq!(health.check(), Err(NotReady::Inconsistent));
    let silence_only = feed.health(HealthPolicy {
        require_sync: false,
        max_silence: Some(Duration::from_secs(30)),
    });
    assert_eq!(silence_only.check(), Err(NotReady::Inconsistent));
    assert_eq!(
        feed.health(HealthPolicy::always_serve()).check(),
        Ok(()),
        "always_serve is the operator's choice to serve whatever happens"
    );
    assert_eq!(
        NotReady::Inconsistent.to_string(),
        "revocation state source is inconsistent"
    );
}

/// Finding 6 of issue 20: revocations published, then a snapshot planted with an id far ahead
/// of the stream and a state without them, the stream deleted, the epoch kept. A follower
/// started then must not trust it; a running snapshot writer repairs it, and the follower
/// recovers.
#[tokio::test]
async fn a_snapshot_ahead_of_a_deleted_stream_is_refused_until_a_producer_rewrites_it() {
    let redis = RedisServer::start();
    let producer = Producer::new();
    let _relay = Relay::new(target(&redis.url()), producer.store())
        .wake_on(producer.wake.clone())
        .start()
        .await
        .unwrap();
    // The token service's own follower, which writes snapshots.
    let writer_index = Arc::new(RevocationIndex::new());
    let writer = Follower::new(target(&redis.url()), writer_index.clone())
        .write_snapshots(5)
        .start()
        .await
        .unwrap();
    assert!(writer.wait_synced(WITHIN).await);
    for i in 1..=3 {
        producer.revoke(token(i)).await;
    }
    converge(&producer.index, &writer_index, WITHIN).await;

    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let epoch: String = redis::cmd("GET")
        .arg(&keys.epoch)
        .query_async(&mut conn)
        .await
        .unwrap();
    let innocent = wire::encode(&token(1000)).unwrap();
    plant(
        &mut conn,
        &[
            ("v", b"1"),
            ("id", b"99999999999999-0"),
            ("at", b"1"),
            ("events", innocent.as_bytes()),
        ],
    )
    .await;
    redis::cmd("DEL")
        .arg(&keys.stream)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let still: String = redis::cmd("GET")
        .arg(&keys.epoch)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, epoch, "the attack keeps the epoch");

    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert_refused(&feed, "but the stream does not exist").await;
    assert!(
        !index.is_token_revoked("jti-1000"),
        "a refused snapshot is not applied"
    );

    // The stream comes back (a producer publishes), still far behind the planted id.
    publish(&mut conn, &keys, &[token(4)]).await.unwrap();
    producer.index.apply(&token(4));
    tokio::time::sleep(SETTLE).await;
    let why = feed.status().refused.unwrap_or_default();
    assert!(why.contains("beyond the last id"), "{why}");
    assert_eq!(
        feed.health(HealthPolicy::default()).check(),
        Err(NotReady::Inconsistent)
    );
    assert!(!index.is_token_revoked("jti-1"));

    // The running writer keeps following; its next snapshot replaces the planted one, which no
    // longer blocks it, and the new follower loads that.
    for i in 5..=10 {
        producer.revoke(token(i)).await;
    }
    converge(&producer.index, &writer_index, WITHIN).await;
    eventually!(
        "a consistent snapshot written over the planted one",
        writer.status().snapshots_written >= 2
    );
    converge(&producer.index, &index, WITHIN).await;
    assert!(index.is_token_revoked("jti-1"));
    eventually!("synced", feed.is_synced());
    assert_eq!(feed.status().refused, None);
    assert_eq!(feed.health(HealthPolicy::default()).check(), Ok(()));
}

/// The same planted snapshot with the stream left in place: it claims ids the stream never
/// generated.
#[tokio::test]
async fn a_snapshot_ahead_of_the_stream_is_refused() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    publish(&mut conn, &keys, &[token(1), token(2)])
        .await
        .unwrap();
    plant(
        &mut conn,
        &[("v", b"1"), ("id", b"99999999999999-0"), ("events", b"")],
    )
    .await;
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&redis.url()), index.clone())
        .start()
        .await
        .unwrap();
    assert_refused(&feed, "beyond the last id the stream ever generated").await;
    assert!(!index.is_token_revoked("jti-1"));
}

/// The stream trimmed (or entries deleted) above what the snapshot covers, or with no snapshot
/// at all: entries are gone that no snapshot holds.
#[tokio::test]
async fn a_stream_cut_above_its_snapshot_is_refused() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let ids = publish(&mut conn, &keys, &[token(1), token(2), token(3)])
        .await
        .unwrap();
    redis::cmd("XTRIM")
        .arg(&keys.stream)
        .arg("MINID")
        .arg(ids[2].to_string())
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let feed = Follower::new(target(&redis.url()), Arc::new(RevocationIndex::new()))
        .start()
        .await
        .unwrap();
    assert_refused(
        &feed,
        "stream entries were removed, but there is no snapshot",
    )
    .await;
    feed.stop();

    // A snapshot that covers only the first entry: the second was trimmed without it.
    let line = wire::encode(&token(1)).unwrap();
    plant(
        &mut conn,
        &[
            ("v", b"1"),
            ("id", ids[0].to_string().as_bytes()),
            ("events", line.as_bytes()),
        ],
    )
    .await;
    let feed = Follower::new(target(&redis.url()), Arc::new(RevocationIndex::new()))
        .start()
        .await
        .unwrap();
    assert_refused(&feed, "removed beyond what the snapshot covers").await;
}

/// A snapshot that cannot be read: another format version, a malformed id, bytes that are not
/// events. (A follower used to fall back to reading the stream from its start, which misses
/// whatever was trimmed below the snapshot.)
#[tokio::test]
async fn an_unreadable_snapshot_is_refused_with_its_reason() {
    let redis = RedisServer::start();
    let mut conn = support::redis(&redis.url()).await;
    let keys = Keys::default();
    let ids = publish(&mut conn, &keys, &[token(1)]).await.unwrap();
    let id = ids[0].to_string();
    let valid = wire::encode(&token(1)).unwrap();
    let garbage_and_valid = format!("{valid}\n\u{1}\u{2} not an event\nT 12");
    let cases: [(&[Field<'_>], &str); 4] = [
        (
            &[("v", b"9"), ("id", id.as_bytes()), ("events", b"whatever")],
            "not in a format version this follower reads (1 or 2)",
        ),
        (
            &[("v", b"1"), ("id", b"soon"), ("events", valid.as_bytes())],
            "`id` field is missing or malformed",
        ),
        (
            &[
                ("v", b"1"),
                ("id", id.as_bytes()),
                ("events", b"\xff\xfe\x00garbage"),
            ],
            "1 line(s) of the snapshot are not events",
        ),
        (
            &[
                ("v", b"1"),
                ("id", id.as_bytes()),
                ("events", garbage_and_valid.as_bytes()),
            ],
            "2 line(s) of the snapshot are not events",
        ),
    ];
    for (fields, reason) in cases {
        redis::cmd("DEL")
            .arg(&keys.snapshot)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        plant(&mut conn, fields).await;
        let feed = Follower::new(target(&redis.url()), Arc::new(RevocationIndex::new()))
            .start()
            .await
            .unwrap();
        assert_refused(&feed, reason).await;
        feed.stop();
    }
    // A consistent snapshot again: followers recover without a restart.
    let feed = Follower::new(target(&redis.url()), Arc::new(RevocationIndex::new()))
        .start()
        .await
        .unwrap();
    assert_refused(&feed, "are not events").await;
    plant(&mut conn, &[("events", valid.as_bytes())]).await;
    assert!(feed.wait_synced(WITHIN).await, "{:?}", feed.status());
    assert_eq!(feed.status().refused, None);
}

/// The ACL users of `docs/replication.md`, on a private server: each role works with its
/// commands, and a follower's credentials cannot write.
#[tokio::test]
async fn acl_users_per_role_followers_read_only() {
    let redis = RedisServer::start();
    let mut admin = support::redis(&redis.url()).await;
    // The rules of docs/replication.md ("Trust model"); `snapshotter` is `tollgate serve`'s
    // (its relay and its snapshot-writing follower), tested here one role at a time.
    let users: [&str; 4] = [
        "follower on >follower-secret resetkeys %R~{tollgate}:* resetchannels -@all \
         +ping +multi +exec +get +hgetall +hmget +exists +xinfo|stream +xread",
        "revoker on >revoker-secret resetkeys %RW~{tollgate}:epoch %W~{tollgate}:revocations \
         resetchannels -@all +ping +set +get +xadd",
        "relay on >relay-secret resetkeys %RW~{tollgate}:epoch %W~{tollgate}:revocations \
         resetchannels -@all +ping +set +get +xadd",
        "snapshotter on >snapshotter-secret resetkeys ~{tollgate}:* resetchannels -@all \
         +ping +multi +exec +get +hgetall +hmget +exists +xinfo|stream +xread \
         +set +xadd +evalsha +script|load +hget +hset +xtrim",
    ];
    for user in users {
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user.split_whitespace().collect::<Vec<_>>())
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
    }
    let url = |user: &str| format!("redis://{user}:{user}-secret@127.0.0.1:{}/", redis.port());
    let keys = Keys::default();

    // A follower with the read-only user, started on an empty Redis (it creates nothing).
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target(&url("follower")), index.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(WITHIN).await, "{:?}", feed.status());

    // The relay and `tollgate revoke`'s publish, each with its user.
    let producer = Producer::new();
    let relay = Relay::new(target(&url("relay")), producer.store())
        .wake_on(producer.wake.clone())
        .start()
        .await
        .unwrap();
    for i in 0..20 {
        producer.revoke(token(i)).await;
    }
    let mut revoker = support::redis(&url("revoker")).await;
    publish(&mut revoker, &keys, &[cutoff("mallory", 5)])
        .await
        .expect("publish with the revoker user");
    producer.index.apply(&cutoff("mallory", 5));
    converge(&producer.index, &index, WITHIN).await;
    assert!(relay.status().healthy, "{:?}", relay.status());

    // The token service's follower writes snapshots (and trims) with its user; a follower that
    // starts after the trim loads the snapshot, still read-only.
    let writer_index = Arc::new(RevocationIndex::new());
    let writer = Follower::new(target(&url("snapshotter")), writer_index.clone())
        .write_snapshots(10)
        .start()
        .await
        .unwrap();
    for i in 20..40 {
        producer.revoke(token(i)).await;
    }
    converge(&producer.index, &writer_index, WITHIN).await;
    eventually!("a snapshot written", writer.status().snapshots_written >= 1);
    let late = Arc::new(RevocationIndex::new());
    let late_feed = Follower::new(target(&url("follower")), late.clone())
        .start()
        .await
        .unwrap();
    converge(&producer.index, &late, WITHIN).await;
    assert_eq!(late_feed.status().snapshot_loads, 1);
    assert_eq!(late_feed.status().refused, None);

    // The follower's credentials cannot write anything.
    let mut follower = support::redis(&url("follower")).await;
    let refused = |e: redis::RedisError| e.code() == Some("NOPERM");
    let xadd = publish(&mut follower, &keys, &[token(99)]).await;
    assert!(
        matches!(&xadd, Err(tollgate_redis::PublishError::Redis(e)) if refused(e.clone())),
        "{xadd:?}"
    );
    for (command, args) in [
        ("XADD", vec![keys.stream.as_str(), "*", "1", "1 T 2 jti"]),
        ("SET", vec![keys.epoch.as_str(), "other"]),
        ("HSET", vec![keys.snapshot.as_str(), "id", "0-0"]),
        ("DEL", vec![keys.stream.as_str()]),
        ("XTRIM", vec![keys.stream.as_str(), "MAXLEN", "0"]),
    ] {
        let result = redis::cmd(command)
            .arg(args)
            .query_async::<redis::Value>(&mut follower)
            .await;
        assert!(
            result.as_ref().is_err_and(|e| refused(e.clone())),
            "the follower user ran {command}: {result:?}"
        );
    }
    // Nor can the relay's touch the snapshot, or delete.
    let mut relay_conn = support::redis(&url("relay")).await;
    for (command, args) in [
        ("HSET", vec![keys.snapshot.as_str(), "id", "0-0"]),
        ("DEL", vec![keys.stream.as_str()]),
        ("XTRIM", vec![keys.stream.as_str(), "MAXLEN", "0"]),
    ] {
        let result = redis::cmd(command)
            .arg(args)
            .query_async::<redis::Value>(&mut relay_conn)
            .await;
        assert!(
            result.as_ref().is_err_and(|e| refused(e.clone())),
            "the relay user ran {command}: {result:?}"
        );
    }
}
