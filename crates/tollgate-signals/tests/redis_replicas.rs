//! The Redis publisher and replay guard answer only once a failover cannot lose what they wrote:
//! with `min_replicas_acked = 1` and the one replica stopped, a logout's event and its `jti` are
//! not acknowledged (the provider retries), and the `jti` is not spent; with the replica back,
//! both are. Real `redis-server`s, a primary and its replica.

#![cfg(feature = "redis")]

use std::time::{Duration, Instant};
use tollgate_core::{RevocationEvent, UnixMillis};
use tollgate_redis::RedisTarget;
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::Keys;
use tollgate_signals::redis::{RedisPublisher, RedisReplayGuard};
use tollgate_signals::{Publish, ReplayGuard};

const ISSUER: &str = "https://id.example.com";
const NOW: UnixMillis = UnixMillis(1_000);
const UNTIL: UnixMillis = UnixMillis(4_000_000_000_000);

fn logout(sid: &str) -> RevocationEvent {
    RevocationEvent::Cutoff {
        scope: tollgate_core::CutoffScope::Session(sid.into()),
        issued_before: UnixMillis(2_000),
    }
}

/// Waits until the primary on `port` has a replica in sync.
async fn replica_in_sync(port: u16) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut connection)
            .await
            .unwrap();
        if info.contains(",state=online,") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_signal_is_acknowledged_only_once_a_replica_holds_it() {
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    replica_in_sync(primary.port()).await;
    let target = RedisTarget::new(&primary.url())
        .unwrap()
        .with_min_replicas_acked(1);
    let guard = RedisReplayGuard::new(target.clone(), "tollgate");
    let publisher = RedisPublisher::new(target, Keys::default());

    assert!(guard.first_use(ISSUER, "jti-1", NOW, UNTIL).await.unwrap());
    publisher.publish(&[logout("sid-1")]).await.unwrap();

    // The replica stops: a failover now would promote it without what the primary takes.
    replica.pause();
    let used = guard.first_use(ISSUER, "jti-2", NOW, UNTIL).await;
    assert!(
        used.is_err(),
        "a jti counted as used that a failover can forget: {used:?}"
    );
    let published = publisher.publish(&[logout("sid-2")]).await;
    let error = published.expect_err("an event acknowledged that a failover can lose");
    assert!(error.to_string().contains("replicas"), "{error}");

    replica.resume();
    replica_in_sync(primary.port()).await;
    // The refused signal's retry is accepted: its jti was given back, not spent.
    assert!(
        guard.first_use(ISSUER, "jti-2", NOW, UNTIL).await.unwrap(),
        "the retry of a refused signal was taken for a replay"
    );
    publisher.publish(&[logout("sid-2")]).await.unwrap();
    assert!(!guard.first_use(ISSUER, "jti-1", NOW, UNTIL).await.unwrap());
}
