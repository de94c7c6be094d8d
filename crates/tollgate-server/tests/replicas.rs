//! Several `tollgate serve` replicas on one PostgreSQL and one Redis (both private to the test,
//! on free ports), behaving as one service: a refresh token is exchanged once across replicas,
//! batch counts stay exact while two other replicas issue, nothing acknowledged is lost when
//! PostgreSQL goes away or a replica is killed, and failures never outnumber the throttle.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::following::{DEADLINE, FollowingApi};
use support::metrics::{metrics_base, scrape};
use support::*;
use tollgate_postgres::testing::PostgresServer;
use tollgate_redis::testing::RedisServer;

/// One PostgreSQL, one Redis, one signing key, and the replicas serving on them.
struct Fleet {
    postgres: PostgresServer,
    /// A streaming standby of `postgres`, when the fleet has one.
    standby: Option<PostgresServer>,
    /// What replicas are given as `[postgres] url`.
    url: String,
    redis: RedisServer,
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Fleet {
    fn start() -> Fleet {
        Fleet::on(PostgresServer::start())
    }

    /// On a private primary with a synchronous standby, replicas naming both
    /// (`target_session_attrs=read-write`).
    fn with_synchronous_standby() -> Fleet {
        let primary = PostgresServer::start_private();
        let standby = primary.start_standby(true);
        let mut fleet = Fleet::on(primary);
        fleet.url = tollgate_postgres::testing::multi_host_url(&[&fleet.postgres, &standby]);
        fleet.standby = Some(standby);
        fleet
    }

    fn on(postgres: PostgresServer) -> Fleet {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        // Replicas sign with one key, configured: a generated one would differ per replica.
        let key = dir.path().join("signing.der");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["keygen", "--kid", "fleet", "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        Fleet {
            url: postgres.url().to_owned(),
            postgres,
            standby: None,
            redis,
            dir,
            key,
        }
    }

    /// The configuration of replica `n`: its own data directory, the shared store, feed and key.
    fn config(&self, n: usize) -> (PathBuf, String) {
        let dir = self.dir.path().join(format!("replica-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "store = \"postgres\"\n{}\n[postgres]\nurl = {:?}\n\n[replication]\nredis_url = {:?}\n\n\
             [[keys]]\nkid = \"fleet\"\nalgorithm = \"EdDSA\"\nfile = {:?}\nsigning = true\n",
            config(&dir),
            self.url,
            self.redis.url(),
            self.key.display().to_string(),
        );
        (dir, text)
    }

    fn replica(&self, n: usize) -> Server {
        let (dir, text) = self.config(n);
        Server::start(&dir, &text)
    }

    /// Replica `n` with a `[metrics]` listener on a free port.
    fn metered_replica(&self, n: usize) -> Server {
        let (dir, text) = self.config(n);
        Server::start(
            &dir,
            &format!("{text}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
        )
    }

    /// Replica `n` with `[sign_in] throttle = policy`.
    fn replica_throttled_by(&self, n: usize, policy: &str) -> Server {
        let (dir, text) = self.config(n);
        Server::start(
            &dir,
            &format!("{text}\n[sign_in]\nthrottle = \"{policy}\"\n"),
        )
    }
}

/// A refresh grant's first tokens, from `server`.
async fn refresh_grant(server: &Server) -> (String, String) {
    let body = password_token(server, "alice", "alice-password", "/Acme").await;
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn exchange(server: &Server, refresh_token: &str) -> (u16, Value) {
    post_form(
        &http(),
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// Waits until `server`'s introspection answers `want` for `token` (other replicas' revocations
/// arrive through Redis).
async fn wait_for_status(server: &Server, token: &str, want: u16, what: &str) {
    let start = Instant::now();
    loop {
        let status = token_status(server, token).await;
        if status == want {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: {} still answers {status}, not {want}",
            server.base
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_is_exchanged_once_across_replicas_and_reuse_revokes_its_family() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.replica(0), fleet.replica(1));
    for round in 0..5 {
        let (access, refresh) = refresh_grant(&a).await;
        // A token issued at one replica is known at the other.
        assert_eq!(token_status(&b, &access).await, 200, "round {round}");
        let (at_a, at_b) = tokio::join!(exchange(&a, &refresh), exchange(&b, &refresh));
        let outcomes = [at_a, at_b];
        let winners: Vec<&Value> = outcomes
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .collect();
        let losers: Vec<&Value> = outcomes
            .iter()
            .filter(|(status, _)| *status == 400)
            .map(|(_, body)| body)
            .collect();
        assert_eq!(
            (winners.len(), losers.len()),
            (1, 1),
            "round {round}: exactly one exchange wins: {outcomes:?}"
        );
        assert_eq!(losers[0]["error"], "invalid_grant", "round {round}");
        // The loser saw reuse: the whole family is revoked, the winner's new tokens included,
        // at both replicas.
        let new_access = winners[0]["access_token"].as_str().unwrap();
        let new_refresh = winners[0]["refresh_token"].as_str().unwrap();
        for server in [&a, &b] {
            wait_for_status(server, new_access, 401, "the winner's access token").await;
            wait_for_status(server, &access, 401, "the family's first access token").await;
        }
        let (status, body) = exchange(&b, new_refresh).await;
        assert_eq!(
            status, 400,
            "round {round}: the winner's refresh token: {body}"
        );
    }
    a.stop();
    b.stop();
}

/// The admin's bearer token, from `server`.
async fn admin_token(server: &Server) -> String {
    let body = password_token(server, "admin", "admin-password", "/").await;
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_counts_are_exact_while_two_other_replicas_issue() {
    let fleet = Fleet::start();
    let replicas = [fleet.replica(0), fleet.replica(1), fleet.replica(2)];
    let api = FollowingApi::start(&fleet.redis.url(), &replicas[0]).await;
    let admin = admin_token(&replicas[2]).await;

    // Two replicas issue as fast as they can, and keep every token answered 200.
    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = replicas[..2]
        .iter()
        .map(|server| {
            let (url, stop) = (server.url("/connect/token"), stop.clone());
            tokio::spawn(async move {
                let http = http();
                let mut issued = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) =
                        post_form(&http, &url, SVC, &[("grant_type", "client_credentials")]).await;
                    assert_eq!(status, 200, "{body}");
                    issued.push(body["access_token"].as_str().unwrap().to_owned());
                }
                issued
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The third replica cuts the client off while they issue.
    let response = http()
        .post(replicas[2].url("/api/v2/identity/token/batch-revocation"))
        .bearer_auth(&admin)
        .json(&json!({"clientId": "svc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut issued = Vec::new();
    for hammer in hammers {
        issued.extend(hammer.await.unwrap());
    }

    // A revocation made after the cutoff, at the same replica: once the Layer refuses it, the
    // cutoff (published before it) has reached the Layer too.
    let sentinel = service_token(&replicas[2]).await;
    let (status, _) = post_form(
        &http(),
        &replicas[2].url("/connect/revocation"),
        SVC,
        &[("token", sentinel.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    api.wait_for(&sentinel, 401, "the sentinel revocation")
        .await;

    let mut refused = 0u64;
    for token in &issued {
        match api.status(token).await {
            401 => refused += 1,
            200 => {}
            other => panic!("the Layer answered {other}"),
        }
    }
    let count = answer["count"].as_u64().expect("a count");
    assert!(
        refused > 0 && (refused as usize) < issued.len(),
        "the cut must fall inside the run: {refused} of {} refused",
        issued.len()
    );
    assert_eq!(
        count,
        refused,
        "the batch count is the number of tokens it turned from accepted to refused ({} issued)",
        issued.len()
    );
    for server in replicas {
        server.stop();
    }
}

/// Revokes `token` at `server`: the status, or 0 when no answer came.
async fn revoke(http: &reqwest::Client, server: &str, token: &str) -> u16 {
    let response = http
        .post(format!("{server}/connect/revocation"))
        .basic_auth(SVC.0, Some(SVC.1))
        .form(&[("token", token)])
        .send()
        .await;
    response.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_going_away_is_503_and_nothing_acknowledged_is_lost() {
    // A server of the test's own, whatever TOLLGATE_TEST_POSTGRES_URL says: it is stopped.
    let fleet = Fleet::on(PostgresServer::start_private());
    let server = fleet.replica(0);
    let tokens: Vec<String> = {
        let mut tokens = Vec::new();
        for _ in 0..40 {
            tokens.push(service_token(&server).await);
        }
        tokens
    };
    let base = server.base.clone();
    let acknowledged = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (acknowledged, unavailable, tokens) =
            (acknowledged.clone(), unavailable.clone(), tokens.clone());
        tokio::spawn(async move {
            let http = http();
            for token in tokens {
                loop {
                    let start = Instant::now();
                    let status = revoke(&http, &base, &token).await;
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "a request hung while PostgreSQL was away"
                    );
                    match status {
                        200 => {
                            acknowledged.lock().unwrap().insert(token.clone());
                            break;
                        }
                        503 => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => panic!("revocation answered {other}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.postgres.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet.postgres.start_again();
    // Service resumes by itself: the load finishes every revocation.
    tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("revocations resumed after PostgreSQL came back")
        .unwrap();
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "requests made while PostgreSQL was stopped were answered 503"
    );
    // Every acknowledged revocation is in PostgreSQL: a replica started now refuses them all.
    server.crash();
    let fresh = fleet.replica(1);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), tokens.len());
    for token in &acknowledged {
        assert_eq!(
            token_status(&fresh, token).await,
            401,
            "a revocation was lost"
        );
    }
    fresh.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_during_a_revocation_burst_loses_nothing_acknowledged() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.replica(0), fleet.replica(1));
    let mut tokens = Vec::new();
    for _ in 0..200 {
        tokens.push(service_token(&b).await);
    }
    let base = a.base.clone();
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let burst: Vec<_> = tokens
        .chunks(50)
        .map(|chunk| {
            let (chunk, base, acked) = (chunk.to_vec(), base.clone(), acked.clone());
            tokio::spawn(async move {
                let http = http();
                let mut acknowledged = Vec::new();
                for token in chunk {
                    if revoke(&http, &base, &token).await == 200 {
                        acked.fetch_add(1, Ordering::Relaxed);
                        acknowledged.push(token);
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Killed in the middle of the burst: some revocations acknowledged, more in flight.
    while acked.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    a.crash();
    let mut acknowledged = Vec::new();
    for part in burst {
        acknowledged.extend(part.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < tokens.len(),
        "the kill must fall inside the burst: {} of {} acknowledged",
        acknowledged.len(),
        tokens.len()
    );
    // The surviving replica refuses them (its relay publishes the whole shared outbox), and so
    // does a replica started afterwards (it reads them from PostgreSQL).
    for token in &acknowledged {
        wait_for_status(&b, token, 401, "an acknowledged revocation").await;
    }
    let c = fleet.replica(2);
    for token in &acknowledged {
        assert_eq!(token_status(&c, token).await, 401, "a revocation was lost");
    }
    b.stop();
    c.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_throttle_holds_across_replicas() {
    let fleet = Fleet::start();
    let replicas = [fleet.replica(0), fleet.replica(1), fleet.replica(2)];
    let attempt = |server: &Server, password: &'static str| {
        let url = server.url("/connect/token");
        async move {
            post_form(
                &http(),
                &url,
                INTEGRATION,
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", password),
                    ("tenant_path", "/Acme"),
                ],
            )
            .await
            .0
        }
    };
    // Wrong passwords spread over three replicas, two at each: one replica alone would have
    // seen two failures and throttled nothing. Failures add up: the five free ones are refused
    // 400, and the sixth attempt is throttled (429) at whichever replica it lands.
    let mut statuses = Vec::new();
    for n in 0..6 {
        statuses.push(attempt(&replicas[n % 3], "wrong").await);
    }
    assert_eq!(
        statuses,
        [400, 400, 400, 400, 400, 429],
        "failures across replicas add up"
    );
    // The right password waits too, at a replica that saw only two failures itself.
    assert_eq!(attempt(&replicas[1], "alice-password").await, 429);
    for server in replicas {
        server.stop();
    }
}

/// A password sign-in as `username` (whose password is `password` when right) from
/// 127.0.0.`last`; its status.
async fn sign_in_from(server: &Server, last: u8, username: &str, password: &str) -> u16 {
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    post_form(
        &http,
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sign_in_throttle_policy_holds_across_replicas() {
    let fleet = Fleet::start();
    // One user per policy: the throttle's rows stay in the shared database between them.
    for (policy, user, password) in [
        ("username", "bob", "alice-password"),
        ("username_and_address", "admin", "admin-password"),
        ("both", "alice", "alice-password"),
    ] {
        let replicas = [
            fleet.replica_throttled_by(0, policy),
            fleet.replica_throttled_by(1, policy),
        ];
        // Five wrong passwords from one address, spread over both replicas; the sixth attempt
        // is throttled at either: the keys are counted in the database.
        for n in 0..5 {
            assert_eq!(
                sign_in_from(&replicas[n % 2], 1, user, "wrong").await,
                400,
                "{policy}"
            );
        }
        assert_eq!(
            sign_in_from(&replicas[1], 1, user, password).await,
            429,
            "{policy}: the guesser's address"
        );
        // The user from another address: locked out only per username.
        let elsewhere = if policy == "username" { 429 } else { 200 };
        assert_eq!(
            sign_in_from(&replicas[0], 2, user, password).await,
            elsewhere,
            "{policy}: the user from another address"
        );
        if policy == "both" {
            // The success cleared the user's ceiling; twenty failures from five addresses, four
            // each and spread over both replicas, reach it again, and four more from a sixth
            // lengthen the wait: the user waits everywhere.
            let mut statuses = Vec::new();
            for last in 3..=8 {
                for n in 0..4 {
                    statuses.push(sign_in_from(&replicas[n % 2], last, user, "wrong").await);
                }
            }
            assert!(statuses[..20].iter().all(|s| *s == 400), "{statuses:?}");
            assert!(
                statuses.iter().all(|s| *s == 400 || *s == 429),
                "{statuses:?}"
            );
            assert_eq!(sign_in_from(&replicas[1], 9, user, password).await, 429);
        }
        for server in replicas {
            server.stop();
        }
    }
}

/// One relay publishes the shared outbox, the other stands by, and both say so; each replica's
/// `tollgate_live_tokens` counts every replica's tokens (counted in PostgreSQL), not only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_and_every_replica_counts_every_live_token() {
    let fleet = Fleet::start();
    let (a, b) = (fleet.metered_replica(0), fleet.metered_replica(1));
    let metrics = [metrics_base(&a), metrics_base(&b)];
    for _ in 0..5 {
        service_token(&a).await;
    }
    // The count runs every 15 s on each replica.
    let deadline = Instant::now() + Duration::from_secs(40);
    let a_publishes = loop {
        let scrapes = [scrape(&metrics[0]).await, scrape(&metrics[1]).await];
        let standby: Vec<f64> = scrapes
            .iter()
            .map(|s| s.value("tollgate_relay_standby"))
            .collect();
        let live: Vec<f64> = scrapes
            .iter()
            .map(|s| s.value("tollgate_live_tokens{kind=\"access\"}"))
            .collect();
        if live == [5.0, 5.0] && (standby == [0.0, 1.0] || standby == [1.0, 0.0]) {
            assert!(
                scrapes
                    .iter()
                    .all(|s| s.value("tollgate_relay_healthy") == 1.0),
                "{}",
                scrapes[1].text
            );
            break standby[0] == 0.0;
        }
        assert!(
            Instant::now() < deadline,
            "standing by {standby:?}, live access tokens {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The publishing replica is killed: the other takes the lease within the bound, and
    // publishes what is revoked there.
    let (holder, survivor, survivor_metrics) = if a_publishes {
        (a, b, &metrics[1])
    } else {
        (b, a, &metrics[0])
    };
    let token = service_token(&survivor).await;
    let api = FollowingApi::start(&fleet.redis.url(), &survivor).await;
    assert_eq!(api.status(&token).await, 200);
    holder.crash();
    let killed = Instant::now();
    assert_eq!(revoke(&http(), &survivor.base, &token).await, 200);
    while api.status(&token).await != 401 {
        assert!(
            killed.elapsed() < tollgate_postgres::TAKEOVER_BOUND,
            "no takeover within {:?}",
            tollgate_postgres::TAKEOVER_BOUND
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = killed.elapsed();
    assert_eq!(
        scrape(survivor_metrics)
            .await
            .value("tollgate_relay_standby"),
        0.0
    );
    eprintln!("the survivor published a revocation {published:?} after the holder was killed");
    survivor.stop();
}

/// The primary is killed (`SIGKILL`) in the middle of a revocation burst and its synchronous
/// standby promoted: the replica answers `503` in between, follows the multi-host URL to the new
/// primary by itself, and every revocation it acknowledged is refused by a replica started
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_standby_takes_over_and_no_acknowledged_revocation_is_lost() {
    let fleet = Fleet::with_synchronous_standby();
    let server = fleet.replica(0);
    let mut tokens = Vec::new();
    for _ in 0..120 {
        tokens.push(service_token(&server).await);
    }
    let base = server.base.clone();
    let acknowledged = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let refusals = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let burst: Vec<_> = tokens
        .chunks(30)
        .map(|chunk| {
            let (chunk, base) = (chunk.to_vec(), base.clone());
            let (acknowledged, refusals) = (acknowledged.clone(), refusals.clone());
            tokio::spawn(async move {
                let http = http();
                for token in chunk {
                    loop {
                        let start = Instant::now();
                        let status = revoke(&http, &base, &token).await;
                        assert!(
                            start.elapsed() < Duration::from_secs(15),
                            "a request hung during the failover"
                        );
                        match status {
                            200 => {
                                acknowledged.lock().unwrap().insert(token.clone());
                                break;
                            }
                            503 => {
                                refusals.lock().unwrap().push(Instant::now());
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            other => panic!("revocation answered {other}"),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Instant::now();
    fleet.postgres.kill();
    fleet.standby.as_ref().unwrap().promote();
    for part in burst {
        tokio::time::timeout(Duration::from_secs(60), part)
            .await
            .expect("the burst finished after the promotion")
            .unwrap();
    }
    let refusals = refusals.lock().unwrap().clone();
    assert!(!refusals.is_empty(), "no 503 while there was no primary");
    let last = refusals.iter().max().unwrap();
    eprintln!(
        "{} answers 503, for {:?} after the kill (promotion included)",
        refusals.len(),
        last.duration_since(killed)
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), tokens.len());
    server.crash();
    let fresh = fleet.replica(1);
    for token in &acknowledged {
        assert_eq!(
            token_status(&fresh, token).await,
            401,
            "a revocation was lost"
        );
    }
    fresh.stop();
}
