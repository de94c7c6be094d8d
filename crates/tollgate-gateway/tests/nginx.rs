//! Forward-auth behind a real nginx (Debian's `nginx` package) configured with `auth_request`,
//! end to end: allowed (the identity reaches the upstream through nginx), refused (401 with
//! the Layer's challenge, 403 for a missing scope), and revoked through a real Redis.
//!
//! Needs `nginx` (on the `PATH`, in `/usr/sbin`, or named by `TOLLGATE_NGINX`) and
//! `redis-server`: a missing one fails the test with a message saying so.

mod support;

use http::StatusCode;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::*;
use tollgate_core::{RevocationEvent, UnixMillis};
use tollgate_redis::testing::RedisServer;
use tollgate_redis::wire::Keys;

/// `contrib/nginx-forward-auth.conf`, which the README shows.
fn shipped_snippet() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/nginx-forward-auth.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_shows_the_shipped_snippet() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let docs = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/gateway.md"),
    )
    .unwrap();
    // Its directives, comments aside, stand in the README or the gateway guide verbatim.
    let body: String = shipped_snippet()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        readme.contains(&body) || docs.contains(&body),
        "README.md / docs/gateway.md do not show contrib/nginx-forward-auth.conf:\n{body}"
    );
}

/// An nginx of the test's own, on a free port, proxying as the shipped snippet says.
struct Nginx {
    port: u16,
    _process: support::nginx::Nginx,
}

impl Nginx {
    fn start(gateway: std::net::SocketAddr, upstream: std::net::SocketAddr) -> Nginx {
        let port = support::nginx::free_port();
        // The snippet the README shows, as shipped, with this test's addresses.
        let snippet = shipped_snippet()
            .replace("http://orders", &format!("http://{upstream}"))
            .replace("127.0.0.1:8000", &gateway.to_string());
        let server =
            format!("    server {{\n        listen 127.0.0.1:{port};\n{snippet}\n    }}\n");
        Nginx {
            port,
            _process: support::nginx::Nginx::start(tempfile::tempdir().unwrap(), &server, &[port]),
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

#[tokio::test]
async fn forward_auth_behind_nginx_auth_request() {
    // Fail first, with the message saying what is missing, before starting anything.
    support::nginx::nginx_binary();
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&format!(
            "[revocations]\nredis_url = \"{}\"\n[forward_auth]\npath = \"/auth\"\nproxy = \"nginx\"\n\
             [[routes]]\nprefix = \"/orders\"\nscopes = [\"orders:read\"]\n\
             [[routes]]\nprefix = \"/health\"\npublic = true\n",
            redis.url()
        ))
        .await;
    let start = Instant::now();
    while send(gw.ops_addr(), "GET", "/readyz", &[]).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gateway never ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nginx = Nginx::start(gw.local_addr(), up.addr);
    let n = nginx.addr();
    let token = fx.token(|c| c.scope = "orders:read".into());
    let auth = bearer(&token);

    // Allowed: the identity goes to the upstream in the headers nginx copies from the answer;
    // every client copy, of every identity header, in any spelling, is overwritten or cleared
    // (the token has no tenant and no roles: those headers are absent), and so are the
    // method-override headers.
    let a = send(
        n,
        "GET",
        "/orders/1?page=2",
        &[
            ("authorization", &auth),
            ("x-auth-subject", "mallory"),
            ("x-auth-client-id", "admin-console"),
            ("x-auth-tenant", "/"),
            ("x-auth-scopes", "orders:write"),
            ("x-auth-roles", "admin"),
            ("x-auth-token-id", "forged"),
            ("x_auth_roles", "admin"),
            ("x-http-method-override", "DELETE"),
            ("x-method-override", "DELETE"),
            ("proxy", "http://evil.example"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = a.echoed();
    assert_eq!(seen["path"], "/orders/1?page=2");
    let headers = &seen["headers"];
    assert_eq!(headers["x-auth-subject"], "alice", "{headers}");
    assert_eq!(headers["x-auth-client-id"], "app", "{headers}");
    assert_eq!(headers["x-auth-scopes"], "orders:read", "{headers}");
    let jti = headers["x-auth-token-id"].as_str().unwrap();
    assert!(jti != "forged" && !jti.is_empty(), "{headers}");
    for absent in [
        "x-auth-tenant",
        "x-auth-roles",
        "x_auth_roles",
        "x-http-method-override",
        "x-method-override",
        "proxy",
    ] {
        assert!(
            headers.get(absent).is_none(),
            "{absent} reached the upstream: {headers}"
        );
    }
    assert_eq!(send(n, "GET", "/health", &[]).await.status, StatusCode::OK);

    // Refused: nginx passes the 401 and its WWW-Authenticate, and the 403.
    let a = send(n, "GET", "/orders/1", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"tollgate\"")
    );
    let a = send(n, "GET", "/orders/1", &[("authorization", "Bearer a.b.c")]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let no_scope = fx.token(|_| {});
    let a = send(
        n,
        "GET",
        "/orders/1",
        &[("authorization", &bearer(&no_scope))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(n, "GET", "/elsewhere", &[("authorization", &auth)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Revoked through Redis.
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let mut connection = tollgate_redis::RedisTarget::new(&redis.url())
        .unwrap()
        .connect(Duration::from_secs(5))
        .await
        .unwrap();
    tollgate_redis::publish(
        &mut connection,
        &Keys::default(),
        &[RevocationEvent::Token {
            jti: claims["jti"].as_str().unwrap().to_owned(),
            expires_at: UnixMillis::from(std::time::SystemTime::now() + Duration::from_secs(3600)),
        }],
    )
    .await
    .unwrap();
    let start = Instant::now();
    loop {
        let a = send(n, "GET", "/orders/1", &[("authorization", &auth)]).await;
        if a.status == StatusCode::UNAUTHORIZED {
            assert!(a.header("www-authenticate").unwrap().contains("revoked"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the revoked token still passes nginx"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(nginx);
    gw.shutdown().await;
}
