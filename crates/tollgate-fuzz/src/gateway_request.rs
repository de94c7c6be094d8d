//! Target `gateway_request` (feature `gateway`): raw bytes on a TCP connection to a real
//! `tollgate gateway`, started once in this process on loopback, in front of an upstream that
//! accepts anything and records what it receives. The bytes are usually one or more HTTP/1.1
//! requests: request line, headers (identity, hop-by-hop, upgrade, method-override and
//! forward-auth headers), bodies.
//!
//! The gateway (routes below) must never let a request reach a protected resource without a
//! valid token, nor carry a header the client chose in the gateway's name. What reached the
//! upstream is judged as an upstream would read it ([`upstream_path`]: percent-decoded twice,
//! NFKC-normalised, `\` as `/`, path parameters dropped, dot segments resolved, trailing dots and
//! spaces trimmed: what Tomcat, Spring, IIS and WSGI servers do between them):
//!
//! | route | access |
//! |---|---|
//! | `/public` | public |
//! | `/api` | a valid token with scope `read`, GET only |
//! | `/admin` | a valid token with role `admin` |
//! | `/ws` | a valid token (WebSocket upgrades) |
//! | `/` | public (everything else) |
//!
//! Invariants, for every request the upstream received:
//!
//! * a path under `/api` or `/admin` as the upstream reads it carries the identity of a valid
//!   token that route allows (only [`alice_token`] and [`root_token`] are valid), and `/api` saw
//!   GET;
//! * every header that is an identity header to a CGI/WSGI upstream (`_` read as `-`, any case)
//!   is spelt as the gateway spells it, appears once, and agrees with the token named by
//!   `x-auth-token-id`; without a token there is none;
//! * no method-override header, no `Proxy`, no `Client-Cert` in any spelling, no `Upgrade` but
//!   `websocket`, and an
//!   `X-Forwarded-Host` that is an authority;
//!
//! and for a forward-auth call (`/_auth`, nginx convention) answered 200 about a protected path:
//! the answer carries a valid token's identity.

use crate::fixture::{ISSUER, KID, default_header, sign_raw, signing_key};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use unicode_normalization::UnicodeNormalization;

/// What the upstream received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// A valid token's identity, as the gateway writes it.
struct Identity {
    jti: &'static str,
    sub: &'static str,
    client_id: &'static str,
    scope: &'static str,
    roles: &'static str,
}

const ALICE: Identity = Identity {
    jti: "fuzz-alice",
    sub: "alice",
    client_id: "app",
    scope: "read",
    roles: "user",
};

const ROOT: Identity = Identity {
    jti: "fuzz-root",
    sub: "root",
    client_id: "ops",
    scope: "read write",
    roles: "admin",
};

/// Expires on 2100-01-01: the gateway runs on the system clock.
const FAR_EXP: u64 = 4_102_444_800;

fn token(identity: &Identity) -> String {
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": identity.sub,
        "aud": ISSUER,
        "exp": FAR_EXP,
        "iat": 1_767_225_540u64,
        "iat_ms": 1_767_225_540_000u64,
        "jti": identity.jti,
        "client_id": identity.client_id,
        "scope": identity.scope,
        "roles": identity.roles.split(',').collect::<Vec<_>>(),
    });
    sign_raw(default_header().as_bytes(), claims.to_string().as_bytes())
}

/// A valid token of `alice` (role `user`, scope `read`), valid until 2100.
pub fn alice_token() -> String {
    token(&ALICE)
}

/// A valid token of `root` (role `admin`, scopes `read write`), valid until 2100.
pub fn root_token() -> String {
    token(&ROOT)
}

const IDENTITY_HEADERS: [&str; 6] = [
    "x-auth-subject",
    "x-auth-client-id",
    "x-auth-tenant",
    "x-auth-scopes",
    "x-auth-roles",
    "x-auth-token-id",
];

struct Harness {
    runtime: tokio::runtime::Runtime,
    gateway: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _running: tollgate_gateway::RunningGateway,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("k.der"), signing_key().to_der()).expect("the key file");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (gateway, running) = runtime.block_on(async {
            let upstream = recording_upstream(seen.clone()).await;
            let text = format!(
                r#"listen = "127.0.0.1:0"
workers = 1
issuer = "{ISSUER}"
audience = ["{ISSUER}"]
[keys]
files = [{{ kid = "{KID}", algorithm = "EdDSA", file = "k.der" }}]
[ops]
listen = "127.0.0.1:0"
[limits]
header_read_timeout = 2
[forward_auth]
path = "/_auth"
proxy = "nginx"
[[upstreams]]
name = "app"
url = "http://{upstream}"
response_timeout = 2
[[routes]]
prefix = "/public"
public = true
[[routes]]
prefix = "/api"
methods = ["GET"]
scopes = ["read"]
[[routes]]
prefix = "/admin"
roles = ["admin"]
[[routes]]
prefix = "/ws"
[[routes]]
prefix = "/"
public = true
"#
            );
            let config = tollgate_gateway::config::parse(&text, &dir.path().join("gateway.toml"))
                .expect("the harness configuration is valid");
            let running = tollgate_gateway::start(config)
                .await
                .expect("the gateway starts");
            (running.local_addr(), running)
        });
        Harness {
            runtime,
            gateway,
            seen,
            _running: running,
            _dir: dir,
        }
    })
}

