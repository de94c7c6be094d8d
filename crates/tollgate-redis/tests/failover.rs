//! Failovers of a highly available Redis, with real servers: a Sentinel set (a primary, two
//! replicas lagging behind a delaying proxy, three Sentinels) and a Cluster (three masters, three
//! replicas). The primary dies during about 1,000 revocations a second, with a tail of writes its
//! replicas never received; afterwards every revocation a producer counted as published (the
//! relay's outbox, `publish_acked` returning `Ok`) is refused by a follower started before the
//! failover and by one started after it. Also: a follower past the end of a stream (a Redis
//! replaced by one whose stream ends before its position) reads what is written next; and a
//! relay whose writes no replica acknowledges marks nothing published, without rewriting them
//! every second.
//!
//! Each test prints what it measured (`--nocapture`): how long after the kill a follower applied
//! the first revocation committed after it, and how long it was not ready under a tight policy.

#[macro_use]
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tollgate_core::RevocationIndex;
use tollgate_layer::Readiness;
use tollgate_redis::testing::{ClusterSet, RedisServer, SentinelSet};
use tollgate_redis::wire::Keys;
use tollgate_redis::{Follower, HealthPolicy, RedisTarget, Relay, publish, publish_acked};
use tollgate_store::Outbox;

const WITHIN: Duration = Duration::from_secs(15);
/// How far the Sentinel set's replicas lag behind the primary.
const LAG: Duration = Duration::from_millis(300);
/// Offset of the jtis `publish_acked` publishes, apart from the relay's.
const DIRECT: usize = 1_000_000;

/// What is running against the Redis being failed over: a producer revoking about 1,000 tokens
/// a second through its relay, a direct publisher (as `tollgate revoke` or a logout), a follower
/// started before, and a sampler of that follower's readiness under a tight policy.
struct Load {
    producer: Arc<Producer>,
    relay: tollgate_redis::RelayHandle,
    before: Arc<RevocationIndex>,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicUsize>,
    committed: tokio::task::JoinHandle<usize>,
    acknowledged: Arc<Mutex<Vec<usize>>>,
    publisher: tokio::task::JoinHandle<()>,
    not_ready: Arc<Mutex<Duration>>,
    _feed: tollgate_redis::Feed,
}

impl Load {
    async fn start(target: &RedisTarget) -> Load {
        let producer = Arc::new(Producer::new());
        let relay = Relay::new(target.clone(), producer.store())
            .wake_on(producer.wake.clone())
            .start()
            .await
            .expect("relay");
        let before = Arc::new(RevocationIndex::new());
        let feed = Follower::new(target.clone(), before.clone())
            .start()
            .await
            .expect("follower");
        assert!(feed.wait_synced(WITHIN).await, "never synced");
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let committed = tokio::spawn({
            let (producer, stop, next) = (producer.clone(), stop.clone(), next.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    producer.revoke(token(i)).await;
                    i += 1;
                    next.store(i, Ordering::SeqCst);
                }
                i
            }
        });
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let publisher = tokio::spawn({
            let (target, stop, acknowledged) = (target.clone(), stop.clone(), acknowledged.clone());
            async move {
                let keys = Keys::default();
                let mut i = DIRECT;
                while !stop.load(Ordering::SeqCst) {
                    let published = async {
                        let mut connection = target
                            .connect_for(&keys, Duration::from_secs(2))
                            .await
                            .map_err(|e| e.to_string())?;
                        publish_acked(&mut connection, &keys, &[token(i)], target.replica_acks())
                            .await
                            .map_err(|e| e.to_string())
                    };
                    if published.await.is_ok() {
                        acknowledged.lock().unwrap().push(i);
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    i += 1;
                }
            }
        });
        let not_ready = Arc::new(Mutex::new(Duration::ZERO));
        tokio::spawn({
            let health = feed.health(HealthPolicy {
                require_sync: true,
                max_silence: Some(Duration::from_secs(1)),
            });
            let (stop, not_ready) = (stop.clone(), not_ready.clone());
            async move {
                let step = Duration::from_millis(10);
                while !stop.load(Ordering::SeqCst) {
                    if health.check().is_err() {
                        *not_ready.lock().unwrap() += step;
                    }
                    tokio::time::sleep(step).await;
                }
            }
        });
        Load {
            producer,
            relay,
            before,
            stop,
            next,
            committed,
            acknowledged,
            publisher,
            not_ready,
            _feed: feed,
        }
    }

    /// The first jti the producer commits from now on.
    fn next_jti(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }

    /// Called at the kill: measures, in the background, how long until the follower started
    /// before applies the first revocation committed from now on.
    fn killed(&self) -> (Instant, tokio::task::JoinHandle<Duration>) {
        let killed_at = Instant::now();
        let (jti, before) = (format!("jti-{}", self.next_jti()), self.before.clone());
        let stale = tokio::spawn(async move {
            eventually!(
                "a revocation committed after the kill",
                before.is_token_revoked(&jti)
            );
            killed_at.elapsed()
        });
        (killed_at, stale)
    }

