//! The findings of a black-box attack on the gateway, each over real sockets, each failing
//! without its fix. The identity and method findings use an upstream that reads headers the way
//! WSGI does (Python's own `wsgiref`, `tests/upstreams/wsgi_echo.py`: `X_Auth_Roles` and
//! `X-Auth-Roles` are one variable); the h2c smuggling one uses a real h2c-capable upstream
//! (hypercorn, installed from PyPI into a virtualenv under `target/` on first use).
//!
//! Needs `python3` with `venv` and PyPI (for hypercorn): a missing one fails with a message.

mod support;

use http::StatusCode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn upstreams_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/upstreams")
}

/// `wsgi_echo.py` on a free port.
fn wsgi_upstream() -> (SocketAddr, Process) {
    let mut child = Command::new("python3")
        .arg(upstreams_dir().join("wsgi_echo.py"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("this test needs python3 (Debian: `apt-get install python3`)");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("wsgi_echo.py printed no port: {line:?}"));
    (SocketAddr::from(([127, 0, 0, 1], port)), Process(child))
}

/// hypercorn serving `asgi_echo.py` on a free port (HTTP/1.1, h2c, and the `Upgrade: h2c`
/// handshake).
fn h2c_upstream() -> (SocketAddr, Process) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("target/gateway-venv");
    let hypercorn = venv.join("bin/hypercorn");
    if !hypercorn.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("this test needs python3 with venv (Debian: `apt-get install python3-venv`)");
        assert!(status.success(), "cannot create a virtualenv at {venv:?}");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(upstreams_dir().join("requirements.txt"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot install tests/upstreams/requirements.txt (hypercorn) from PyPI"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = Process(
        Command::new(&hypercorn)
            .args(["--bind", &format!("127.0.0.1:{port}"), "asgi_echo:app"])
            .current_dir(upstreams_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hypercorn starts"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return (addr, process);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("hypercorn did not listen on {addr}");
}

/// One upstream for every route: `/public` and `/bytes` public, `/api` protected (GET only),
/// `/any` protected (GET and DELETE), `/ws` protected.
fn config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
{extra}
[[upstreams]]
name = "app"
url = "http://{upstream}"
response_timeout = 5

[[routes]]
prefix = "/public"
public = true

[[routes]]
prefix = "/api"
methods = ["GET"]

[[routes]]
prefix = "/any"
methods = ["GET", "DELETE"]

[[routes]]
prefix = "/ws"

[[routes]]
prefix = "/bytes"
public = true
"#
    )
}

/// A response read off a raw connection: its head, and its body when it has a length.
struct Raw {
    head: String,
    body: String,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads one response (head, then `Content-Length` bytes or chunks) within 5 s.
async fn read_response(stream: &mut TcpStream) -> Raw {
    tokio::time::timeout(Duration::from_secs(5), async {
        let head = String::from_utf8_lossy(&read_until(stream, b"\r\n\r\n").await).into_owned();
        let header = |wanted: &str| {
            head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_ascii_lowercase())
            })
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            loop {
                let line = read_until(stream, b"\r\n").await;
                let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16)
                    .expect("a chunk size");
                let mut chunk = vec![0u8; size + 2];
                stream.read_exact(&mut chunk).await.unwrap();
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            let length = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(length, 0);
            stream.read_exact(&mut body).await.unwrap();
        }
        Raw {
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("a response within 5 s")
}

/// Reads up to and including `end`.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut read = Vec::new();
    let mut byte = [0u8; 1];
    while !read.ends_with(end) {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(
            n > 0,
            "closed mid-message: {:?}",
            String::from_utf8_lossy(&read)
        );
        read.push(byte[0]);
    }
    read
}

/// Sends `request` (raw bytes) on a new connection and reads the response.
async fn raw(addr: SocketAddr, request: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Findings 1 and 3: `Connection` naming identity headers, and identity headers spelt with `_`,
/// over HTTP/1.1 and h2: the WSGI upstream sees only the gateway's values.
#[tokio::test]
async fn a_client_cannot_remove_or_forge_identity_headers() {
    let (upstream, _python) = wsgi_upstream();
    let fx = Fixture::new();
    let gw = fx.start(&config(upstream, "")).await;
    let token = fx.token(|c| c.roles = vec!["user".into()]);
    let addr = gw.local_addr();
    let answer = raw(
        addr,
        &format!(
            "GET /api/me HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Connection: keep-alive, x-auth-subject, x-auth-roles\r\n\
             X_Auth_Roles: admin\r\nX-Auth_Subject: root\r\nx_auth_tenant: /\r\n\
             X_AUTH_CLIENT_ID: admin-console\r\nX_Forwarded_For: 10.0.0.1\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.head);
    let seen = json(&answer.body)["http"].clone();
    assert_eq!(seen["HTTP_X_AUTH_SUBJECT"], "alice", "{seen}");
    assert_eq!(seen["HTTP_X_AUTH_ROLES"], "user", "{seen}");
    assert_eq!(seen["HTTP_X_AUTH_CLIENT_ID"], "app", "{seen}");
    assert!(seen.get("HTTP_X_AUTH_TENANT").is_none(), "{seen}");
    assert_eq!(seen["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{seen}");

    // A public route: no identity at all, whatever the client sends.
    let answer = raw(
        addr,
        "GET /public/x HTTP/1.1\r\nHost: gw\r\nX_Auth_Subject: root\r\nX-AUTH-ROLES: admin\r\n\r\n",
    )
    .await;
    let seen = json(&answer.body)["http"].clone();
    assert!(seen.get("HTTP_X_AUTH_SUBJECT").is_none(), "{seen}");
    assert!(seen.get("HTTP_X_AUTH_ROLES").is_none(), "{seen}");

    // The same over h2 (to the gateway; the upstream hears HTTP/1).
    let request = http::Request::builder()
        .uri(format!("http://{addr}/api/me"))
        .header("authorization", bearer(&token))
        .header("x_auth_roles", "admin")
        .header("x_auth-subject", "root")
        .body(full(""))
        .unwrap();
    let response = h2c_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen = json(&String::from_utf8_lossy(&body))["http"].clone();
    assert_eq!(seen["HTTP_X_AUTH_SUBJECT"], "alice", "{seen}");
    assert_eq!(seen["HTTP_X_AUTH_ROLES"], "user", "{seen}");
    gw.shutdown().await;
}

/// Finding 10: method-override headers are removed by default, so a GET-only route's token
/// cannot make a Rack/Express-style upstream act on DELETE; under `method_override = "judge"`
/// the route must allow the claimed method as well.
#[tokio::test]
async fn method_override_headers_are_stripped_or_judged() {
    let (upstream, _python) = wsgi_upstream();
    let fx = Fixture::new();
    let token = fx.token(|_| {});
    let request = |path: &str, headers: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n{headers}\r\n")
    };
    let gw = fx.start(&config(upstream, "")).await;
    for header in [
        "X-HTTP-Method-Override: DELETE\r\n",
        "X-HTTP-Method: DELETE\r\n",
        "X-Method-Override: DELETE\r\n",
        "X_HTTP_Method_Override: DELETE\r\n",
    ] {
        let answer = raw(gw.local_addr(), &request("/api/orders/1", header)).await;
        assert_eq!(answer.status(), 200, "{header}");
        let seen = json(&answer.body);
        assert_eq!(seen["acted_on"], "GET", "{header}: {seen}");
    }
    gw.shutdown().await;

    let gw = fx
        .start(&config(upstream, "[proxy]\nmethod_override = \"judge\"\n"))
        .await;
    let override_delete = "X-HTTP-Method-Override: DELETE\r\n";
    // `/api` allows GET only: the claimed DELETE is refused.
    let answer = raw(gw.local_addr(), &request("/api/orders/1", override_delete)).await;
    assert_eq!(answer.status(), 403, "{}", answer.head);
    // `/any` allows both: forwarded with the claim.
    let answer = raw(gw.local_addr(), &request("/any/orders/1", override_delete)).await;
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(json(&answer.body)["acted_on"], "DELETE");
    // Claims that disagree, or that are no method, are refused.
    for headers in [
        "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: GET\r\n",
        "X-HTTP-Method-Override: DE LETE\r\n",
    ] {
        let answer = raw(gw.local_addr(), &request("/any/orders/1", headers)).await;
        assert_eq!(answer.status(), 400, "{headers}: {}", answer.head);
    }
    // `_` spellings are never forwarded, even when judging.
    let answer = raw(
        gw.local_addr(),
        &request("/any/orders/1", "X_HTTP_Method_Override: DELETE\r\n"),
    )
    .await;
    assert_eq!(json(&answer.body)["acted_on"], "GET");
    gw.shutdown().await;
}

/// Finding 13: an HTTP/1.0 upstream (wsgiref) is relayed in HTTP/1.1, and the client's
/// connection stays open for the next request.
#[tokio::test]
async fn the_client_is_answered_in_its_own_version_and_kept_alive() {
    let (upstream, _python) = wsgi_upstream();
    let fx = Fixture::new();
    let gw = fx.start(&config(upstream, "")).await;
    let mut stream = TcpStream::connect(gw.local_addr()).await.unwrap();
    for i in 0..3 {
        stream
            .write_all(format!("GET /public/{i} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let answer = read_response(&mut stream).await;
        assert!(answer.head.starts_with("HTTP/1.1 200"), "{}", answer.head);
        assert_eq!(json(&answer.body)["protocol"], "HTTP/1.1");
        assert_eq!(json(&answer.body)["path"], format!("/public/{i}"));
    }
    gw.shutdown().await;
}

/// Finding 2: an `Upgrade: h2c` (or any protocol but `websocket`) is not forwarded: the real
/// h2c upstream answers an ordinary HTTP/1.1 request instead of switching to HTTP/2, after
/// which the client would have spoken to it directly, past every route.
#[tokio::test]
async fn only_websocket_upgrades_are_forwarded() {
    let (upstream, _hypercorn) = h2c_upstream();
    let fx = Fixture::new();
    let gw = fx.start(&config(upstream, "")).await;
    for upgrade in [
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        "Connection: HTTP2-Settings, Upgrade\r\nUpgrade: websocket, h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        "Connection: upgrade\r\nUpgrade: foo/1\r\n",
        "Connection: upgrade\r\nUpgrade: TLS/1.2\r\n",
    ] {
        let answer = raw(
            gw.local_addr(),
            &format!("GET /public/x HTTP/1.1\r\nHost: gw\r\n{upgrade}\r\n"),
        )
        .await;
        assert_eq!(answer.status(), 200, "{upgrade}: {}", answer.head);
        let seen = json(&answer.body);
        assert_eq!(seen["http_version"], "1.1", "{upgrade}: {seen}");
        let headers = seen["headers"].as_array().unwrap();
        for hop in ["upgrade", "http2-settings", "connection"] {
            assert!(
                !headers.iter().any(|h| h == hop),
                "{upgrade}: the upstream received `{hop}`: {seen}"
            );
        }
    }
    // The configuration cannot allow it either.
    let text = fx.config(&config(
        upstream,
        "[proxy]\nupgrades = [\"websocket\", \"h2c\"]\n",
    ));
    let error = tollgate_gateway::config::parse(&text, &fx.path()).unwrap_err();
    assert!(error.to_string().contains("proxy.upgrades"), "{error}");
    gw.shutdown().await;
}

/// Finding 8: a forward-auth call from nginx without `X-Original-Method` is refused (400), as
/// one without `X-Original-URI` is, instead of being judged as a GET.
#[tokio::test]
async fn forward_auth_without_the_original_method_is_refused() {
    let fx = Fixture::new();
    let body = "[forward_auth]\npath = \"/auth\"\nproxy = \"nginx\"\n\n\
                [[routes]]\nprefix = \"/api\"\nmethods = [\"GET\"]\n";
    let gw = fx.start(body).await;
    let token = fx.token(|_| {});
    let auth = bearer(&token);
    let a = send(
        gw.local_addr(),
        "GET",
        "/auth",
        &[("authorization", &auth), ("x-original-uri", "/api/x")],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let a = send(
        gw.local_addr(),
        "GET",
        "/auth",
        &[
            ("authorization", &auth),
            ("x-original-uri", "/api/x"),
            ("x-original-method", "GET"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        gw.local_addr(),
        "GET",
        "/auth",
        &[
            ("authorization", &auth),
            ("x-original-uri", "/api/x"),
            ("x-original-method", "DELETE"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    gw.shutdown().await;
}

/// Finding 9: every form of a dot segment or path parameter that Tomcat, Jetty, Spring or IIS
/// would normalise is refused (400), through the proxy and through forward-auth; a
/// percent-encoded protected prefix is judged as the prefix it decodes to.
#[tokio::test]
async fn paths_an_upstream_would_normalise_are_refused() {
    let fx = Fixture::new();
    let up = upstream().await;
    let body = format!(
        "{}\n[forward_auth]\npath = \"/auth\"\nproxy = \"nginx\"\n",
        config(up.addr, "")
    );
    let gw = fx.start(&body).await;
    let attacks = [
        "/public/..;/api/x",
        "/public/.;/api/x",
        "/public/..%3b/api/x",
        "/public/..%3B/api/x",
        "/api;x/y",
        "/public/%00/../api",
        "/public/x%00.json",
        "/public/%c0%ae%c0%ae/api/x",
        "/public/%e0%80%ae%e0%80%ae/api/x",
        "/public/%u002e%u002e/api/x",
        "/public/%ef%bc%8e%ef%bc%8e/api/x",
        "/public/%e2%80%a4%e2%80%a4/api/x",
        "/public/%ef%bc%8fapi",
        "/public/.../api",
        "/public/%252e%252e/api/x",
        "/public/..%2f/api/x",
        "/public/..%5c/api/x",
        "/public/../api/x",
        "/public//api",
    ];
    for path in attacks {
        let answer = raw(
            gw.local_addr(),
            &format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n"),
        )
        .await;
        assert_eq!(answer.status(), 400, "{path}: {}", answer.head);
        let answer = raw(
            gw.local_addr(),
            &format!(
                "GET /auth HTTP/1.1\r\nHost: gw\r\nX-Original-Method: GET\r\n\
                 X-Original-URI: {path}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(answer.status(), 400, "forward-auth {path}: {}", answer.head);
    }
    // Raw full-width dots (UTF-8 in the request line).
    let mut stream = TcpStream::connect(gw.local_addr()).await.unwrap();
    stream
        .write_all("GET /public/\u{ff0e}\u{ff0e}/api/x HTTP/1.1\r\nHost: gw\r\n\r\n".as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 400"), "{:?}", &buf[..n]);
    // `/%61pi` is `/api` to the upstream: protected here too.
    let answer = raw(gw.local_addr(), "GET /%61pi/x HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(answer.status(), 401, "{}", answer.head);
    gw.shutdown().await;
}

/// Finding 11: a malformed request body is the client's fault: 400 and a client-error metric,
/// not a 502 counted against the upstream, and a chunk size past 64 bits gets an answer.
#[tokio::test]
async fn malformed_request_bodies_are_client_errors() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&config(up.addr, "")).await;
    for chunked in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello0\r\n\r\n",
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ] {
        let answer = raw(
            gw.local_addr(),
            &format!(
                "POST /public/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {chunked}"
            ),
        )
        .await;
        assert_eq!(answer.status(), 400, "{chunked:?}: {}", answer.head);
    }
    let metrics = send(gw.ops_addr(), "GET", "/metrics", &[]).await.body;
    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(
        sample("tollgate_gateway_rejections_total{reason=\"bad_request_body\"}"),
        3.0
    );
    assert_eq!(
        sample("tollgate_gateway_upstream_errors_total{upstream=\"app\",kind=\"unreachable\"}"),
        0.0
    );
    gw.shutdown().await;
}

/// Finding 12: `X-Forwarded-Host` carries the client's `Host` only when it is an authority;
/// otherwise the upstream's own.
#[tokio::test]
async fn x_forwarded_host_is_an_authority_or_the_upstreams() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&config(up.addr, "")).await;
    for (host, forwarded) in [
        ("shop.example:8443", "shop.example:8443".to_owned()),
        ("a b", up.addr.to_string()),
        ("user@evil.example", up.addr.to_string()),
        ("evil.example/path", up.addr.to_string()),
    ] {
        let answer = raw(
            gw.local_addr(),
            &format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .await;
        assert_eq!(answer.status(), 200, "{host}: {}", answer.head);
        assert_eq!(
            json(&answer.body)["headers"]["x-forwarded-host"],
            forwarded,
            "{host}"
        );
    }
    gw.shutdown().await;
}

/// Finding 4: clients that never read their responses are closed after `send_timeout`, and
/// their slots go to waiting clients.
#[tokio::test]
async fn clients_that_do_not_read_lose_their_slot() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&config(
            up.addr,
            "[limits]\nmax_connections = 2\nsend_timeout = 1\n",
        ))
        .await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(gw.local_addr()).await.unwrap();
        stream
            .write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Both slots are held by clients that read nothing; a third client is served once the
    // send timeout has closed them.
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        raw(
            gw.local_addr(),
            "GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n",
        ),
    )
    .await
    .expect("served once the stalled clients were closed");
    assert_eq!(answer.status(), 200);
    gw.shutdown().await;
}

/// Opens a WebSocket-style tunnel to the support upstream's `/ws` (it echoes).
async fn tunnel(addr: SocketAddr, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.head.starts_with("HTTP/1.1 101"), "{}", answer.head);
    stream
}

/// Finding 5: tunnels count against `max_connections`, and an idle one is closed after
/// `tunnel_idle_timeout` while a busy one stays open.
#[tokio::test]
async fn tunnels_are_counted_and_idle_ones_closed() {
    let fx = Fixture::new();
    let up = upstream().await;
    let token = fx.token(|_| {});
    let gw = fx
        .start(&config(
            up.addr,
            "[limits]\nmax_connections = 2\ntunnel_idle_timeout = 2\n",
        ))
        .await;
    let mut busy = tunnel(gw.local_addr(), &token).await;
    let mut idle = tunnel(gw.local_addr(), &token).await;
    // Both slots are tunnels: a third connection waits.
    let mut third = TcpStream::connect(gw.local_addr()).await.unwrap();
    third
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf))
            .await
            .is_err(),
        "a connection beyond max_connections was served while two tunnels were open"
    );
    // The busy tunnel talks every 400 ms; the idle one says nothing and is closed.
    let started = std::time::Instant::now();
    let mut idle_closed = None;
    while started.elapsed() < Duration::from_secs(4) {
        busy.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), busy.read_exact(&mut echo))
            .await
            .expect("the busy tunnel still echoes")
            .unwrap();
        if idle_closed.is_none()
            && let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(400), idle.read(&mut buf)).await
        {
            idle_closed = Some(started.elapsed());
        }
    }
    let idle_closed = idle_closed.expect("the idle tunnel was not closed");
    assert!(idle_closed >= Duration::from_secs(1), "{idle_closed:?}");
    // Its slot went to the waiting connection.
    let answer = read_response(&mut third).await;
    assert_eq!(answer.status(), 200);
    gw.shutdown().await;
}

/// Found by the `gateway_request` fuzz target: with a public catch-all `/` after a GET-only
/// `/api`, `DELETE /api/x` fell through to `/` and reached the upstream without a token. The
/// routes with the longest covering prefix decide, so it is refused.
#[tokio::test]
async fn a_method_a_specific_route_does_not_list_never_falls_back_to_a_broader_one() {
    let fx = Fixture::new();
    let up = upstream().await;
    let body = format!(
        "{}\n[[routes]]\nprefix = \"/\"\npublic = true\n",
        config(up.addr, "")
    );
    let gw = fx.start(&body).await;
    let token = bearer(&fx.token(|_| {}));
    for method in ["DELETE", "POST", "PUT"] {
        let a = send(
            gw.local_addr(),
            method,
            "/api/orders/1",
            &[("authorization", &token)],
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{method}: {}", a.body);
    }
    let a = send(
        gw.local_addr(),
        "GET",
        "/api/orders/1",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(gw.local_addr(), "DELETE", "/elsewhere", &[]).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the catch-all still serves other paths"
    );
    gw.shutdown().await;
}

/// The second attack's findings on the request path: header names PHP and Apache read as
/// identity headers (`X.Auth.Roles`), case variants of methods, `CONNECT`, two `Host` lines, the
/// absolute-form authority, duplicate forward-auth headers, claims an upstream would misread,
/// and h2 cookie crumbs.
#[tokio::test]
async fn the_second_attacks_request_path_findings() {
    let fx = Fixture::new();
    let up = upstream().await;
    let body = format!(
        "{}\n[forward_auth]\npath = \"/auth\"\nproxy = \"nginx\"\n",
        config(up.addr, "")
    );
    let gw = fx.start(&body).await;
    let addr = gw.local_addr();
    let token = fx.token(|_| {});

    // `.` and other separators: PHP's `$_SERVER['HTTP_X_AUTH_ROLES']`.
    let answer = raw(
        addr,
        &format!(
            "GET /api/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             X.Auth.Roles: admin\r\nx!auth!tenant: /\r\nX.Forwarded.Host: evil\r\n\
             X.HTTP.Method.Override: DELETE\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.head);
    let headers = json(&answer.body)["headers"].clone();
    for name in headers.as_object().unwrap().keys() {
        assert!(
            !name.contains(['.', '!']),
            "`{name}` reached the upstream: {headers}"
        );
    }

    // Methods routes cannot judge as the upstream will act on them.
    for method in ["delete", "Get", "CONNECT"] {
        let answer = raw(
            addr,
            &format!(
                "{method} /public/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(answer.status(), 400, "{method}: {}", answer.head);
    }

    // Two `Host` lines; the absolute-form authority wins over `Host`.
    let answer = raw(
        addr,
        "GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 400, "{}", answer.head);
    let answer = raw(
        addr,
        "GET http://good.example/public/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(
        json(&answer.body)["headers"]["x-forwarded-host"],
        "good.example"
    );

    // A forward-auth call naming two methods or two URIs names none.
    for twice in [
        "X-Original-Method: GET\r\nX-Original-Method: DELETE\r\nX-Original-URI: /api/x\r\n",
        "X-Original-Method: GET\r\nX-Original-URI: /public/x\r\nX-Original-URI: /api/x\r\n",
    ] {
        let answer = raw(
            addr,
            &format!(
                "GET /auth HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n{twice}\r\n"
            ),
        )
        .await;
        assert_eq!(answer.status(), 400, "{twice}: {}", answer.head);
    }

    // Claims an upstream would read as something else are not forwarded.
    for token in [
        fx.token(|c| c.roles = vec!["user,admin".into()]),
        fx.token(|c| c.roles = vec![" admin ".into()]),
        fx.token(|c| c.sub = " admin".into()),
    ] {
        let a = send(addr, "GET", "/api/x", &[("authorization", &bearer(&token))]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    }

    // h2 cookie crumbs reach an HTTP/1.1 upstream as one `Cookie`.
    let request = http::Request::builder()
        .uri(format!("http://{addr}/public/x"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(full(""))
        .unwrap();
    let response = h2c_client().request(request).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        json(&String::from_utf8_lossy(&body))["headers"]["cookie"],
        "a=1; b=2"
    );
    gw.shutdown().await;
}

/// The second attack: a steady upload longer than `response_timeout` got 504 "upstream timed
/// out". The upstream's clock starts once the body is sent; a client that stops sending its body
/// gets 408 after `client_body_timeout`, counted as the client's.
#[tokio::test]
async fn uploads_are_timed_as_the_clients_not_the_upstreams() {
    let fx = Fixture::new();
    let up = upstream().await;
    let body = config(up.addr, "[limits]\nclient_body_timeout = 1\n")
        .replace("response_timeout = 5", "response_timeout = 1")
        .replace(
            "prefix = \"/public\"\npublic = true",
            "prefix = \"/upload\"\npublic = true",
        );
    let gw = fx.start(&body).await;
    // 4 KiB over about 2 s, steadily: longer than response_timeout, never silent for 1 s.
    let mut stream = TcpStream::connect(gw.local_addr()).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 4096\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..8 {
        stream.write_all(&[b'x'; 512]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(answer.body, "4096");
    // Half a body, then silence.
    let mut stream = TcpStream::connect(gw.local_addr()).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 4096\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&[b'x'; 2048]).await.unwrap();
    let started = std::time::Instant::now();
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.status(), 408, "{}", answer.head);
    assert!(started.elapsed() < Duration::from_secs(4));
    let metrics = send(gw.ops_addr(), "GET", "/metrics", &[]).await.body;
    assert!(
        metrics.contains("tollgate_gateway_rejections_total{reason=\"request_body_timeout\"} 1"),
        "{metrics}"
    );
    gw.shutdown().await;
}

/// The re-attack's findings: a lower-case method of any kind (`propfind`) passed a route listing
/// it in upper case; headers on which upstreams route or read the client (`X-Original-URL`,
/// `Forwarded`) passed; an empty absolute-form target reached the upstream empty; a prefix with
/// a trailing `/` let its bare path fall to a broader route.
#[tokio::test]
async fn the_re_attacks_findings() {
    let fx = Fixture::new();
    let up = upstream().await;
    let body = format!(
        "{}\n[[routes]]\nprefix = \"/dav/\"\nmethods = [\"PROPFIND\"]\nroles = [\"admin\"]\n\
         [[routes]]\nprefix = \"/\"\npublic = true\n",
        config(up.addr, "")
    );
    let gw = fx.start(&body).await;
    let addr = gw.local_addr();
    let token = fx.token(|_| {});
    for method in ["propfind", "Propfind", "purge"] {
        let answer = raw(
            addr,
            &format!(
                "{method} /dav/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(answer.status(), 400, "{method}: {}", answer.head);
    }
    // `/dav` is the route's too: not the public catch-all's.
    let a = send(
        addr,
        "PROPFIND",
        "/dav",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    let answer = raw(
        addr,
        "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Original-URL: /api/admin\r\n\
         X-Rewrite-URL: /api/admin\r\nForwarded: for=1.2.3.4;host=evil;proto=https\r\n\
         X-Real-IP: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\
         Front-End-Https: on\r\n\r\n",
    )
    .await;
    let headers = json(&answer.body)["headers"].clone();
    for absent in [
        "x-original-url",
        "x-rewrite-url",
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "front-end-https",
    ] {
        assert!(headers.get(absent).is_none(), "{absent}: {headers}");
    }
    assert_eq!(headers["x-forwarded-proto"], "http");

    let answer = raw(addr, "GET http://a HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert_eq!(answer.status(), 200, "{}", answer.head);
    assert_eq!(json(&answer.body)["path"], "/");
    gw.shutdown().await;
}
