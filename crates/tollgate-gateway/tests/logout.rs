//! `[back_channel_logout]`: the gateway receives an identity provider's logout tokens on its own
//! listener, before any route, and refuses the ended session's tokens from then on. Without
//! `[revocations]` the cutoff reaches this gateway's index only (the Redis path is tested end to
//! end in tollgate-server's tests/back_channel_logout.rs, with node-oidc-provider).

mod support;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use std::net::SocketAddr;
use std::time::SystemTime;
use support::*;
use tollgate_core::{UnixMillis, jws};

const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn logout_token(fixture: &Fixture, jti: &str, sid: &str) -> String {
    let now = UnixMillis::from(SystemTime::now()).as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": "web", "iat": now, "exp": now + 120, "jti": jti,
        "sub": "alice", "sid": sid, "events": { LOGOUT_EVENT: {} },
    });
    jws::encode(&fixture.key, "logout+jwt", &claims).unwrap()
}

async fn post_logout(addr: SocketAddr, path: &str, token: &str) -> (StatusCode, String, String) {
    let request = Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full(format!("logout_token={token}")))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let status = response.status();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, cache, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_logout_ends_that_session_at_the_gateway_before_any_route() {
    let fixture = Fixture::new();
    let up = upstream().await;
    let gw = fixture
        .start(&format!(
            "[back_channel_logout]\npath = \"/backchannel-logout\"\n\
             [[back_channel_logout.issuers]]\nissuer = \"{ISSUER}\"\nclient_id = \"web\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n\
             [[routes]]\nprefix = \"/\"\n",
            up.addr
        ))
        .await;
    let addr = gw.local_addr();
    let in_session = |sid: &'static str| bearer(&fixture.token(|c| c.sid = Some(sid.into())));
    let (s1, s2) = (in_session("s-1"), in_session("s-2"));
    for auth in [&s1, &s2] {
        assert_eq!(
            send(addr, "GET", "/api", &[("authorization", auth)])
                .await
                .status,
            StatusCode::OK
        );
    }

    let token = logout_token(&fixture, "j-1", "s-1");
    let (status, cache, body) = post_logout(addr, "/backchannel-logout", &token).await;
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::OK, "no-store"),
        "{body}"
    );
    assert_eq!(
        send(addr, "GET", "/api", &[("authorization", &s1)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(addr, "GET", "/api", &[("authorization", &s2)])
            .await
            .status,
        StatusCode::OK
    );

    // A replay, and a token that is not a logout, are the specification's 400.
    let (status, _, body) = post_logout(addr, "/backchannel-logout", &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("already used"), "{body}");
    let access = fixture.token(|_| {});
    let (status, _, body) = post_logout(addr, "/backchannel-logout", &access).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("logout+jwt"), "{body}");

    let metrics = send(gw.ops_addr(), "GET", "/metrics", &[]).await.body;
    for sample in [
        "tollgate_gateway_logout_total{outcome=\"applied\"} 1",
        "tollgate_gateway_logout_total{outcome=\"replayed\"} 1",
        "tollgate_gateway_logout_total{outcome=\"invalid\"} 1",
        "tollgate_gateway_requests_total{route=\"none\",outcome=\"logout\"} 3",
        // The route `/` saw only the three GETs that passed, none of the logouts.
        "tollgate_gateway_requests_total{route=\"/\",outcome=\"forwarded\"} 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "{sample} missing:\n{metrics}"
        );
    }
    gw.shutdown().await;
}