/// An upstream that answers anything: 200, or 101 to any upgrade (so that a smuggled upgrade
/// would succeed), recording each request.
async fn recording_upstream(seen: Arc<Mutex<Vec<Seen>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    let record = Seen {
                        method: request.method().to_string(),
                        target: request.uri().to_string(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect(),
                    };
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(record);
                    }
                    let upgrade = request.headers().get(http::header::UPGRADE).cloned();
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        if let Some(upgrade) = upgrade {
                            let on = hyper::upgrade::on(&mut request);
                            tokio::spawn(async move {
                                if let Ok(upgraded) = on.await {
                                    let mut io = TokioIo::new(upgraded);
                                    let mut sink = Vec::new();
                                    let _ = tokio::time::timeout(
                                        Duration::from_secs(2),
                                        io.read_to_end(&mut sink),
                                    )
                                    .await;
                                }
                            });
                            *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                            response.headers_mut().insert(
                                http::header::CONNECTION,
                                "upgrade".parse().expect("a value"),
                            );
                            response
                                .headers_mut()
                                .insert(http::header::UPGRADE, upgrade);
                        } else {
                            // Read the body, as an application would.
                            let _ = request.into_body().collect().await;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends `data` to the gateway, closes the sending side, and checks what reached the upstream
/// and what a forward-auth call was answered.
pub fn gateway_request(data: &[u8]) {
    let harness = harness();
    let answer = harness.runtime.block_on(async {
        let Ok(mut stream) = TcpStream::connect(harness.gateway).await else {
            return Vec::new();
        };
        let _ = stream.write_all(data).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        answer
    });
    // What the upstream received for this input (and, rarely, a late one of the previous).
    let seen = harness
        .seen
        .lock()
        .map(|mut seen| std::mem::take(&mut *seen))
        .unwrap_or_default();
    for request in &seen {
        check_forwarded(request);
    }
    check_forward_auth(data, &answer);
}

/// The invariants of a request the upstream received.
fn check_forwarded(seen: &Seen) {
    let header = |wanted: &str| -> Vec<&[u8]> {
        seen.headers
            .iter()
            .filter(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_slice())
            .collect()
    };
    // Identity headers: only the gateway's spelling, once each, from one valid token.
    for (name, _) in &seen.headers {
        let owned = IDENTITY_HEADERS
            .iter()
            .chain(&[
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-request-id",
                "authorization",
            ])
            .find(|owned| cgi_same(owned, name));
        if let Some(owned) = owned {
            assert_eq!(
                owned, name,
                "a client's spelling of `{owned}` reached the upstream: {seen:?}"
            );
            // The client's own `Authorization` and `X-Forwarded-For` lines pass (once joined).
            if !["authorization", "x-forwarded-for"].contains(owned) {
                assert_eq!(
                    header(name).len(),
                    1,
                    "`{name}` twice at the upstream: {seen:?}"
                );
            }
        }
        assert!(
            ![
                "x-http-method-override",
                "x-http-method",
                "x-method-override"
            ]
            .iter()
            .any(|m| cgi_same(m, name)),
            "a method-override header reached the upstream: {seen:?}"
        );
        assert!(
            !cgi_same("proxy", name),
            "`Proxy` reached the upstream: {seen:?}"
        );
        assert!(
            !cgi_same("client-cert", name),
            "a client certificate header reached the upstream: {seen:?}"
        );
    }
    let identity = match header("x-auth-token-id").first() {
        Some(jti) => {
            let identity = [&ALICE, &ROOT]
                .into_iter()
                .find(|i| i.jti.as_bytes() == *jti)
                .unwrap_or_else(|| panic!("an identity the client chose: {seen:?}"));
            for (name, value) in [
                ("x-auth-subject", identity.sub),
                ("x-auth-client-id", identity.client_id),
                ("x-auth-scopes", identity.scope),
                ("x-auth-roles", identity.roles),
            ] {
                assert_eq!(
                    header(name),
                    vec![value.as_bytes()],
                    "`{name}` is not the token's: {seen:?}"
                );
            }
            assert!(header("x-auth-tenant").is_empty(), "{seen:?}");
            Some(identity)
        }
        None => {
            assert!(
                IDENTITY_HEADERS.iter().all(|n| header(n).is_empty()),
                "identity headers without a token: {seen:?}"
            );
            None
        }
    };
    for upgrade in header("upgrade") {
        assert!(
            upgrade.eq_ignore_ascii_case(b"websocket"),
            "an upgrade to {:?} reached the upstream: {seen:?}",
            String::from_utf8_lossy(upgrade)
        );
    }
    for host in header("x-forwarded-host") {
        assert!(
            !host.is_empty() && !host.iter().any(|b| b" @/\\".contains(b)),
            "X-Forwarded-Host is no authority: {seen:?}"
        );
    }
    let path = seen.target.split('?').next().unwrap_or("");
    match first_segment(&upstream_path(path)).as_deref() {
        Some("api") => {
            let identity =
                identity.unwrap_or_else(|| panic!("`/api` reached without a token: {seen:?}"));
            assert!(identity.scope.split(' ').any(|s| s == "read"), "{seen:?}");
            assert_eq!(
                seen.method, "GET",
                "`/api` reached with another method: {seen:?}"
            );
        }
        Some("admin") => {
            let identity =
                identity.unwrap_or_else(|| panic!("`/admin` reached without a token: {seen:?}"));
            assert_eq!(
                identity.roles, "admin",
                "`/admin` reached without the role: {seen:?}"
            );
        }
        _ => {}
    }
}

/// For a forward-auth call answered 200 about a protected path: a valid token's identity in the
/// answer.
fn check_forward_auth(data: &[u8], answer: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(data), Ok(httparse::Status::Complete(_)))
        || request.path != Some("/_auth")
    {
        return;
    }
    let Some(uri) = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-original-uri"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
    else {
        return;
    };
    let mut response_headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut response_headers);
    if !matches!(response.parse(answer), Ok(httparse::Status::Complete(_)))
        || response.code != Some(200)
    {
        return;
    }
    let path = uri.split('?').next().unwrap_or("");
    let protected = matches!(
        first_segment(&upstream_path(path)).as_deref(),
        Some("api" | "admin")
    );
    if protected {
        let subject = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("x-auth-subject"))
            .map(|h| h.value);
        assert!(
            matches!(subject, Some(b"alice" | b"root")),
            "forward-auth allowed {uri:?} without a token's identity: {:?}",
            String::from_utf8_lossy(answer)
        );
    }
}

