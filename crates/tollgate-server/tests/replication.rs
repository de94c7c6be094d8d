//! `[replication]` and `tollgate revoke`, across processes and a private Redis: a revocation made
//! at `tollgate serve` reaches a Layer that only follows the stream (in this test's process),
//! `tollgate revoke` reaches both, its `--issuer` and `--session` cut off exactly the tokens
//! they name, a wrong password stops both commands with one line, and a revocation committed
//! while Redis was down is published once it is back; and all of it through a Redis Sentinel
//! failover, without a restart.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::following::{DEADLINE, FollowingApi};
use support::*;
use tollgate_core::{RevocationIndex, TokenIdentity, UnixMillis};
use tollgate_redis::testing::{RedisServer, SentinelSet};
use tollgate_redis::{Follower, RedisTarget};

/// The demo configuration with a `[replication]` table appended.
fn replicated_config(dir: &std::path::Path, replication: &str) -> String {
    format!("{}\n[replication]\n{replication}", config(dir))
}

/// Waits until the token service's introspection answers `want` (200 active, 401 not).
async fn wait_for_introspection(server: &Server, token: &str, want: u16, what: &str) {
    let start = Instant::now();
    loop {
        let status = token_status(server, token).await;
        if status == want {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: the token service still answers {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `tollgate <args>` with `env`, with no Redis password from this process's environment.
fn tollgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .args(args)
        .env_remove("TOLLGATE_REDIS_PASSWORD")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run tollgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failure printed exactly one line, `tollgate: ...`, and returns it.
fn one_line_failure(output: &Output, what: &str) -> String {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{what}: succeeded: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "{what}: printed {:?}",
        text(&output.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: {stderr}");
    assert!(lines[0].starts_with("tollgate: "), "{what}: {stderr}");
    lines[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_layer_in_another_process_and_revoke_reaches_both() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &replicated_config(dir.path(), &format!("redis_url = {:?}\n", redis.url())),
    );
    let api = FollowingApi::start(&redis.url(), &server).await;

    // Issued by `tollgate serve`, accepted by the Layer; revoked at the token service (RFC
    // 7009), refused by the Layer once the event has come through Redis.
    let token = service_token(&server).await;
    api.wait_for(&token, 200, "a fresh token").await;
    let (status, _) = post_form(
        &http(),
        &server.url("/connect/revocation"),
        SVC,
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    api.wait_for(&token, 401, "a revoked token").await;

    // A cutoff from `tollgate revoke`, which exists only in the stream: the Layer refuses the
    // client's earlier tokens, and so does the token service, which follows the stream too.
    let earlier = service_token(&server).await;
    api.wait_for(&earlier, 200, "a fresh token").await;
    assert_eq!(token_status(&server, &earlier).await, 200);
    let output = tollgate(&["revoke", "--redis", &redis.url(), "--client", "svc"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(
        printed.starts_with("published cutoff client \"svc\" issued before ")
            && printed
                .trim_end()
                .ends_with(&format!(" to {}", redis.url()))
            && printed.lines().count() == 1,
        "{printed}"
    );
    api.wait_for(&earlier, 401, "a token cut off by `tollgate revoke`")
        .await;
    wait_for_introspection(
        &server,
        &earlier,
        401,
        "a token cut off by `tollgate revoke`",
    )
    .await;

    // A subject cutoff taken from the configuration's [replication] table; a token issued after
    // a cutoff is not touched by it.
    let later = service_token(&server).await;
    api.wait_for(&later, 200, "a token issued after the cutoff")
        .await;
    let config = dir.path().join("tollgate.toml");
    let output = tollgate(
        &[
            "revoke",
            "--config",
            config.to_str().unwrap(),
            "--subject",
            "svc",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with("published cutoff subject \"svc\" issued before "),
        "{}",
        text(&output.stdout)
    );
    api.wait_for(&later, 401, "a token cut off by subject")
        .await;
    wait_for_introspection(&server, &later, 401, "a token cut off by subject").await;
    server.stop();
}

/// `tollgate serve` (its relay and follower) and `tollgate revoke` on Redis Sentinel follow a
/// failover: after the primary dies, without a restart, a revocation at the token service and
/// one from `tollgate revoke` reach a Layer that follows the stream, and the token service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_revoke_follow_a_sentinel_failover() {
    let mut set = tokio::task::spawn_blocking(|| SentinelSet::start(Duration::ZERO))
        .await
        .unwrap();
    let url = set.url();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &replicated_config(dir.path(), &format!("redis_url = {url:?}\n")),
    );
    let api = FollowingApi::start(&url, &server).await;
    let revoke_at_the_service = |token: String| {
        let server = &server;
        async move {
            let (status, _) = post_form(
                &http(),
                &server.url("/connect/revocation"),
                SVC,
                &[("token", token.as_str())],
            )
            .await;
            assert_eq!(status, 200);
        }
    };
    let before = service_token(&server).await;
    api.wait_for(&before, 200, "a fresh token").await;
    revoke_at_the_service(before.clone()).await;
    api.wait_for(&before, 401, "a token revoked before the failover")
        .await;

    let old = set.kill_primary();
    tokio::task::block_in_place(|| set.wait_failover(old, Duration::from_secs(20)));

    let after = service_token(&server).await;
    api.wait_for(&after, 200, "a token issued after the failover")
        .await;
    revoke_at_the_service(after.clone()).await;
    api.wait_for(&after, 401, "a token revoked after the failover")
        .await;
    let earlier = service_token(&server).await;
    api.wait_for(&earlier, 200, "a fresh token").await;
    let output = tollgate(&["revoke", "--redis", &url, "--client", "svc"], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout)
            .trim_end()
            .ends_with(&format!(" to {url}")),
        "{}",
        text(&output.stdout)
    );
    api.wait_for(
        &earlier,
        401,
        "a token cut off by `tollgate revoke` after the failover",
    )
    .await;
    wait_for_introspection(
        &server,
        &earlier,
        401,
        "a token cut off by `tollgate revoke` after the failover",
    )
    .await;
    server.stop();
}

/// A token of another identity provider, as a follower's index judges it: issued a minute ago.
fn foreign_token<'a>(issuer: &'a str, subject: &'a str, session: &'a str) -> TokenIdentity<'a> {
    let issued_at = UnixMillis::from(std::time::SystemTime::now()).0 - 60_000;
    TokenIdentity {
        jti: "jti",
        grant_id: None,
        tenant: "/",
        subject,
        client_id: "app",
        issuer,
        session: Some(session),
        issued_at: UnixMillis(issued_at),
    }
}

/// Runs `tollgate revoke --redis <url> <args>`, asserts it printed `published <what> ...`.
fn revoke_ok(redis: &str, args: &[&str], what: &str) {
    let mut all = vec!["revoke", "--redis", redis];
    all.extend_from_slice(args);
    let output = tollgate(&all, &[]);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        text(&output.stderr)
    );
    let printed = text(&output.stdout);
    assert!(
        printed.starts_with(&format!("published {what} issued before ")),
        "{args:?}: {printed}"
    );
}

/// `--issuer` limits a cutoff to one identity provider's tokens (two providers' user `1234`
/// are two people), `--session` cuts off a session (`sid`), of every issuer or of one; a
/// follower in this process judges tokens of two issuers by what the binary published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_cuts_off_one_issuers_subject_and_sessions() {
    let redis = RedisServer::start();
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(RedisTarget::new(&redis.url()).unwrap(), index.clone())
        .start()
        .await
        .unwrap();
    assert!(
        feed.wait_synced(DEADLINE).await,
        "the follower never synced"
    );
    let (a, b) = ("https://a.example", "https://b.example/realms/x");
    let refused = |token: &TokenIdentity<'_>| index.check(token).is_err();
    let wait_refused = |token: TokenIdentity<'static>, what: &'static str| {
        let index = index.clone();
        async move {
            let start = Instant::now();
            while index.check(&token).is_ok() {
                assert!(start.elapsed() < DEADLINE, "{what}: still accepted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    revoke_ok(
        &redis.url(),
        &["--issuer", a, "--subject", "1234"],
        "cutoff subject \"1234\" of issuer \"https://a.example\"",
    );
    wait_refused(foreign_token(a, "1234", "s-a"), "a's user 1234").await;
    assert!(!refused(&foreign_token(b, "1234", "s-b")), "b's user 1234");
    assert!(!refused(&foreign_token(a, "5678", "s-a")), "a's other user");

    revoke_ok(
        &redis.url(),
        &["--session", "s-everywhere"],
        "cutoff session \"s-everywhere\"",
    );
    wait_refused(foreign_token(b, "9", "s-everywhere"), "b's session").await;
    assert!(
        refused(&foreign_token(a, "9", "s-everywhere")),
        "a's session"
    );
    assert!(
        !refused(&foreign_token(b, "9", "s-other")),
        "another session"
    );

    revoke_ok(
        &redis.url(),
        &["--issuer", b, "--session", "s-1"],
        "cutoff session \"s-1\" of issuer \"https://b.example/realms/x\"",
    );
    wait_refused(foreign_token(b, "9", "s-1"), "b's session s-1").await;
    assert!(!refused(&foreign_token(a, "9", "s-1")), "a's session s-1");

    revoke_ok(
        &redis.url(),
        &["--issuer", b, "--all"],
        "cutoff all of issuer \"https://b.example/realms/x\"",
    );
    wait_refused(foreign_token(b, "9", "s-2"), "every token of b").await;
    assert!(!refused(&foreign_token(a, "9", "s-2")), "a's tokens");
    assert_eq!(feed.status().refused, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_serve_and_revoke_with_one_line() {
    let redis = RedisServer::start_with_password("right-password");
    let port = redis.port();
    let dir = tempfile::tempdir().unwrap();

    // `serve`, with the password from the environment: refused before serving.
    let config = replicated_config(
        dir.path(),
        &format!(
            "redis_url = \"redis://127.0.0.1:{port}/\"\npassword_env = \"TEST_REDIS_PASSWORD\"\n"
        ),
    );
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("TEST_REDIS_PASSWORD", "wrong-password")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < DEADLINE,
            "tollgate serve did not stop on a wrong Redis password"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("wrong-password"), "{stderr}");
    assert!(!stderr.contains("tollgate is serving"), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(
            format!(
                "tollgate: Redis at redis://:***@127.0.0.1:{port}/ refused the credentials \
                 (check the password)"
            )
            .as_str()
        ),
        "{stderr}"
    );

    // `revoke`, with the password in the URL, then from TOLLGATE_REDIS_PASSWORD.
    let url = format!("redis://:wrong-password@127.0.0.1:{port}/");
    let output = tollgate(&["revoke", "--redis", &url, "--all"], &[]);
    let line = one_line_failure(&output, "revoke with a wrong password in the URL");
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(!line.contains("wrong-password"), "{line}");
    assert_eq!(output.status.code(), Some(1));
    let url = format!("redis://127.0.0.1:{port}/");
    let output = tollgate(
        &["revoke", "--redis", &url, "--subject", "alice"],
        &[("TOLLGATE_REDIS_PASSWORD", "wrong-password")],
    );
    let line = one_line_failure(&output, "revoke with a wrong TOLLGATE_REDIS_PASSWORD");
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(!line.contains("wrong-password"), "{line}");

    // And the right one works.
    let output = tollgate(
        &["revoke", "--redis", &url, "--subject", "alice"],
        &[("TOLLGATE_REDIS_PASSWORD", "right-password")],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains("right-password"));
}

#[test]
fn revoke_argument_errors_are_one_line() {
    // Nothing listens on port 1: no case below may get as far as connecting, but if one did it
    // would fail rather than publish somewhere.
    let redis = "redis://127.0.0.1:1/";
    let cases: &[(&[&str], &str)] = &[
        (&["--redis", redis], "--jti"),
        (&["--subject", "alice"], "--redis"),
        (
            &["--redis", redis, "--all", "--subject", "alice"],
            "--subject",
        ),
        (&["--redis", redis, "--jti", "j1"], "--expires-at"),
        (
            &["--redis", redis, "--subject", "a", "--expires-at", "1"],
            "--expires-at",
        ),
        (
            &["--redis", redis, "--all", "--before", "yesterday"],
            "--before",
        ),
        (
            &["--redis", redis, "--jti", "j1", "--expires-at", "soon"],
            "--expires-at",
        ),
        (
            &[
                "--redis",
                redis,
                "--jti",
                "j1",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            "has passed",
        ),
        (
            &[
                "--redis",
                redis,
                "--jti",
                "a\u{1}b",
                "--expires-at",
                "4102444800",
            ],
            "control character",
        ),
        (&["--redis", redis, "--tenant", "Acme"], "--tenant"),
        (
            &["--redis", "http://:secret@x/", "--all"],
            "invalid Redis URL",
        ),
        (
            &["--redis", redis, "--all", "--key-prefix", "a{b"],
            "--key-prefix",
        ),
        (
            &["--config", "/nonexistent/tollgate.toml", "--all"],
            "cannot read",
        ),
        (&["--redis", redis, "--all"], "127.0.0.1:1"),
        (
            &[
                "--redis",
                redis,
                "--issuer",
                "https://a.example",
                "--jti",
                "j1",
                "--expires-at",
                "4102444800",
            ],
            "'--issuer <ISS>' cannot be used with",
        ),
        (
            &["--redis", redis, "--issuer", "https://a.example"],
            "--session",
        ),
        (
            &["--redis", redis, "--issuer", "https://a.example x", "--all"],
            "--issuer: issuer contains whitespace",
        ),
        (
            &["--redis", redis, "--issuer", "", "--all"],
            "--issuer: empty issuer",
        ),
        (
            &["--redis", redis, "--session", "s", "--subject", "a"],
            "cannot be used with",
        ),
        (
            &["--redis", redis, "--session", "s", "--expires-at", "1"],
            "--expires-at",
        ),
        (
            &["--redis", redis, "--session", "a\u{1}b"],
            "--session: session contains a control character",
        ),
    ];
    for (args, expect) in cases {
        let mut all = vec!["revoke"];
        all.extend_from_slice(args);
        let output = tollgate(&all, &[]);
        let line = one_line_failure(&output, &format!("{args:?}"));
        assert!(line.contains(expect), "{args:?}: {line}");
        assert!(!line.contains("secret"), "{args:?}: {line}");
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{args:?}: {:?}",
            output.status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_committed_while_redis_is_down_is_published_when_it_is_back() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &replicated_config(dir.path(), &format!("redis_url = {:?}\n", redis.url())),
    );
    let api = FollowingApi::start(&redis.url(), &server).await;
    let token = service_token(&server).await;
    api.wait_for(&token, 200, "a fresh token").await;

    redis.kill();
    // The store is the source of truth: the revocation is committed without Redis.
    let (status, _) = post_form(
        &http(),
        &server.url("/connect/revocation"),
        SVC,
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(token_status(&server, &token).await, 401);

    // An empty Redis on the same port: the relay publishes what it missed, the follower loads it.
    redis.restart();
    api.wait_for(&token, 401, "a token revoked while Redis was down")
        .await;
    server.stop();
}
