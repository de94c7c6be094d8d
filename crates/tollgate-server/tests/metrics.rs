//! `[metrics]`: the real binary serves Prometheus text on its own listener, never on the token
//! service's; its counters equal the traffic sent; with `[replication]` it reports the relay and
//! the follower; a bad `[metrics]` table is a one-line configuration error.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::metrics::{Scrape, metrics_base, scrape};
use support::*;
use tollgate_redis::testing::RedisServer;

/// The demo configuration with a metrics listener on a free port.
fn metered_config(dir: &std::path::Path) -> String {
    format!("{}\n[metrics]\nlisten = \"127.0.0.1:0\"\n", config(dir))
}

async fn batch_revoke_client(server: &Server, admin: &str, client: &str) -> u64 {
    let response = http()
        .post(server.url("/api/v2/identity/token/batch-revocation"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "creationBefore": null, "clientId": client }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_equal_the_traffic_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &metered_config(dir.path()));
    let metrics = metrics_base(&server);
    let http = http();

    // N client-credentials tokens, and one password token for the admin.
    const N: usize = 5;
    let mut tokens = Vec::new();
    for _ in 0..N {
        tokens.push(service_token(&server).await);
    }
    let admin = password_token(&server, "admin", "admin-password", "/").await;
    let admin = admin["access_token"].as_str().unwrap().to_owned();

    // M revocations (RFC 7009) of the service's own tokens.
    const M: usize = 2;
    for token in &tokens[..M] {
        let (status, _) = post_form(
            &http,
            &server.url("/connect/revocation"),
            SVC,
            &[("token", token)],
        )
        .await;
        assert_eq!(status, 200);
    }

    // A batch revocation: it counts the N - M live service tokens.
    let counted = batch_revoke_client(&server, &admin, "svc").await;
    assert_eq!(counted, (N - M) as u64);

    // Failures: a wrong secret (401), no grant_type (400), an unknown grant (400).
    let token_url = server.url("/connect/token");
    let (status, _) = post_form(
        &http,
        &token_url,
        ("svc", "wrong-secret"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post_form(&http, &token_url, SVC, &[]).await;
    assert_eq!(status, 400);
    let (status, _) = post_form(&http, &token_url, SVC, &[("grant_type", "magic")]).await;
    assert_eq!(status, 400);

    // The public listener has no /metrics: it is a path like any other it does not serve.
    for path in ["/metrics", "/metrics?x=1", "/no/such/path"] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("tollgate_"), "{path}: {body}");
    }

    let s = scrape(&metrics).await;
    let issued = |grant: &str| {
        s.value(&format!(
            "tollgate_tokens_issued_total{{grant_type=\"{grant}\"}}"
        ))
    };
    assert_eq!(issued("client_credentials"), N as f64, "{}", s.text);
    assert_eq!(issued("password"), 1.0, "{}", s.text);
    assert_eq!(issued("refresh_token"), 0.0, "{}", s.text);
    let responses = |endpoint: &str, status: u16| {
        s.value(&format!(
            "tollgate_http_responses_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(
        responses("/connect/token", 200),
        (N + 1) as f64,
        "{}",
        s.text
    );
    assert_eq!(responses("/connect/token", 401), 1.0, "{}", s.text);
    assert_eq!(responses("/connect/token", 400), 2.0, "{}", s.text);
    assert_eq!(
        responses("/connect/revocation", 200),
        M as f64,
        "{}",
        s.text
    );
    assert_eq!(
        responses("/api/v2/identity/token/batch-revocation", 200),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(responses("unmatched", 404), 3.0, "{}", s.text);
    assert_eq!(s.value("tollgate_batch_revocations_total"), 1.0);
    assert_eq!(
        s.value("tollgate_batch_revoked_tokens_total"),
        (N - M) as f64
    );
    let committed = |kind: &str| {
        s.value(&format!(
            "tollgate_revocations_committed_total{{kind=\"{kind}\"}}"
        ))
    };
    assert_eq!(committed("token"), M as f64, "{}", s.text);
    assert_eq!(committed("cutoff"), 1.0, "{}", s.text);
    assert_eq!(committed("grant"), 0.0, "{}", s.text);
    // Every revocation is a durable commit, and so is the admin's refresh token.
    let commits = s.value("tollgate_store_commits_total{result=\"ok\"}");
    assert!(commits >= (M + 2) as f64, "{}", s.text);
    assert_eq!(
        s.value("tollgate_store_commits_total{result=\"error\"}"),
        0.0
    );
    assert_eq!(
        s.value("tollgate_store_commit_duration_seconds_count"),
        commits,
        "{}",
        s.text
    );
    assert_eq!(
        s.value("tollgate_store_commit_duration_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    // The N service tokens and the admin's are live until they expire (revoked or not).
    assert_eq!(
        s.value("tollgate_live_tokens{kind=\"access\"}"),
        (N + 1) as f64
    );
    assert_eq!(s.value("tollgate_live_tokens{kind=\"refresh\"}"), 1.0);
    // No replication, no relay or feed.
    assert!(!s.text.contains("tollgate_relay_"), "{}", s.text);
    assert!(!s.text.contains("tollgate_feed_"), "{}", s.text);
    // Bounded labels: no client id, subject or token anywhere.
    for secret in ["svc", "admin", "integration", tokens[0].as_str()] {
        assert!(
            !s.text.contains(&format!("\"{secret}\"")),
            "{secret}: {}",
            s.text
        );
    }

    // The metrics listener serves nothing else.
    let response = http
        .get(format!("{metrics}/connect/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = http
        .post(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);

    // A scrape counts nothing on the token service.
    let again = scrape(&metrics).await;
    assert_eq!(
        again.value("tollgate_http_responses_total{endpoint=\"/connect/token\",status=\"200\"}"),
        (N + 1) as f64
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_metrics_table_there_is_no_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &config(dir.path()));
    let logs = server.logs.lock().unwrap().clone();
    assert!(
        !logs.iter().any(|line| line.contains("metrics are served")),
        "{logs:?}"
    );
    let response = http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replication_the_relay_and_the_feed_are_reported() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[replication]\nredis_url = {:?}\n",
        metered_config(dir.path()),
        redis.url()
    );
    let server = Server::start(dir.path(), &config);
    let metrics = metrics_base(&server);
    let token = service_token(&server).await;
    let (status, _) = post_form(
        &http(),
        &server.url("/connect/revocation"),
        SVC,
        &[("token", &token)],
    )
    .await;
    assert_eq!(status, 200);

    // The relay publishes the revocation (its backlog is refreshed once it has recorded its
    // position) and the server's own follower applies it back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = scrape(&metrics).await;
        if s.value("tollgate_relay_published_total") >= 1.0
            && s.value("tollgate_feed_applied_total") >= 1.0
            && s.has("tollgate_relay_backlog")
            && s.value("tollgate_relay_backlog") == 0.0
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "never published, applied, and caught up: {}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s.value("tollgate_relay_healthy"), 1.0, "{}", s.text);
    assert_eq!(s.value("tollgate_feed_synced"), 1.0, "{}", s.text);
    assert_eq!(s.value("tollgate_feed_connected"), 1.0, "{}", s.text);
    assert_eq!(s.value("tollgate_feed_refusing"), 0.0, "{}", s.text);
    assert_eq!(s.value("tollgate_feed_skipped_total"), 0.0, "{}", s.text);
    assert!(s.has("tollgate_feed_lag_seconds"), "{}", s.text);
    assert!(s.has("tollgate_feed_since_contact_seconds"), "{}", s.text);
    assert!(
        s.text.contains("# TYPE tollgate_feed_lag_seconds gauge"),
        "{}",
        s.text
    );

    // An entry of a newer format version: the server's follower stops at it (the default
    // `on_unreadable`), and the metrics say so.
    let mut redis_connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("XADD")
        .arg(&tollgate_redis::wire::Keys::default().stream)
        .arg("*")
        .arg("3")
        .arg("1763805600123 T 4000000000000 from-a-newer-tollgate")
        .query_async::<String>(&mut redis_connection)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrape(&metrics).await.value("tollgate_feed_refusing") != 1.0 {
        assert!(Instant::now() < deadline, "the follower never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        scrape(&metrics).await.value("tollgate_feed_skipped_total"),
        0.0
    );
    server.stop();
}

/// `tollgate serve` on `config`, which must fail: its last line of standard error.
fn serve_fails(dir: &std::path::Path, config: &str) -> String {
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.lines().last().unwrap_or_default().to_owned()
}

#[test]
fn a_bad_metrics_table_is_one_line_naming_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(dir.path());
    let line = base.lines().count() + 2;

    let err = serve_fails(
        dir.path(),
        &format!("{base}[metrics]\nlisten = \"localhost:9464\"\n"),
    );
    assert!(err.starts_with("tollgate: "), "{err}");
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");
    assert!(
        err.contains("metrics.listen: invalid socket address"),
        "{err}"
    );

    let err = serve_fails(
        dir.path(),
        &format!("{base}[metrics]\naddress = \"127.0.0.1:1\"\n"),
    );
    assert!(
        err.contains(&format!("bad.toml:{line}:")) && err.contains("address"),
        "{err}"
    );

    // Taken already: the start fails before anything is served.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let err = serve_fails(
        dir.path(),
        &format!("{base}[metrics]\nlisten = \"{address}\"\n"),
    );
    assert!(
        err.contains(&format!("cannot listen on {address} for metrics")),
        "{err}"
    );
}

/// Scrapes until `done` holds, or fails after `within` saying `what`.
async fn scrape_until(
    base: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + within;
    loop {
        let s = scrape(base).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {}", s.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_backlog_counts_revocations_committed_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[replication]\nredis_url = {:?}\n",
        metered_config(dir.path()),
        redis.url()
    );
    let server = Server::start(dir.path(), &config);
    let metrics = metrics_base(&server);
    const N: usize = 3;
    let mut tokens = Vec::new();
    for _ in 0..N {
        tokens.push(service_token(&server).await);
    }
    scrape_until(
        &metrics,
        Duration::from_secs(20),
        "the relay never ran",
        |s| s.value("tollgate_relay_healthy") == 1.0 && s.has("tollgate_relay_backlog"),
    )
    .await;

    // Redis goes away; the store keeps committing revocations, and the backlog says how many
    // wait (it read 0 here, so the documented alert on it never fired).
    redis.kill();
    for token in &tokens {
        let (status, _) = post_form(
            &http(),
            &server.url("/connect/revocation"),
            SVC,
            &[("token", token.as_str())],
        )
        .await;
        assert_eq!(status, 200);
    }
    let s = scrape_until(
        &metrics,
        Duration::from_secs(20),
        "the backlog never counted the revocations committed while Redis was down",
        |s| s.value("tollgate_relay_backlog") == N as f64,
    )
    .await;
    assert_eq!(s.value("tollgate_relay_healthy"), 0.0, "{}", s.text);

    // The periodic report says the same, in words that agree with the number.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = server.logs.lock().unwrap().clone();
        let report = logs
            .iter()
            .rev()
            .find(|line| line.contains("replication:") && line.contains("healthy=false"));
        if let Some(line) = report {
            assert!(line.contains(&format!("backlog={N}")), "{line}");
            assert!(line.contains("not yet published"), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no report of the backlog: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Redis is back (empty): the relay publishes everything, and the backlog returns to 0.
    redis.restart();
    scrape_until(
        &metrics,
        Duration::from_secs(30),
        "the backlog never returned to 0 once Redis was back",
        |s| {
            s.value("tollgate_relay_healthy") == 1.0
                && s.value("tollgate_relay_backlog") == 0.0
                && s.value("tollgate_relay_published_total") >= N as f64
        },
    )
    .await;
    server.stop();
}
