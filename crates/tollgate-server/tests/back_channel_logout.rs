//! End to end with a real identity provider no one here wrote: node-oidc-provider signs users in
//! through its own pages and issues JWT access tokens; `tollgate gateway` receives its
//! back-channel logouts and publishes them through Redis to a Layer in this process. Once the
//! provider has answered a user's sign-out, both refuse that user's token; another user's token
//! still passes.

mod support;

use std::time::Instant;
use support::following::FollowingApi;
use support::gateway::{Gateway, start_gateway, status, upstream, wait_ready};
use support::oidc_provider::{Browser, Provider};
use tollgate_redis::testing::RedisServer;

/// The resource node-oidc-provider issues its JWT access tokens for.
const AUDIENCE: &str = "urn:orders";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway in front of one upstream for the provider's tokens, following (and publishing to)
/// `redis`, receiving the provider's back-channel logouts for client `web`.
async fn gateway(
    dir: &std::path::Path,
    port: u16,
    provider: &Provider,
    redis: &RedisServer,
) -> Gateway {
    let upstream = upstream().await;
    let toml = dir.join("gateway.toml");
    std::fs::write(
        &toml,
        format!(
            r#"listen = "127.0.0.1:{port}"
issuer = "{issuer}"
audience = ["{AUDIENCE}"]

[keys]
discovery_url = "{issuer}/.well-known/openid-configuration"

[ops]
listen = "127.0.0.1:0"

[revocations]
redis_url = "{redis}"

[back_channel_logout]
path = "/backchannel-logout"

[[back_channel_logout.issuers]]
issuer = "{issuer}"
client_id = "web"
revoke = "session"

[[upstreams]]
name = "orders"
url = "http://{upstream}"

[[routes]]
prefix = "/orders"
"#,
            issuer = provider.issuer,
            redis = redis.url(),
        ),
    )
    .unwrap();
    let gateway = start_gateway(&toml);
    wait_ready(&gateway).await;
    gateway
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_at_the_provider_is_refused_by_the_gateway_and_a_following_layer() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let gateway_port = free_port();
    let provider = Provider::start(
        free_port(),
        &format!("http://127.0.0.1:{gateway_port}/backchannel-logout"),
    );
    let gateway = gateway(dir.path(), gateway_port, &provider, &redis).await;
    let api = FollowingApi::start_for(
        &redis.url(),
        &provider.issuer,
        AUDIENCE,
        &provider.jwks_url(),
    )
    .await;

    let alice = Browser::sign_in(&provider, "alice");
    let bob = Browser::sign_in(&provider, "bob");
    let orders = format!("{}/orders", gateway.base);
    for (who, browser) in [("alice", &alice), ("bob", &bob)] {
        assert_eq!(
            status(&orders, Some(&browser.access_token)).await,
            200,
            "{who} at the gateway"
        );
        assert_eq!(
            api.status(&browser.access_token).await,
            200,
            "{who} at the Layer"
        );
    }

    alice.sign_out(&provider);
    assert!(
        provider
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "backchannel.success"),
        "the provider's back-channel logout was not answered 200: {:?}",
        provider.log.lock().unwrap()
    );
    // The gateway answered the provider only after publishing: it refuses at once.
    assert_eq!(status(&orders, Some(&alice.access_token)).await, 401);
    // The Layer hears of it through Redis.
    let heard = Instant::now();
    api.wait_for(&alice.access_token, 401, "alice after her sign-out")
        .await;
    eprintln!(
        "the following Layer refused alice {:?} after the sign-out",
        heard.elapsed()
    );
    // Bob's session goes on.
    assert_eq!(status(&orders, Some(&bob.access_token)).await, 200);
    assert_eq!(api.status(&bob.access_token).await, 200);

    // The logout is counted where operators look.
    let metrics = support::http()
        .get(format!("{}/metrics", gateway.ops))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tollgate_gateway_logout_total{outcome=\"applied\"} 1"),
        "{metrics}"
    );
}