/// With `[revocations]`, a logout while Redis is away: the gateway applies it to its own index
/// at once (it fails closed for itself), answers the provider `400 temporarily_unavailable`
/// without spending the `jti`, and accepts the same logout once Redis is back, when it reaches
/// every follower.
#[tokio::test]
async fn while_redis_is_away_a_logout_is_refused_to_the_provider_yet_applied_here() {
    let mut redis = tollgate_redis::testing::RedisServer::start();
    let url = redis.url();
    let fixture = Fixture::new();
    let up = upstream().await;
    let gw = fixture
        .start(&format!(
            "[revocations]\nredis_url = \"{url}\"\n\
             [back_channel_logout]\npath = \"/bcl\"\n\
             [[back_channel_logout.issuers]]\nissuer = \"{ISSUER}\"\nclient_id = \"web\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n[[routes]]\nprefix = \"/\"\n",
            up.addr
        ))
        .await;
    let (addr, ops) = (gw.local_addr(), gw.ops_addr());
    let started = std::time::Instant::now();
    while send(ops, "GET", "/readyz", &[]).await.status != StatusCode::OK {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "never ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s1 = bearer(&fixture.token(|c| c.sid = Some("s-1".into())));
    assert_eq!(
        send(addr, "GET", "/x", &[("authorization", &s1)])
            .await
            .status,
        StatusCode::OK
    );

    redis.kill();
    let token = logout_token(&fixture, "j-away", "s-1");
    let (status, _, body) = post_logout(addr, "/bcl", &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("temporarily_unavailable"), "{body}");
    // Within the feed's max_silence the gateway still judges tokens: this one is refused here.
    assert_eq!(
        send(addr, "GET", "/x", &[("authorization", &s1)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    redis.restart();
    let index = std::sync::Arc::new(tollgate_core::RevocationIndex::new());
    let feed = tollgate_redis::Follower::new(
        tollgate_redis::RedisTarget::new(&url).unwrap(),
        index.clone(),
    )
    .start()
    .await
    .unwrap();
    // The provider (or an operator) sends it again: the jti was not spent.
    let (status, _, body) = post_logout(addr, "/bcl", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = tollgate_core::TokenIdentity {
        jti: "t",
        grant_id: None,
        tenant: "/",
        subject: "alice",
        client_id: "app",
        issuer: ISSUER,
        session: Some("s-1"),
        issued_at: UnixMillis(UnixMillis::from(SystemTime::now()).0 - 60_000),
    };
    let started = std::time::Instant::now();
    while index.check(&session).is_ok() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "never published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let metrics = send(ops, "GET", "/metrics", &[]).await.body;
    for sample in [
        "tollgate_gateway_logout_total{outcome=\"unavailable\"} 1",
        "tollgate_gateway_logout_total{outcome=\"applied\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "{sample} missing:\n{metrics}"
        );
    }
    feed.stop();
    gw.shutdown().await;
}

#[test]
fn logout_configuration_errors_are_one_line_naming_the_key() {
    let fixture = Fixture::new();
    let error = |body: &str| {
        let text = fixture.config(body);
        let error = tollgate_gateway::config::parse(&text, &fixture.path())
            .expect_err(&text)
            .to_string();
        assert!(!error.contains('\n'), "{error}");
        error
    };
    let table =
        |path: &str, issuers: &str| format!("[back_channel_logout]\npath = \"{path}\"\n{issuers}");
    let one = |issuer: &str, extra: &str| {
        format!(
            "[[back_channel_logout.issuers]]\nissuer = \"{issuer}\"\nclient_id = \"web\"\n{extra}"
        )
    };
    for (body, wanted) in [
        (
            table("/bcl", &one("https://other.test", "")),
            "is not a configured issuer",
        ),
        (
            table("/bcl", &one(ISSUER, "revoke = \"everything\"\n")),
            "\"session\" or \"subject\"",
        ),
        (table("/bcl", "issuers = []\n"), "at least one issuer"),
        (table("bcl", &one(ISSUER, "")), "plain absolute path"),
        (table("/a/../bcl", &one(ISSUER, "")), "plain absolute path"),
        (
            table("/bcl", &format!("{}{}", one(ISSUER, ""), one(ISSUER, ""))),
            "listed twice",
        ),
        (
            format!(
                "[back_channel_logout]\npath = \"/bcl\"\nmax_age = 0\n{}",
                one(ISSUER, "")
            ),
            "max_age",
        ),
        (
            format!(
                "[forward_auth]\npath = \"/bcl\"\nproxy = \"traefik\"\n{}",
                table("/bcl", &one(ISSUER, ""))
            ),
            "forward_auth's path",
        ),
    ] {
        let got = error(&body);
        assert!(got.contains(wanted), "{body}\n=> {got}");
        assert!(got.contains("back_channel_logout"), "{got}");
    }
}
