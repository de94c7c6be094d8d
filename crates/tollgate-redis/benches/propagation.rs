//! Propagation: from the `200` of `/connect/revocation` at a `tollgate serve` process to the
//! first refusal by a Layer's index in another process (this one), which follows the same Redis.
//! Revocations are sent at a steady rate (default 1,000/s for 30 s); the index is watched in a
//! tight loop, so the figure is what a Layer's `check` would see.
//!
//! Run: `benches/replication.sh` (builds the release binary, then runs this with
//! `TOLLGATE_BIN=target/release/tollgate`). `RATE` and `PROPAGATION_SECONDS` override the load.

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_core::RevocationIndex;
use tollgate_redis::testing::RedisServer;
use tollgate_redis::{Follower, RedisTarget};

type HttpClient = Client<HttpConnector, Full<Bytes>>;
const BASIC: &str = "svc:svc-secret-0123456789";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &std::path::Path, redis_url: &str, port: u16) -> Server {
    let bin = std::env::var_os("TOLLGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/tollgate"));
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p tollgate-server` (or benches/replication.sh)",
        bin.display()
    );
    let demo = std::fs::read_to_string(root().join("examples/tollgate.toml")).unwrap();
    let config: String = demo
        .lines()
        .map(|line| {
            if line.starts_with("listen =") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else if line.starts_with("issuer =") {
                format!("issuer = \"http://127.0.0.1:{port}\"")
            } else if line.starts_with("data_dir =") {
                format!("data_dir = \"{}\"", dir.join("data").display())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = format!("{config}\n\n[replication]\nredis_url = \"{redis_url}\"\n");
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("tollgate.log")).unwrap();
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Server(child)
}

async fn post(client: &HttpClient, url: &str, body: String) -> (u16, Bytes) {
    let basic = base64::engine::general_purpose::STANDARD.encode(BASIC);
    let request = http::Request::post(url)
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
        Err(_) => (0, Bytes::new()),
    }
}

/// The `jti` inside a JWT (payload not verified: the server just made it).
fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let rate = env_or("RATE", 1000);
    let seconds = env_or("PROPAGATION_SECONDS", 30);
    let total = (rate * seconds) as usize;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = start_server(dir.path(), &redis.url(), port);
    let base = format!("http://127.0.0.1:{port}");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(20);
    while post(
        &client,
        &format!("{base}/connect/token"),
        "grant_type=client_credentials".into(),
    )
    .await
    .0 != 200
    {
        assert!(Instant::now() < deadline, "tollgate serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The Layer's side: an index fed only through Redis.
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(RedisTarget::new(&redis.url()).unwrap(), index.clone())
        .start()
        .await
        .unwrap();
    assert!(feed.wait_synced(Duration::from_secs(10)).await);

    // Tokens to revoke, issued up front.
    let mut tokens = Vec::with_capacity(total);
    let body = "grant_type=client_credentials&access-token-lifetime=3600";
    while tokens.len() < total {
        let batch: Vec<_> = (0..64.min(total - tokens.len()))
            .map(|_| {
                let (client, url) = (client.clone(), format!("{base}/connect/token"));
                tokio::spawn(async move { post(&client, &url, body.into()).await })
            })
            .collect();
        for handle in batch {
            let (status, body) = handle.await.unwrap();
            assert_eq!(status, 200);
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            tokens.push(json["access_token"].as_str().unwrap().to_owned());
        }
    }
    println!("issued {total} tokens; revoking {rate}/s for {seconds} s");

    // jti -> when its revocation was answered 200 (None until then).
    let pending: Arc<Mutex<HashMap<String, Option<Instant>>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let watching = {
        let (pending, latencies, index) = (pending.clone(), latencies.clone(), index.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen = 0;
            while seen < total {
                let mut map = pending.lock().unwrap();
                map.retain(|jti, answered| {
                    if !index.is_token_revoked(jti) {
                        return true;
                    }
                    // Seen before the 200 reached us: the follower was first; count it as 0.
                    let latency = answered.map(|at| at.elapsed()).unwrap_or_default();
                    latencies.lock().unwrap().push(latency);
                    seen += 1;
                    false
                });
                drop(map);
                // A fifth of a millisecond of resolution, without spinning a core away from the
                // processes being measured.
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut sends = Vec::with_capacity(total);
    for (i, token) in tokens.into_iter().enumerate() {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let jti = jti(&token);
        pending.lock().unwrap().insert(jti.clone(), None);
        let (client, pending, url) = (
            client.clone(),
            pending.clone(),
            format!("{base}/connect/revocation"),
        );
        sends.push(tokio::spawn(async move {
            let (status, _) = post(&client, &url, format!("token={token}")).await;
            let answered = Instant::now();
            if let Some(slot) = pending.lock().unwrap().get_mut(&jti) {
                *slot = Some(answered);
            }
            status
        }));
    }
    let mut failed = 0;
    for send in sends {
        failed += usize::from(send.await.unwrap() != 200);
    }
    let sent_in = started.elapsed();
    tokio::time::timeout(Duration::from_secs(30), watching)
        .await
        .expect("some revocations never reached the follower")
        .unwrap();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "sent {total} revocations in {:.1} s ({:.0}/s), non-200: {failed}",
        sent_in.as_secs_f64(),
        total as f64 / sent_in.as_secs_f64()
    );
    println!(
        "propagation, 200 -> refused by the other process's index: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
}