    /// Stops the load, waits until the relay published everything committed, then checks that
    /// the follower started before and a new one hold every revocation a producer counted as
    /// published.
    async fn check(
        self,
        target: &RedisTarget,
        stale: tokio::task::JoinHandle<Duration>,
        what: &str,
    ) {
        let stale = stale.await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop.store(true, Ordering::SeqCst);
        let committed = self.committed.await.unwrap();
        self.publisher.await.unwrap();
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        // Until the promoted primary has a replica again nothing can be marked published;
        // how long that takes is the Sentinels' and the Cluster's business, so wait generously.
        let deadline = Instant::now() + 2 * WITHIN;
        loop {
            let pending = self.producer.store.outbox_status().await.unwrap().pending;
            if pending == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the relay never published every committed revocation ({pending} \
                 pending; relay {:?}; {})",
                self.relay.status(),
                replication(target).await,
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = Arc::new(RevocationIndex::new());
        let feed = Follower::new(target.clone(), after.clone())
            .start()
            .await
            .expect("follower");
        assert!(
            feed.wait_synced(WITHIN).await,
            "the new follower never synced"
        );
        let wanted: Vec<usize> = (0..committed).chain(acknowledged.iter().copied()).collect();
        for (name, index) in [("started before", &self.before), ("started after", &after)] {
            let deadline = Instant::now() + WITHIN;
            loop {
                let missing: Vec<usize> = wanted
                    .iter()
                    .copied()
                    .filter(|i| !index.is_token_revoked(&format!("jti-{i}")))
                    .collect();
                if missing.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: the follower {name} lacks {} of the {} acknowledged revocations \
                     (e.g. jti-{}): lost in the failover",
                    missing.len(),
                    wanted.len(),
                    missing[0]
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let status = self.relay.status();
        eprintln!(
            "{what}: {committed} revocations through the relay ({} published, republished \
             included), {} acknowledged by publish_acked; the follower started before applied \
             the first revocation committed after the kill {} ms after it; not ready (max_silence \
             1 s) {} ms; lost: 0",
            status.published,
            acknowledged.len(),
            stale.as_millis(),
            self.not_ready.lock().unwrap().as_millis(),
        );
        feed.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_no_acknowledged_revocation() {
    let mut set = tokio::task::spawn_blocking(|| SentinelSet::start(LAG))
        .await
        .unwrap();
    let target = RedisTarget::new(&set.url()).unwrap();
    assert_eq!(
        target.replica_acks().replicas,
        1,
        "Sentinel waits for a replica by default"
    );
    let load = Load::start(&target).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = set.kill_primary();
    let (killed_at, stale) = load.killed();
    let promoted = tokio::task::block_in_place(|| set.wait_failover(old, Duration::from_secs(20)));
    eprintln!(
        "sentinel: primary {old} killed, {promoted} promoted after {} ms",
        killed_at.elapsed().as_millis()
    );
    load.check(&target, stale, "sentinel").await;
}

/// Sentinels that require a password of their own (`requirepass` in `sentinel.conf`): asked
/// with `?sentinel_password=`, and a URL without it, or with a wrong one, fails at once with an
/// error that says so, not as an unreachable Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_with_a_password_of_their_own() {
    let mut set = tokio::task::spawn_blocking(|| {
        SentinelSet::start_with_sentinel_password(Duration::ZERO, "watch%word")
    })
    .await
    .unwrap();
    let keys = Keys::default();
    let without = RedisTarget::new(&set.url()).unwrap();
    let e = without
        .connect_for(&keys, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(e.is_refused(), "{e}");
    assert!(e.to_string().contains("?sentinel_password="), "{e}");
    let wrong = RedisTarget::new(&format!("{}?sentinel_password=nope", set.url())).unwrap();
    let e = wrong
        .connect_for(&keys, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(e.is_refused(), "{e}");
    assert!(!e.to_string().contains("nope"), "{e}");

    let target =
        RedisTarget::new(&format!("{}?sentinel_password=watch%25word", set.url())).unwrap();
    let mut connection = target
        .connect_for(&keys, Duration::from_secs(2))
        .await
        .expect("the primary, named by Sentinels asked with their password");
    publish_acked(&mut connection, &keys, &[token(1)], target.replica_acks())
        .await
        .expect("published to the primary and acknowledged by a replica");
    // After a failover, the Sentinels (asked again, with the password) name the new primary.
    let old = set.kill_primary();
    let promoted = tokio::task::block_in_place(|| set.wait_failover(old, Duration::from_secs(20)));
    let mut connection = target
        .connect_for(&keys, Duration::from_secs(2))
        .await
        .expect("the promoted primary");
    let port: u16 = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query_async::<(String, String)>(&mut connection)
        .await
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(port, promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_loses_no_acknowledged_revocation() {
    let mut set = tokio::task::spawn_blocking(ClusterSet::start)
        .await
        .unwrap();
    let target = RedisTarget::new(&set.url()).unwrap();
    assert_eq!(
        target.replica_acks().replicas,
        1,
        "a Cluster waits for a replica by default"
    );
    let stream = Keys::default().stream;
    let (master, replicas) = set.slot_nodes(&stream);
    let load = Load::start(&target).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The replica stops, and its link is cut: what the master takes from now on it alone holds.
    for replica in &replicas {
        set.node(*replica).pause();
    }
    set.cut_replication(master);
    tokio::time::sleep(LAG).await;
    set.kill(master);
    let (killed_at, stale) = load.killed();
    for replica in &replicas {
        set.node(*replica).resume();
    }
    let promoted =
        tokio::task::block_in_place(|| set.wait_failover(&stream, master, Duration::from_secs(20)));
    eprintln!(
        "cluster: master {master} killed, {promoted} promoted after {} ms",
        killed_at.elapsed().as_millis()
    );
    // The promoted master has no replica left: nothing written to it counts until the old
    // master is back, as its replica.
    tokio::task::block_in_place(|| set.restart(master));
    load.check(&target, stale, "cluster").await;
}

#[tokio::test]
async fn a_follower_past_the_end_of_the_stream_reads_what_is_written_next() {
    let mut redis = RedisServer::start();
    let keys = Keys::default();
    let mut conn = support::redis(&redis.url()).await;
    // An entry far ahead of any clock, as a follower may have read from a primary that then
    // died, in a Redis of the same epoch.
    let scratch = Keys::new("scratch");
    publish(&mut conn, &scratch, &[token(1)]).await.unwrap();
    let entry: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&scratch.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (field, value) = entry.ids[0]
        .map
        .iter()
        .next()
        .map(|(f, v)| (f.clone(), v.clone()))
        .unwrap();
    let value: Vec<u8> = redis::from_redis_value(value).unwrap();
    let far = "9999999999999-0";
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(&keys.epoch)
        .arg("the-epoch")
        .ignore()
        .cmd("XADD")
        .arg(&keys.stream)
        .arg(far)
        .arg(&field)
        .arg(&value)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(RedisTarget::new(&redis.url()).unwrap(), index.clone())
        .start()
        .await
        .unwrap();
    eventually!("the far entry applied", index.is_token_revoked("jti-1"));
    // Replaced by a Redis whose stream ends before the follower's position: same epoch (it was
    // replicated), but the tail is gone and new entries get lower ids.
    redis.restart();
    let mut conn = support::redis(&redis.url()).await;
    let _: () = redis::cmd("SET")
        .arg(&keys.epoch)
        .arg("the-epoch")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids = publish(&mut conn, &keys, &[token(2)]).await.unwrap();
    assert!(ids[0].to_string().as_str() < far, "{}", ids[0]);
    eventually!(
        "the entry written after the replacement applied",
        index.is_token_revoked("jti-2")
    );
    assert!(feed.is_synced());
    feed.stop();
}

#[tokio::test]
async fn the_relay_marks_nothing_published_until_a_replica_holds_it() {
    let primary = RedisServer::start();
    let target = RedisTarget::new(&primary.url())
        .unwrap()
        .with_min_replicas_acked(1);
    let producer = Producer::new();
    let relay = Relay::new(target, producer.store())
        .wake_on(producer.wake.clone())
        .start()
        .await
        .unwrap();
    for i in 0..10 {
        producer.revoke(token(i)).await;
    }
    let mut conn = support::redis(&primary.url()).await;
    eventually!("the batch written", stream_len(&mut conn).await >= 10);
    // No replica: written, never acknowledged, so never marked; and waited for, not rewritten
    // every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(producer.store.outbox_status().await.unwrap().pending, 10);
    let status = relay.status();
    assert!(!status.healthy && status.published == 0, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("replicas"),
        "{status:?}"
    );
    assert!(
        stream_len(&mut conn).await <= 20,
        "the batch rewritten again and again"
    );

    // A replica joins: the batch is acknowledged and marked published.
    let _replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    eventually!(
        "the outbox marked published",
        producer.store.outbox_status().await.unwrap().pending == 0
    );
    assert!(relay.status().healthy);
}

/// What the primary `target` names now says of its replicas (`INFO replication`), for a failure
/// message.
async fn replication(target: &RedisTarget) -> String {
    let info = async {
        let mut connection = target
            .connect_for(&Keys::default(), Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("INFO")
            .arg("replication")
            .query_async::<String>(&mut connection)
            .await
            .map_err(|e| e.to_string())
    };
    match info.await {
        Ok(info) => format!(
            "the primary's INFO replication: {}",
            info.replace("\r\n", " ")
        ),
        Err(e) => format!("the primary is out of reach: {e}"),
    }
}
