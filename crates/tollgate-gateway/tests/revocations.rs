//! Revocations through a real Redis (a private `redis-server`): `/readyz` and every protected
//! request say "not ready" until the feed's first sync, and a revocation published to the
//! stream is refused by the gateway.

mod support;

use http::StatusCode;
use std::time::{Duration, Instant};
use support::*;
use tollgate_core::{RevocationEvent, UnixMillis};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::Keys;

const DEADLINE: Duration = Duration::from_secs(20);

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn not_ready_before_the_first_sync_then_revocations_are_refused() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    // Redis is out of reach when the gateway starts: it must not serve tokens it cannot judge.
    redis.kill();
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&format!(
            "[revocations]\nredis_url = \"{url}\"\n[[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n\
             [[routes]]\nprefix = \"/api\"\n[[routes]]\nprefix = \"/public\"\npublic = true\n",
            up.addr
        ))
        .await;
    let (addr, ops) = (gw.local_addr(), gw.ops_addr());
    let token = fx.token(|_| {});
    let auth = bearer(&token);

    let a = send(ops, "GET", "/readyz", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(a.body.contains("not ready"), "{}", a.body);
    let a = send(addr, "GET", "/api/x", &[("authorization", &auth)]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(
        send(ops, "GET", "/healthz", &[]).await.status,
        StatusCode::OK,
        "alive all the same"
    );
    assert_eq!(
        send(addr, "GET", "/public", &[]).await.status,
        StatusCode::OK,
        "public routes need no token"
    );

    redis.restart();
    eventually("ready once Redis answers", async || {
        send(ops, "GET", "/readyz", &[]).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        send(addr, "GET", "/api/x", &[("authorization", &auth)])
            .await
            .status,
        StatusCode::OK
    );

    // A revocation published to the stream (as `tollgate serve` or `tollgate revoke` would).
    let claims_jti = jti_of(&token);
    let other = fx.token(|_| {});
    let mut connection = tollgate_redis::RedisTarget::new(&url)
        .unwrap()
        .connect(Duration::from_secs(5))
        .await
        .unwrap();
    tollgate_redis::publish(
        &mut connection,
        &Keys::default(),
        &[RevocationEvent::Token {
            jti: claims_jti,
            expires_at: UnixMillis::from(std::time::SystemTime::now() + Duration::from_secs(3600)),
        }],
    )
    .await
    .unwrap();
    eventually("the revoked token refused", async || {
        let a = send(addr, "GET", "/api/x", &[("authorization", &auth)]).await;
        a.status == StatusCode::UNAUTHORIZED
            && a.header("www-authenticate")
                .is_some_and(|c| c.contains("revoked"))
    })
    .await;
    assert_eq!(
        send(addr, "GET", "/api/x", &[("authorization", &bearer(&other))])
            .await
            .status,
        StatusCode::OK,
        "other tokens are unaffected"
    );

    let metrics = send(ops, "GET", "/metrics", &[]).await.body;
    // At least once: a follower that writes no snapshot does not create the epoch, so the
    // producer creating it on its first publish reloads the follower, which applies the event
    // again (harmless: applying is idempotent).
    let applied = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_gateway_feed_events_applied_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(applied.is_some_and(|n| n >= 1.0), "{metrics}");
    for sample in [
        "tollgate_gateway_feed_synced 1",
        "tollgate_gateway_feed_connected 1",
        "tollgate_gateway_revocation_index_tokens 1",
        "tollgate_gateway_rejections_total{reason=\"revoked\"} 1",
        "tollgate_gateway_rejections_total{reason=\"not_ready\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "{sample} missing:\n{metrics}"
        );
    }
    gw.shutdown().await;
}

/// The jti of a token minted by the fixture.
fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// The gateway on Redis Sentinel (Sentinels with a password of their own) follows a failover
/// without a restart: a revocation published to the primary promoted after the old one died is
/// refused, as is one published before; other tokens pass throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_a_sentinel_failover() {
    let mut set = tokio::task::spawn_blocking(|| {
        tollgate_redis::testing::SentinelSet::start_with_sentinel_password(
            Duration::ZERO,
            "sentinel-secret",
        )
    })
    .await
    .unwrap();
    let url = format!("{}?sentinel_password=sentinel-secret", set.url());
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&format!(
            "[revocations]\nredis_url = \"{url}\"\n[[upstreams]]\nname = \"app\"\n\
             url = \"http://{}\"\n[[routes]]\nprefix = \"/api\"\n",
            up.addr
        ))
        .await;
    let (addr, ops) = (gw.local_addr(), gw.ops_addr());
    eventually("ready", async || {
        send(ops, "GET", "/readyz", &[]).await.status == StatusCode::OK
    })
    .await;
    let target = tollgate_redis::RedisTarget::new(&url).unwrap();
    let revoke = async |token: &str| {
        let mut connection = target
            .connect(Duration::from_secs(5))
            .await
            .expect("the primary the Sentinels name");
        tollgate_redis::publish_acked(
            &mut connection,
            &Keys::default(),
            &[RevocationEvent::Token {
                jti: jti_of(token),
                expires_at: UnixMillis::from(
                    std::time::SystemTime::now() + Duration::from_secs(3600),
                ),
            }],
            target.replica_acks(),
        )
        .await
        .expect("published and held by a replica");
    };
    let status = async |token: &str| {
        send(addr, "GET", "/api/x", &[("authorization", &bearer(token))])
            .await
            .status
    };
    let (before, after, other) = (fx.token(|_| {}), fx.token(|_| {}), fx.token(|_| {}));
    revoke(&before).await;
    eventually("a token revoked before the failover refused", async || {
        status(&before).await == StatusCode::UNAUTHORIZED
    })
    .await;

    let old = set.kill_primary();
    tokio::task::block_in_place(|| set.wait_failover(old, Duration::from_secs(20)));
    revoke(&after).await;
    eventually("a token revoked after the failover refused", async || {
        status(&after).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(status(&before).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&other).await, StatusCode::OK);
    assert_eq!(
        send(ops, "GET", "/readyz", &[]).await.status,
        StatusCode::OK
    );
    gw.shutdown().await;
}
