//! Back-channel logout figures, in one run on one machine (`benches/signals.sh` builds the release
//! binary first):
//!
//! 1. Logout tokens validated and published per second by the receiver in this process: to its
//!    own index, and through a private Redis (stream entry plus replay key).
//!
//!    1b. Security event tokens (CAEP session-revoked) pushed to a Shared Signals receiver,
//!    validated and published per second.
//! 2. Propagation: from a `tollgate gateway` process answering a logout `200` to the first refusal
//!    of the ended session's token by a follower's index in another process (this one), while
//!    1,000 other revocations/s go through the same stream. The index is watched in a loop, so
//!    the figure is what a gateway's or a Layer's `check` would see. The gateway answers only
//!    after Redis has the event, so the follower has often applied it before the `200` arrives:
//!    those count as 0.
//!
//! `LOGOUTS` (default 500), `LOGOUT_RATE` (default 50/s) and `RATE` (background, default
//! 1000/s) override the load; `TOLLGATE_BIN` names the binary (default target/release/tollgate).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tollgate_core::{
    KeySet, RevocationEvent, RevocationIndex, SigningAlgorithm, TokenIdentity, UnixMillis, jws,
};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::Keys;
use tollgate_redis::{Follower, RedisTarget};
use tollgate_signals::redis::{RedisPublisher, RedisReplayGuard};
use tollgate_signals::{BackChannelLogout, LOGOUT_EVENT, LogoutIssuer, MemoryReplayGuard};
use tower::ServiceExt;

const CLIENT: &str = "web";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_secs() -> i64 {
    UnixMillis::from(SystemTime::now()).as_secs()
}

fn logout_token(keys: &KeySet, issuer: &str, jti: &str, sid: &str) -> String {
    let now = now_secs();
    let claims = json!({
        "iss": issuer, "aud": CLIENT, "iat": now, "exp": now + 120, "jti": jti,
        "sub": "user", "sid": sid, "events": { LOGOUT_EVENT: {} },
    });
    jws::encode(&keys.signing_key().unwrap(), "logout+jwt", &claims).unwrap()
}

fn form(token: &str) -> Request<Full<Bytes>> {
    Request::post("/backchannel-logout")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(format!("logout_token={token}")))
        .unwrap()
}