/// Whether two header names are one variable to a CGI/WSGI/PHP upstream (Apache's CGI turns
/// anything not alphanumeric into `_`).
fn cgi_same(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            b'-'
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path as the most lenient of common upstreams would resolve it.
pub fn upstream_path(path: &str) -> String {
    let decoded = percent_decode(&percent_decode(path));
    let normalised: String = decoded.nfkc().collect::<String>().replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for segment in normalised.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        let segment = segment.split('\0').next().unwrap_or("");
        let trimmed = segment.trim_end_matches(['.', ' ']);
        let segment = if trimmed.is_empty() && !segment.is_empty() {
            // `.`, `..`, `...`, `.. `: Windows trims them to a dot segment.
            if segment.starts_with("..") { ".." } else { "." }
        } else {
            segment
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_owned()),
        }
    }
    format!("/{}", segments.join("/"))
}

fn first_segment(path: &str) -> Option<String> {
    path.split('/').find(|s| !s.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_paths() {
        assert_eq!(upstream_path("/public/..;/api/x"), "/api/x");
        assert_eq!(upstream_path("/public/%2e%2e/admin"), "/admin");
        assert_eq!(upstream_path("/public/%252e%252e/admin"), "/admin");
        assert_eq!(upstream_path("/public/\u{ff0e}\u{ff0e}/admin"), "/admin");
        assert_eq!(upstream_path("/public/.../admin"), "/admin");
        assert_eq!(upstream_path("/%61pi"), "/api");
        assert_eq!(upstream_path("/api;x"), "/api");
    }

    #[test]
    fn the_harness_refuses_and_allows() {
        let alice = alice_token();
        let root = root_token();
        for input in [
            "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
            format!("GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {alice}\r\nX_Auth_Roles: admin\r\nConnection: x-auth-roles\r\n\r\n"),
            format!("GET /admin/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {root}\r\n\r\n"),
            "GET /public/..;/admin HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n".to_owned(),
            "GET /_auth HTTP/1.1\r\nHost: a\r\nX-Original-Method: GET\r\nX-Original-URI: /admin\r\n\r\n".to_owned(),
        ] {
            gateway_request(input.as_bytes());
        }
    }
}
