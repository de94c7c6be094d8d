//! `tollgate serve` with `store = "postgres"`, on a private PostgreSQL: state survives a restart
//! of the server, a stopped database is `503`s that end by themselves when it returns, and an
//! unreachable database at start is one clear line and exit status 1.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tollgate_postgres::testing::PostgresServer;

fn postgres_config(dir: &std::path::Path, url: &str) -> String {
    format!(
        "store = \"postgres\"\n{}\n[postgres]\nurl = \"{url}\"\npool_size = 4\n",
        config(dir)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_a_restart_and_a_stopped_database_is_503_until_it_returns() {
    let postgres = PostgresServer::start_private();
    let dir = tempfile::tempdir().unwrap();
    let config = postgres_config(dir.path(), postgres.url());
    let server = Server::start(dir.path(), &config);
    let http = http();

    let revoked = service_token(&server).await;
    let kept = service_token(&server).await;
    let (status, _) = post_form(
        &http,
        &server.url("/connect/revocation"),
        SVC,
        &[("token", &revoked)],
    )
    .await;
    assert_eq!(status, 200);
    server.stop();

    let server = Server::start(dir.path(), &config);
    assert_eq!(token_status(&server, &revoked).await, 401);
    assert_eq!(token_status(&server, &kept).await, 200);

    postgres.stop();
    let started = Instant::now();
    let (status, body) = post_form(
        &http,
        &server.url("/connect/revocation"),
        SVC,
        &[("token", &kept)],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Issuance too: a token that could not be recorded is not handed out.
    let (status, body) = post_form(
        &http,
        &server.url("/connect/token"),
        SVC,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, 503, "{body}");

    postgres.start_again();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = post_form(
            &http,
            &server.url("/connect/revocation"),
            SVC,
            &[("token", &kept)],
        )
        .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(token_status(&server, &kept).await, 401);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = post_form(
            &http,
            &server.url("/connect/token"),
            SVC,
            &[("grant_type", "client_credentials")],
        )
        .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "issuance never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop();
}

#[test]
fn an_unreachable_database_at_start_is_one_line_and_exit_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgresql://tollgate:hunter2@127.0.0.1:{port}/tollgate");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, postgres_config(dir.path(), &url)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("postgres:") && stderr.contains("cannot connect"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_comes_from_password_env_and_a_wrong_one_is_one_line() {
    let postgres = PostgresServer::start_private_with_password("pg-secret-1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        format!(
            "{}password_env = \"TOLLGATE_TEST_PG_PASSWORD\"\n",
            postgres_config(dir.path(), postgres.url())
        ),
    )
    .unwrap();
    let server =
        Server::start_file_with_env(&path, &[("TOLLGATE_TEST_PG_PASSWORD", "pg-secret-1")]);
    service_token(&server).await;
    server.stop();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("TOLLGATE_TEST_PG_PASSWORD", "not-the-secret")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed") && !stderr.contains("not-the-secret"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_sqlite_deployment_onto_postgres_without_losing_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Server::start(dir.path(), &config(dir.path()));
    let revoked = service_token(&sqlite).await;
    let kept = service_token(&sqlite).await;
    let (status, _) = post_form(
        &http(),
        &sqlite.url("/connect/revocation"),
        SVC,
        &[("token", &revoked)],
    )
    .await;
    assert_eq!(status, 200);
    sqlite.stop();

    let postgres = PostgresServer::start();
    let path = dir.path().join("postgres.toml");
    std::fs::write(&path, postgres_config(dir.path(), postgres.url())).unwrap();
    let migrate = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["migrate-store", "--config"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap()
    };
    let output = migrate(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("copied 2 access tokens")
            && stdout.contains("1 token and grant revocations"),
        "{stdout}"
    );
    let again = migrate(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(migrate(&["--force"]).status.success());

    // The same data directory (its generated signing key) and the database: the revocation holds.
    let server = Server::start_file(&path);
    assert_eq!(token_status(&server, &revoked).await, 401);
    assert_eq!(token_status(&server, &kept).await, 200);
    server.stop();
}
