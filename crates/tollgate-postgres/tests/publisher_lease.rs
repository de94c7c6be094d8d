//! One publisher per shared outbox: replicas on one PostgreSQL each run a relay into one Redis
//! (both private to the test); the publisher lease lets exactly one of them publish, and another
//! takes over within the stated bound when the holder dies, losing nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_core::{RevocationEvent, RevocationIndex, UnixMillis};
use tollgate_postgres::testing::PostgresServer;
use tollgate_postgres::{PostgresOptions, PostgresStore, PostgresTarget, TAKEOVER_BOUND};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::Keys;
use tollgate_redis::{Follower, RedisTarget, Relay, RelayHandle};
use tollgate_store::{
    Outbox, OutboxEntry, OutboxPosition, OutboxStatus, Record, Store, StoreFuture,
};

fn options() -> PostgresOptions {
    PostgresOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
}

fn revocation(jti: &str) -> Vec<Record> {
    let now = UnixMillis::from(std::time::SystemTime::now());
    vec![Record::Revocation(RevocationEvent::Token {
        jti: jti.into(),
        expires_at: UnixMillis(now.0 + 3_600_000),
    })]
}

/// A relay as it was before the lease: every replica publishes (its store's lease is ignored).
#[derive(Debug)]
struct EveryonePublishes(Arc<PostgresStore>);

impl Outbox for EveryonePublishes {
    fn outbox_status(&self) -> StoreFuture<'_, OutboxStatus> {
        self.0.outbox_status()
    }
    fn outbox_read(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.0.outbox_read(after, limit)
    }
    fn outbox_mark(&self, position: OutboxPosition) -> StoreFuture<'_, ()> {
        self.0.outbox_mark(position)
    }
    fn publisher_lease(&self) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(true)))
    }
}

/// A token-service replica as far as replication goes: its store and its relay.
struct Replica {
    store: Arc<PostgresStore>,
    relay: RelayHandle,
}

async fn replica(target: &PostgresTarget, redis: &str, keys: &Keys, lease: bool) -> Replica {
    let store = Arc::new(
        PostgresStore::connect(target.clone(), options())
            .await
            .expect("connect"),
    );
    let outbox: Arc<dyn Outbox> = if lease {
        store.clone()
    } else {
        Arc::new(EveryonePublishes(store.clone()))
    };
    let relay = Relay::new(RedisTarget::new(redis).expect("Redis URL"), outbox)
        .keys(keys.clone())
        .start()
        .await
        .expect("relay");
    Replica { store, relay }
}

async fn stream_length(redis: &str, keys: &Keys) -> u64 {
    let client = redis::Client::open(redis).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    redis::cmd("XLEN")
        .arg(&keys.stream)
        .query_async(&mut connection)
        .await
        .expect("XLEN")
}

/// Waits until the stream stops growing (nothing published for 2.5 s: two relay rounds of
/// every replica) and has at least `events` entries; returns its length.
async fn settled_length(redis: &str, keys: &Keys, events: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (0, Instant::now());
    loop {
        let length = stream_length(redis, keys).await;
        if length != last.0 {
            last = (length, Instant::now());
        } else if length >= events && last.1.elapsed() > Duration::from_millis(2500) {
            return length;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never settled ({length} entries for {events} events)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_publishes_and_another_takes_over_when_it_dies() {
    let postgres = PostgresServer::start();
    let redis = RedisServer::start();
    let (url, keys) = (redis.url(), Keys::default());
    let target = postgres.target();
    let index = Arc::new(RevocationIndex::new());
    let _feed = Follower::new(RedisTarget::new(&url).unwrap(), index.clone())
        .start()
        .await
        .expect("follower");
    let mut replicas = vec![
        replica(&target, &url, &keys, true).await,
        replica(&target, &url, &keys, true).await,
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        let standing_by: Vec<bool> = replicas.iter().map(|r| r.relay.status().standby).collect();
        if standing_by == [false, true] || standing_by == [true, false] {
            break standing_by.iter().position(|standby| !standby).unwrap_or(0);
        }
        assert!(
            Instant::now() < deadline,
            "not one holder and one standing by: {standing_by:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Both replicas revoke; only the holder publishes, each event once.
    let mut revoked = BTreeSet::new();
    for n in 0..100 {
        let jti = format!("first-{n}");
        replicas[n % 2]
            .store
            .commit(revocation(&jti))
            .await
            .unwrap();
        revoked.insert(jti);
    }
    assert_eq!(settled_length(&url, &keys, 100).await, 100);
    let published: Vec<u64> = replicas
        .iter()
        .map(|r| r.relay.status().published)
        .collect();
    assert_eq!(published[holder], 100, "{published:?}");
    assert_eq!(published[1 - holder], 0, "{published:?}");
    assert!(replicas[1 - holder].relay.status().healthy);

    // The holder dies (its relay stops, its connections close); the survivor revokes on.
    let dead = replicas.remove(holder);
    let before_death = stream_length(&url, &keys).await;
    dead.relay.stop();
    drop(dead);
    let died = Instant::now();
    let survivor = &replicas[0];
    for n in 0..100 {
        let jti = format!("second-{n}");
        survivor.store.commit(revocation(&jti)).await.unwrap();
        revoked.insert(jti);
    }
    let deadline = died + TAKEOVER_BOUND;
    while survivor.relay.status().standby || revoked.iter().any(|j| !index.is_token_revoked(j)) {
        assert!(
            Instant::now() < deadline,
            "no takeover within {TAKEOVER_BOUND:?}: {:?}",
            survivor.relay.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = died.elapsed();
    let length = settled_length(&url, &keys, 200).await;
    let duplicates = length - 200;
    eprintln!(
        "takeover {takeover:?} after the holder died; {duplicates} duplicate publishes \
         (events published after the dead holder's last recorded position, again)"
    );
    // The survivor republishes at most what followed the dead holder's last mark.
    assert!(duplicates <= before_death, "{duplicates} duplicates");
    assert!(revoked.iter().all(|jti| index.is_token_revoked(jti)));
}

/// The measurement of issue 23: duplicate publishes per event with 1, 2 and 3 replicas, with
/// every relay publishing (before the lease) and with the lease. Prints the figures; asserts
/// that with the lease every event is published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_publishes_per_event_with_one_two_three_replicas() {
    const EVENTS: u64 = 200;
    let postgres = PostgresServer::start();
    let redis = RedisServer::start();
    let url = redis.url();
    for lease in [false, true] {
        for replicas in 1..=3 {
            let target = postgres.create_database().await;
            let keys = Keys::new(&format!("m{replicas}{lease}"));
            let mut fleet = Vec::new();
            for _ in 0..replicas {
                fleet.push(replica(&target, &url, &keys, lease).await);
            }
            for n in 0..EVENTS {
                let at = usize::try_from(n).unwrap_or(0) % replicas;
                fleet[at]
                    .store
                    .commit(revocation(&format!("e{n}")))
                    .await
                    .unwrap();
            }
            let length = settled_length(&url, &keys, EVENTS).await;
            let per_event = length as f64 / EVENTS as f64;
            eprintln!(
                "{replicas} replica(s), {}: {length} publishes for {EVENTS} events, \
                 {per_event:.2} per event",
                if lease {
                    "with the lease"
                } else {
                    "every relay publishing"
                }
            );
            if lease {
                assert_eq!(length, EVENTS, "{replicas} replicas with the lease");
            }
            for replica in fleet {
                replica.relay.stop();
            }
        }
    }
}
