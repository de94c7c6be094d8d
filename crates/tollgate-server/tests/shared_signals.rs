//! `[[shared_signals]]` in `tollgate serve`: the cutoffs of a transmitter's security events go
//! through the store, as the server's own revocations do. A SET polled while Redis is down is
//! acknowledged once committed (durable, in the outbox), and reaches a follower of the stream
//! once Redis is back, through the relay. The transmitter is the test kit of
//! `tollgate_signals::testing`.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use support::*;
use tollgate_core::{RevocationIndex, TokenIdentity, UnixMillis};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::{Follower, RedisTarget};
use tollgate_signals::ssf::event_types::CAEP_SESSION_REVOKED;
use tollgate_signals::testing::Transmitter;

/// The issuer whose tokens the transmitter speaks for (an identity provider, not this server).
const PROVIDER: &str = "https://id.example.com";
const AUDIENCE: &str = "https://tollgate.example.test";
/// Set for the server process only.
const BEARER_ENV: &str = "TOLLGATE_TEST_SSF_TOKEN";
const BEARER: &str = "ssf-management-token";

/// Whether `index` refuses a token of the provider's `sub` in session `sid`, issued a minute ago.
fn refused(index: &RevocationIndex, sub: &str, sid: &str) -> bool {
    index
        .check(&TokenIdentity {
            jti: "t",
            grant_id: None,
            tenant: "/",
            subject: sub,
            client_id: "web",
            issuer: PROVIDER,
            session: Some(sid),
            issued_at: UnixMillis(UnixMillis::from(SystemTime::now()).0 - 60_000),
        })
        .is_err()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_polled_event_is_committed_while_redis_is_down_and_relayed_once_it_is_back() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let tx = Transmitter::start(AUDIENCE, BEARER).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[replication]\nredis_url = \"{url}\"\n\
         [[shared_signals]]\ntransmitter = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         bearer_token_env = \"{BEARER_ENV}\"\ntoken_issuers = [\"{PROVIDER}\"]\npoll_interval = 1\n",
        config(dir.path()),
        tx.issuer()
    );
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_file_with_env(&path, &[(BEARER_ENV, BEARER)]);
    wait_until("the stream set up", || tx.stream_id().is_some()).await;

    redis.kill();
    let session = json!({
        "format": "complex",
        "user": {"format": "iss_sub", "iss": PROVIDER, "sub": "alice"},
        "session": {"format": "opaque", "id": "s-1"},
    });
    let (jti, set) = tx.set(&tx.claims(CAEP_SESSION_REVOKED, session, json!({})));
    tx.enqueue(&jti, &set);
    // Acknowledged without Redis: the store has it.
    wait_until("acknowledged while Redis is down", || {
        tx.acked().contains(&jti)
    })
    .await;
    assert!(tx.set_errs().is_empty(), "{:?}", tx.set_errs());

    redis.restart();
    let followed = Arc::new(RevocationIndex::new());
    let feed = Follower::new(RedisTarget::new(&url).unwrap(), followed.clone())
        .start()
        .await
        .unwrap();
    wait_until("relayed to a follower", || {
        refused(&followed, "alice", "s-1")
    })
    .await;
    assert!(!refused(&followed, "alice", "s-2"), "another session");
    assert!(!refused(&followed, "bob", "s-9"), "another user");
    feed.stop();
    server.stop();
}