/// Logouts per second through `receiver`, `n` distinct tokens, 16 at a time.
async fn throughput(receiver: BackChannelLogout, tokens: Vec<String>) -> f64 {
    let started = Instant::now();
    let n = tokens.len();
    let mut chunks = tokens
        .chunks(n.div_ceil(16))
        .map(<[String]>::to_vec)
        .collect::<Vec<_>>();
    let tasks: Vec<_> = chunks
        .drain(..)
        .map(|chunk| {
            let receiver = receiver.clone();
            tokio::spawn(async move {
                for token in chunk {
                    let response = receiver.clone().oneshot(form(&token)).await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn receiver_for(issuer: &str, keys: &KeySet) -> tollgate_signals::BackChannelLogoutBuilder {
    BackChannelLogout::builder().issuer(LogoutIssuer::new(issuer, CLIENT, keys.clone()))
}

/// A JWKS endpoint for `keys`, the provider's side of the gateway's `[keys]`.
async fn jwks_endpoint(keys: &KeySet) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(serde_json::to_vec(&keys.to_jwks()).unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(
    dir: &std::path::Path,
    issuer: &str,
    jwks: &str,
    redis: &str,
    port: u16,
) -> Gateway {
    let bin = std::env::var_os("TOLLGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/tollgate")
        });
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p tollgate-server` (or benches/signals.sh)",
        bin.display()
    );
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nissuer = \"{issuer}\"\naudience = [\"api\"]\n\
         [keys]\njwks_url = \"{jwks}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n\
         [revocations]\nredis_url = \"{redis}\"\n\
         [back_channel_logout]\npath = \"/backchannel-logout\"\n\
         [[back_channel_logout.issuers]]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT}\"\n"
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let child = Command::new(bin)
        .args(["gateway", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Gateway(child)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let issuer = "http://127.0.0.1:1/provider";
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
    let tokens = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| logout_token(&keys, issuer, &format!("{prefix}-{i}"), &format!("s-{i}")))
            .collect()
    };

    println!("== 1. logout tokens validated and published per second (EdDSA, 16 concurrent)");
    let index = Arc::new(RevocationIndex::new());
    let local = receiver_for(issuer, &keys)
        .publisher(index.clone())
        .replay_guard(MemoryReplayGuard::new())
        .build()
        .unwrap();
    let _ = throughput(local.clone(), tokens("warm", 2_000)).await;
    let rate = throughput(local, tokens("local", 20_000)).await;
    println!("to this process's index:          {rate:>8.0} /s");
    let redis = RedisServer::start();
    let target = RedisTarget::new(&redis.url()).unwrap();
    let through_redis = receiver_for(issuer, &keys)
        .publisher(RedisPublisher::new(target.clone(), Keys::default()).apply_locally(index))
        .replay_guard(RedisReplayGuard::new(target.clone(), "tollgate"))
        .build()
        .unwrap();
    let rate = throughput(through_redis, tokens("redis", 20_000)).await;
    println!("through Redis (XADD + SET NX):    {rate:>8.0} /s");

    println!(
        "== 1b. security event tokens (CAEP session-revoked, pushed) validated and published per second"
    );
    let transmitter = "https://ssf.example";
    let ssf = tollgate_signals::SsfReceiver::builder(transmitter, "https://receiver.example")
        // Required by the builder; never sent, as the bench does not start the receiver.
        .bearer_token("unused")
        .keys(keys.clone())
        .push("https://receiver.example/ssf", None)
        .publisher(Arc::new(RevocationIndex::new()))
        .replay_guard(MemoryReplayGuard::new())
        .build()
        .unwrap();
    let sets: Vec<String> = (0..20_000)
        .map(|i| {
            let now = now_secs();
            let claims = json!({
                "iss": transmitter, "aud": "https://receiver.example", "iat": now,
                "jti": format!("set-{i}"),
                "sub_id": {"format": "iss_sub", "iss": transmitter, "sub": format!("user-{i}")},
                "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked":
                    {"event_timestamp": now}},
            });
            jws::encode(&keys.signing_key().unwrap(), "secevent+jwt", &claims).unwrap()
        })
        .collect();
    let push = ssf.push_service();
    let started = Instant::now();
    let tasks: Vec<_> = sets
        .chunks(sets.len().div_ceil(16))
        .map(|chunk| {
            let (push, chunk) = (push.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for set in chunk {
                    let request = Request::post("/ssf")
                        .header("content-type", "application/secevent+jwt")
                        .body(Full::<Bytes>::from(set))
                        .unwrap();
                    let response = push.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 202);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = sets.len() as f64 / started.elapsed().as_secs_f64();
    println!("to this process's index:          {rate:>8.0} /s");

    let logouts = env_or("LOGOUTS", 500) as usize;
    let logout_rate = env_or("LOGOUT_RATE", 50);
    let background = env_or("RATE", 1000);
    println!(
        "== 2. propagation: gateway answers 200 -> a follower in another process refuses; \
         {logouts} logouts at {logout_rate}/s beside {background} revocations/s"
    );
    let jwks = jwks_endpoint(&keys).await;
    let provider = format!("http://{jwks}");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _gateway = start_gateway(
        dir.path(),
        &provider,
        &format!("{provider}/jwks"),
        &redis.url(),
        port,
    );
    let follower_index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target.clone(), follower_index.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(Duration::from_secs(10)).await);

    // The background load: token revocations appended at `background`/s.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, target) = (stop.clone(), target.clone());
        tokio::spawn(async move {
            let mut connection = target.connect(Duration::from_secs(2)).await.unwrap();
            let keys = Keys::default();
            let every = Duration::from_millis(10);
            let per_tick = (background / 100).max(1);
            let mut n = 0u64;
            let mut tick = tokio::time::interval(every);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let events: Vec<_> = (0..per_tick)
                    .map(|i| RevocationEvent::Token {
                        jti: format!("bg-{n}-{i}"),
                        expires_at: UnixMillis(UnixMillis::from(SystemTime::now()).0 + 600_000),
                    })
                    .collect();
                n += 1;
                let _ = tollgate_redis::publish(&mut connection, &keys, &events).await;
            }
        })
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://127.0.0.1:{port}/backchannel-logout");
    let started = Instant::now();
    let probe = || {
        Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::<Bytes>::from("logout_token=x"))
            .unwrap()
    };
    while client.request(probe()).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::with_capacity(logouts);
    let pace = Duration::from_secs_f64(1.0 / logout_rate as f64);
    let issued_before_logout = UnixMillis(UnixMillis::from(SystemTime::now()).0 - 5_000);
    for i in 0..logouts {
        let sid = format!("p-{i}");
        let token = logout_token(&keys, &provider, &format!("prop-{i}"), &sid);
        let request = Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::from(format!("logout_token={token}")))
            .unwrap();
        let identity = TokenIdentity {
            jti: "access",
            grant_id: None,
            tenant: "/",
            subject: "user",
            client_id: "app",
            issuer: &provider,
            session: Some(&sid),
            issued_at: issued_before_logout,
        };
        assert!(
            follower_index.check(&identity).is_ok(),
            "refused before its logout"
        );
        let response = client.request(request).await.unwrap();
        let answered = Instant::now();
        assert_eq!(response.status(), 200, "logout {i}");
        while follower_index.check(&identity).is_ok() {
            assert!(
                answered.elapsed() < Duration::from_secs(10),
                "never refused"
            );
            std::hint::spin_loop();
        }
        latencies.push(answered.elapsed());
        tokio::time::sleep(pace.saturating_sub(answered.elapsed())).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    latencies.sort();
    println!(
        "p50 {:?}  p99 {:?}  max {:?}  ({} logouts; background {} revocations/s)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len(),
        background
    );
    feed.stop();
}
