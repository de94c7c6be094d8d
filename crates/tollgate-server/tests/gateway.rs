//! `tollgate gateway` as operators run it, beside `tollgate serve`, both following one private
//! Redis: a token issued by `serve` passes the gateway (keys from `serve`'s JWKS URL), is
//! refused once revoked at `serve`, the gateway stops cleanly on SIGTERM, and a bad
//! configuration is one line naming file, line and key.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::gateway::{start_gateway, status, upstream, wait_ready};
use support::*;
use tollgate_redis::testing::RedisServer;

const ISSUER: &str = "http://127.0.0.1:8080";

#[tokio::test]
async fn a_revocation_at_serve_is_refused_by_the_gateway() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &format!(
            "{}\n[replication]\nredis_url = {:?}\n",
            config(dir.path()),
            redis.url()
        ),
    );
    let upstream = upstream().await;
    let gateway_toml = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = [\"{ISSUER}\"]\n\
             [keys]\njwks_url = \"{}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n\
             [revocations]\nredis_url = {:?}\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{upstream}\"\n[[routes]]\nprefix = \"/\"\n",
            server.url("/.well-known/jwks.json"),
            redis.url(),
        ),
    )
    .unwrap();
    let gateway = start_gateway(&gateway_toml);
    wait_ready(&gateway).await;

    let token = service_token(&server).await;
    let url = format!("{}/orders", gateway.base);
    assert_eq!(status(&url, Some(&token)).await, 200);
    assert_eq!(status(&url, None).await, 401);
    let (revoked, _) = post_form(
        &http(),
        &server.url("/connect/revocation"),
        SVC,
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(revoked, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&url, Some(&token)).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the revoked token still passes the gateway"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fresh = service_token(&server).await;
    assert_eq!(status(&url, Some(&fresh)).await, 200);

    // SIGTERM: a clean exit.
    let mut gateway = gateway;
    let pid = gateway.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = gateway.child.try_wait().unwrap() {
            assert!(exit.success(), "gateway exited with {exit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
}

/// The README's demo of the gateway beside the token service, with the files it uses:
/// `examples/tollgate.toml` served with `--redis`, and `examples/gateway.toml` (their fixed ports
/// replaced by free ones): alice's token reads userinfo through the gateway until it is revoked
/// at the token service.
#[tokio::test]
async fn the_demo_files_show_a_revocation_refused_at_the_gateway() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The demo's issuer URL is where it listens, and the gateway finds the keys through it: one
    // free port stands for 8080 in both files.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let here = format!("127.0.0.1:{port}");
    let serve_toml = dir.path().join("tollgate.toml");
    let demo_serve =
        config(dir.path()).replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:8080\"");
    std::fs::write(&serve_toml, demo_serve.replace("127.0.0.1:8080", &here)).unwrap();
    let server = Server::start_file_with(&serve_toml, &["--redis", &redis.url()], &[]);
    let demo = include_str!("../../../examples/gateway.toml");
    let gateway_toml = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_toml,
        demo.replace("127.0.0.1:8000", "127.0.0.1:0")
            .replace("127.0.0.1:9090", "127.0.0.1:0")
            .replace("redis://127.0.0.1:6390/", &redis.url())
            .replace("127.0.0.1:8080", &here),
    )
    .unwrap();
    let gateway = start_gateway(&gateway_toml);
    wait_ready(&gateway).await;
    let (code, body) = post_form(
        &http(),
        &server.url("/connect/token"),
        INTEGRATION,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
            ("scope", "openid profile"),
        ],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let userinfo = format!("{}/connect/userinfo", gateway.base);
    assert_eq!(status(&userinfo, Some(&token)).await, 200);
    assert_eq!(
        status(&format!("{}/connect/token", gateway.base), Some(&token)).await,
        403
    );
    let (revoked, _) = post_form(
        &http(),
        &server.url("/connect/revocation"),
        INTEGRATION,
        &[("token", token.as_str())],
    )
    .await;
    assert_eq!(revoked, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&userinfo, Some(&token)).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the revoked token still passes the demo gateway"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(gateway);
    server.stop();
}

#[test]
fn a_bad_gateway_configuration_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        "issuer = \"i\"\naudience = [\"a\"]\n[keys]\njwks_url = \"http://127.0.0.1:1/jwks\"\n\
         [[routes]]\nprefix = \"/x\"\nscopes = [\"a b\"]\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["gateway", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "tollgate: {}:6:10: routes[0].scopes: ",
            path.display()
        )),
        "{stderr}"
    );
}
