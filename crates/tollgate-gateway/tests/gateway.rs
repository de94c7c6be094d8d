//! The gateway over real sockets, in front of a real upstream: routes, identity headers,
//! streaming, upgrades, upstream failures, gRPC, forward-auth, limits, metrics, configuration
//! errors.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn routes(upstream: &Upstream) -> String {
    let addr = upstream.addr;
    format!(
        r#"
[[upstreams]]
name = "app"
url = "http://{addr}"
response_timeout = 1

[[upstreams]]
name = "grpc"
url = "http://{addr}"
h2c = true

[[routes]]
prefix = "/public"
public = true
upstream = "app"

[[routes]]
prefix = "/orders"
methods = ["GET"]
scopes = ["orders:read"]
upstream = "app"

[[routes]]
prefix = "/orders"
methods = ["POST"]
scopes = ["orders:read", "orders:write"]
upstream = "app"

[[routes]]
prefix = "/admin"
roles = ["admin"]
upstream = "app"
strip_authorization = true

[[routes]]
prefix = "/acme"
tenant = "/Acme"
upstream = "app"

[[routes]]
prefix = "/grpc"
upstream = "grpc"

[[routes]]
prefix = "/ws"
upstream = "app"

[[routes]]
prefix = "/upload"
upstream = "app"

[[routes]]
prefix = "/download"
upstream = "app"

[[routes]]
prefix = "/slow"
upstream = "app"
"#
    )
}

#[tokio::test]
async fn every_route_rule() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&routes(&up)).await;
    let addr = gw.local_addr();
    let reader = fx.token(|c| c.scope = "orders:read".into());
    let writer = fx.token(|c| c.scope = "orders:read orders:write".into());
    let admin = fx.token(|c| c.roles = vec!["admin".into()]);
    let acme_sub = fx.token(|c| c.tenant = Some("/Acme/Sub".into()));
    let other = fx.token(|c| c.tenant = Some("/Other".into()));

    // Public: no token needed; the token, if any, is neither checked nor turned into headers.
    let a = send(addr, "GET", "/public/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(
        addr,
        "GET",
        "/public/x",
        &[("authorization", "Bearer garbage")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.echoed()["headers"]["authorization"],
        "Bearer garbage",
        "kept by default"
    );

    // Scopes: every listed scope, per method.
    let a = send(addr, "GET", "/orders/1", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"tollgate\"")
    );
    let a = send(
        addr,
        "GET",
        "/orders/1",
        &[("authorization", &bearer(&reader))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.echoed()["path"], "/orders/1");
    let a = send(
        addr,
        "POST",
        "/orders",
        &[("authorization", &bearer(&reader))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("scope=\"orders:read orders:write\"")
    );
    let a = send(
        addr,
        "POST",
        "/orders",
        &[("authorization", &bearer(&writer))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.echoed()["method"], "POST");
    // A method no route lists: refused like an unknown path.
    let a = send(
        addr,
        "DELETE",
        "/orders/1",
        &[("authorization", &bearer(&writer))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body, "no route");

    // Roles; Authorization stripped on this route.
    let a = send(
        addr,
        "GET",
        "/admin",
        &[("authorization", &bearer(&reader))],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(
        addr,
        "GET",
        "/admin/users",
        &[("authorization", &bearer(&admin))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = a.echoed();
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-auth-roles"], "admin");

    // Tenant: the route's tenant or below.
    let a = send(
        addr,
        "GET",
        "/acme",
        &[("authorization", &bearer(&acme_sub))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.echoed()["headers"]["x-auth-tenant"], "/Acme/Sub");
    let a = send(addr, "GET", "/acme", &[("authorization", &bearer(&other))]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(addr, "GET", "/acme", &[("authorization", &bearer(&reader))]).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "no tenant is the root, not /Acme"
    );

    // Unmatched, segment-wise prefixes, and paths that could mean another route upstream.
    assert_eq!(
        send(addr, "GET", "/nothing", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            addr,
            "GET",
            "/ordersx",
            &[("authorization", &bearer(&reader))]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    for bad in [
        "/public/../orders",
        "/public/%2e%2e/orders",
        "/public//x",
        "/public/a%2Fb",
    ] {
        assert_eq!(
            send(addr, "GET", bad, &[]).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // Bad tokens get the Layer's answers.
    let a = send(
        addr,
        "GET",
        "/orders/1",
        &[("authorization", "Bearer a.b.c")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let a = send(addr, "GET", "/orders/1", &[("authorization", "Basic eDp5")]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    gw.shutdown().await;
}

#[tokio::test]
async fn identity_headers_are_set_and_client_copies_removed() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&routes(&up)).await;
    let addr = gw.local_addr();
    let token = fx.token(|c| {
        c.scope = "orders:read".into();
        c.tenant = Some("/Acme".into());
        c.roles = vec!["a".into(), "b".into()];
    });
    let forged = [
        ("x-auth-subject", "mallory"),
        ("x-auth-client-id", "evil"),
        ("x-auth-tenant", "/"),
        ("x-auth-scopes", "everything"),
        ("x-auth-roles", "admin"),
        ("x-auth-token-id", "nope"),
    ];
    let mut headers = forged.to_vec();
    let auth = bearer(&token);
    headers.push(("authorization", &auth));
    headers.push(("x-request-id", "req-42"));
    let a = send(addr, "GET", "/orders/7", &headers).await;
    assert_eq!(a.status, StatusCode::OK);
    let seen = a.echoed()["headers"].clone();
    assert_eq!(seen["x-auth-subject"], "alice");
    assert_eq!(seen["x-auth-client-id"], "app");
    assert_eq!(seen["x-auth-tenant"], "/Acme");
    assert_eq!(seen["x-auth-scopes"], "orders:read");
    assert_eq!(seen["x-auth-roles"], "a,b");
    assert_eq!(seen["x-auth-token-id"].as_str().unwrap().len(), 22);
    assert_eq!(seen["authorization"], auth.as_str());
    assert_eq!(seen["x-request-id"], "req-42");
    assert_eq!(a.header("x-request-id"), Some("req-42"));
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");

    // A client's `X-Forwarded-For` is kept and the peer appended; one that is not readable
    // text is replaced by the peer, never dropped with it.
    let with = |xff: &'static str| {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.push(("x-forwarded-for", xff));
        headers
    };
    let a = send(addr, "GET", "/orders/7", &with("203.0.113.9")).await;
    assert_eq!(
        a.echoed()["headers"]["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
    let a = send(addr, "GET", "/orders/7", &with("caf\u{e9}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.echoed()["headers"]["x-forwarded-for"], "127.0.0.1");

    // On a public route every copy is removed too, and none is added.
    let a = send(addr, "GET", "/public", &forged).await;
    let seen = a.echoed()["headers"].clone();
    for (name, _) in forged {
        assert!(
            seen.get(name).is_none(),
            "{name} reached the upstream: {seen}"
        );
    }
    // Without a request id, one is made.
    assert_eq!(a.header("x-request-id").map(str::len), Some(22));
    gw.shutdown().await;
}

#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 1 << 20;
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&routes(&up)).await;
    let addr = gw.local_addr();
    let token = fx.token(|_| {});

    // Upload: the client sends its second chunk only once the upstream has seen the first, so
    // a gateway that buffered the body would never finish.
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, Box<dyn std::error::Error + Send + Sync>>::new(1);
    let request = Request::post(format!("http://{addr}/upload"))
        .header("authorization", bearer(&token))
        .body(body.boxed())
        .unwrap();
    let got_first = up.got_first_bytes.clone();
    let sender = tokio::spawn(async move {
        let chunk = Bytes::from(vec![1u8; CHUNK]);
        tx.send_data(chunk.clone()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), got_first.notified())
            .await
            .expect("the upstream saw nothing of the body before the client finished sending");
        for _ in 1..TOTAL / CHUNK {
            tx.send_data(chunk.clone()).await.unwrap();
        }
    });
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, TOTAL.to_string());
    sender.await.unwrap();

    // Download: the upstream sends the rest only once the client has the first chunk.
    let request = Request::get(format!("http://{addr}/download/{TOTAL}"))
        .header("authorization", bearer(&token))
        .body(full(""))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("no response head while the upstream holds back its body")
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0usize;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(20), body.frame())
        .await
        .expect("download stalled: the gateway buffers the body")
    {
        if let Some(data) = frame.unwrap().data_ref() {
            if received == 0 {
                up.client_got_first_bytes.notify_one();
            }
            received += data.len();
        }
    }
    assert_eq!(received, TOTAL);
    gw.shutdown().await;
}

async fn raw_upgrade(
    addr: std::net::SocketAddr,
    token: Option<&str>,
) -> (String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(
            n > 0,
            "closed before the response head: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.push(byte[0]);
    }
    (String::from_utf8_lossy(&response).into_owned(), stream)
}

#[tokio::test]
async fn websocket_upgrade_after_validation() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&routes(&up)).await;
    let (head, _) = raw_upgrade(gw.local_addr(), None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let token = fx.token(|_| {});
    let (head, mut stream) = raw_upgrade(gw.local_addr(), Some(&token)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for message in [&b"hello"[..], b"again"] {
        stream.write_all(message).await.unwrap();
        let mut echo = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, message);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let fx = Fixture::new();
    let up = upstream().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let body = format!(
        "{}\n[[upstreams]]\nname = \"down\"\nurl = \"http://{closed}\"\n[[routes]]\nprefix = \"/down\"\nupstream = \"down\"\n",
        routes(&up)
    );
    let gw = fx.start(&body).await;
    let token = fx.token(|_| {});
    let a = send(
        gw.local_addr(),
        "GET",
        "/down/x",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        a.body, "upstream unavailable",
        "generic, nothing about the address or the error"
    );
    let a = send(
        gw.local_addr(),
        "GET",
        "/slow",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.body, "upstream timed out");

    let metrics = scrape(gw.ops_addr()).await;
    assert_eq!(
        value(
            &metrics,
            "tollgate_gateway_upstream_errors_total{upstream=\"down\",kind=\"unreachable\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            "tollgate_gateway_upstream_errors_total{upstream=\"app\",kind=\"timeout\"}"
        ),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn grpc_passes_through_over_h2c_and_is_rejected_in_grpc() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&routes(&up)).await;
    let token = fx.token(|_| {});
    let call = |token: Option<String>| {
        let mut request = Request::post(format!("http://{}/grpc", gw.local_addr()))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", bearer(&token));
        }
        h2c_client().request(
            request
                .body(full(Bytes::from_static(b"\0\0\0\0\0")))
                .unwrap(),
        )
    };
    let response = call(Some(token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("the upstream's trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"\0\0\0\0\x02hi"));

    let response = call(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    let response = call(Some("a.b.c".into())).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "16");
    gw.shutdown().await;
}

#[tokio::test]
async fn forward_auth_for_traefik_and_envoy() {
    let fx = Fixture::new();
    let up = upstream().await;
    let token = fx.token(|c| c.scope = "orders:read".into());
    let auth = bearer(&token);

    let traefik = fx
        .start(&format!(
            "{}\n[forward_auth]\npath = \"/auth\"\nproxy = \"traefik\"\n",
            routes(&up)
        ))
        .await;
    let addr = traefik.local_addr();
    let fwd = |method: &'static str, uri: &'static str| {
        vec![
            ("x-forwarded-method", method),
            ("x-forwarded-uri", uri),
            ("x-forwarded-host", "shop.example"),
        ]
    };
    let mut h = fwd("GET", "/orders/1?x=1");
    h.push(("authorization", &auth));
    let a = send(addr, "GET", "/auth", &h).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-auth-subject"), Some("alice"));
    assert_eq!(a.header("x-auth-scopes"), Some("orders:read"));
    // The route applies to the forwarded method and URI.
    let mut h = fwd("POST", "/orders/1");
    h.push(("authorization", &auth));
    let a = send(addr, "GET", "/auth", &h).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    let a = send(addr, "GET", "/auth", &fwd("GET", "/orders/1")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.header("www-authenticate").is_some());
    let a = send(addr, "GET", "/auth", &fwd("GET", "/public/x")).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "public routes are allowed without a token"
    );
    assert!(a.header("x-auth-subject").is_none());
    // Another proxy's convention is not trusted.
    let a = send(addr, "GET", "/auth", &[("x-original-uri", "/public/x")]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    traefik.shutdown().await;

    let envoy = fx
        .start(&format!(
            "{}\n[forward_auth]\npath = \"/ext-authz\"\nproxy = \"envoy\"\n",
            routes(&up)
        ))
        .await;
    let addr = envoy.local_addr();
    let a = send(
        addr,
        "GET",
        "/ext-authz/orders/1?q=2",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-auth-client-id"), Some("app"));
    let a = send(
        addr,
        "POST",
        "/ext-authz/orders/1",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(
        addr,
        "GET",
        "/ext-authz/nothing",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    envoy.shutdown().await;
}

#[tokio::test]
async fn rate_cap_per_client_id() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&format!(
            "[limits]\nclient_rate = 1\nclient_burst = 2\n{}",
            routes(&up)
        ))
        .await;
    let token = fx.token(|c| c.scope = "orders:read".into());
    let other = fx.token(|c| {
        c.scope = "orders:read".into();
        c.client_id = "other-app".into();
    });
    let addr = gw.local_addr();
    let get = |t: &str| {
        let auth = bearer(t);
        async move { send(addr, "GET", "/orders", &[("authorization", &auth)]).await }
    };
    assert_eq!(get(&token).await.status, StatusCode::OK);
    assert_eq!(get(&token).await.status, StatusCode::OK);
    let a = get(&token).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(
        get(&other).await.status,
        StatusCode::OK,
        "each client id has its own bucket"
    );
    gw.shutdown().await;
}

/// `/metrics` as text.
async fn scrape(ops: std::net::SocketAddr) -> String {
    let a = send(ops, "GET", "/metrics", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    a.body
}

/// The value of one sample, parsed from the exposition (`name{labels} value`).
fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

#[tokio::test]
async fn health_readiness_and_metrics_count_the_traffic() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx.start(&routes(&up)).await;
    let ops = gw.ops_addr();
    assert_eq!(
        send(ops, "GET", "/healthz", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(ops, "GET", "/readyz", &[]).await.status,
        StatusCode::OK
    );
    let addr = gw.local_addr();
    let token = fx.token(|c| c.scope = "orders:read".into());
    for _ in 0..3 {
        assert_eq!(
            send(
                addr,
                "GET",
                "/orders",
                &[("authorization", &bearer(&token))]
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        assert_eq!(
            send(addr, "GET", "/orders", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        send(
            addr,
            "POST",
            "/orders",
            &[("authorization", &bearer(&token))]
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(addr, "GET", "/nowhere", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(addr, "GET", "/public", &[]).await.status,
        StatusCode::OK
    );

    let text = scrape(ops).await;
    // Every line is a comment or `name[{labels}] value`, and the text ends with `# EOF`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(v.parse::<f64>().is_ok(), "{line}");
    }
    assert_eq!(text.lines().last(), Some("# EOF"));
    let requests = |route: &str, outcome: &str| {
        value(
            &text,
            &format!("tollgate_gateway_requests_total{{route=\"{route}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(requests("/orders", "forwarded"), 3.0);
    assert_eq!(requests("/orders", "rejected"), 2.0);
    assert_eq!(requests("/orders", "forbidden"), 1.0);
    assert_eq!(requests("none", "no_route"), 1.0);
    assert_eq!(requests("/public", "forwarded"), 1.0);
    assert_eq!(
        value(
            &text,
            "tollgate_gateway_rejections_total{reason=\"missing_token\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "tollgate_gateway_rejections_total{reason=\"insufficient_scope\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tollgate_gateway_rejections_total{reason=\"no_route\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "tollgate_gateway_request_duration_seconds_count{route=\"/orders\"}"
        ),
        6.0
    );
    assert_eq!(
        value(&text, "tollgate_gateway_revocation_index_tokens"),
        0.0
    );
    assert_eq!(value(&text, "tollgate_gateway_ready"), 1.0);
    gw.shutdown().await;
}

#[test]
fn configuration_errors_are_one_line_with_file_line_and_key() {
    let fx = Fixture::new();
    let path = fx.path();
    let shown = path.display().to_string();
    let cases: &[(&str, &str)] = &[
        (
            "[[routes]]\nprefix = \"/x\"\nupstream = \"nope\"\n",
            ":10:12: routes[0].upstream: no upstream is named `nope`",
        ),
        (
            "[[routes]]\nprefix = \"x\"\n",
            ":9:10: routes[0].prefix: must start with `/`",
        ),
        (
            "[[routes]]\nprefix = \"/x\"\nmethods = [\"G T\"]\n",
            ":10:12: routes[0].methods: not an HTTP method",
        ),
        (
            "[limits]\nmax_connections = 0\n",
            ":9:19: limits.max_connections: must be between 1 and 1000000",
        ),
        (
            "[limits]\nclient_rate = \"fast\"\n",
            ":9:15: limits.client_rate: invalid type",
        ),
        (
            "[forward_auth]\npath = \"/auth\"\nproxy = \"haproxy\"\n",
            ":10:9: forward_auth.proxy: unknown proxy `haproxy`",
        ),
        (
            "[identity_headers]\nsubject = \"authorization\"\n",
            ":9:11: identity_headers.subject: a header HTTP or the gateway owns",
        ),
        (
            "[identity_headers]\nsubject = \"x-ssl-client-s-dn\"\n",
            ":9:11: identity_headers.subject: a header HTTP or the gateway owns",
        ),
        (
            "[revocations]\nredis_url = \"http://x\"\n",
            ":9:13: revocations.redis_url: ",
        ),
        ("[upstreams]\n", ":8:1: upstreams: invalid type"),
        ("bogus = 1\n", ":8:1: ops.bogus: unknown field `bogus`"),
    ];
    for (body, expected) in cases {
        let text = fx.config(body);
        let error = tollgate_gateway::config::parse(&text, &path)
            .expect_err(body)
            .to_string();
        assert!(!error.contains('\n'), "{error}");
        assert!(
            error.starts_with(&format!("{shown}{expected}")),
            "{body}\n got: {error}\nwant: {shown}{expected}"
        );
    }
    // A missing key file names the key.
    let text = fx.config("").replace("k1.der", "missing.der");
    let error = tollgate_gateway::config::parse(&text, &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!("{shown}:5:"))
            && error.contains("keys.files[0].file: cannot read"),
        "{error}"
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = tollgate_gateway::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.follows_revocations());
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&format!(
            "[[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\nresponse_timeout = 10\n\
             [[routes]]\nprefix = \"/slow\"\npublic = true\n",
            up.addr
        ))
        .await;
    let addr = gw.local_addr();
    // The upstream answers /slow after 3 s; the gateway is told to stop meanwhile.
    let in_flight = tokio::spawn(async move { send(addr, "GET", "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    gw.shutdown().await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "shutdown did not wait for the request"
    );
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "late");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// One client connection's requests, one after another, each answer read to its end.
async fn keep_alive_requests(
    addr: std::net::SocketAddr,
    requests: usize,
    token: &str,
) -> Vec<StatusCode> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut statuses = Vec::new();
    for i in 0..requests {
        sender.ready().await.unwrap();
        // Answers with a body, and without one (HEAD): both give their connection back.
        let method = if i % 3 == 2 { "HEAD" } else { "GET" };
        let request = Request::builder()
            .method(method)
            .uri(format!("/upload/{i}"))
            .header("authorization", bearer(token))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        statuses.push(response.status());
        response.into_body().collect().await.unwrap();
    }
    statuses
}

#[tokio::test]
async fn upstream_connections_are_reused_by_each_worker() {
    let fx = Fixture::new();
    let up = upstream().await;
    let text = fx.config_with("workers = 3\n", &routes(&up));
    let config = tollgate_gateway::config::parse(&text, &fx.path()).unwrap();
    assert_eq!(config.workers(), 3);
    let gw = tollgate_gateway::start(config).await.unwrap();
    let token = fx.token(|c| c.scope = "orders:read".into());

    // Requests one after another on one client connection: one upstream connection serves
    // them all (each is given back when its answer has been read).
    let statuses = keep_alive_requests(gw.local_addr(), 30, &token).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Six client connections at once, spread over the three workers: each worker opens the
    // upstream connections it needs and keeps them, never one per request.
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let token = token.clone();
            let addr = gw.local_addr();
            tokio::spawn(async move { keep_alive_requests(addr, 30, &token).await })
        })
        .collect();
    for client in clients {
        let statuses = client.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    let opened = up.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=7).contains(&opened),
        "{opened} upstream connections for 7 client connections and 210 requests"
    );
    gw.shutdown().await;
}

#[test]
fn workers_are_checked() {
    let fx = Fixture::new();
    let text = fx.config_with("workers = 0\n", "");
    let error = tollgate_gateway::config::parse(&text, &fx.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(":4:11: workers: must be between 1 and 1024"),
        "{error}"
    );
    let default = tollgate_gateway::config::parse(&fx.config(""), &fx.path()).unwrap();
    assert_eq!(
        default.workers(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
}

/// Sends `GET /public/x` on `stream` and waits up to `limit` for an answer's status line.
async fn answered_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(limit, stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Some(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn max_connections_bounds_all_workers_together() {
    let fx = Fixture::new();
    let up = upstream().await;
    // More workers than connection slots: a worker without a connection must not sit on a slot
    // that a connection on another worker's socket is waiting for.
    let text = fx.config_with(
        "workers = 4\n",
        &format!(
            "[limits]\nmax_connections = 2\nheader_read_timeout = 30\n{}",
            routes(&up)
        ),
    );
    let config = tollgate_gateway::config::parse(&text, &fx.path()).unwrap();
    let gw = tollgate_gateway::start(config).await.unwrap();
    let addr = gw.local_addr();

    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let line = answered_within(&mut first, Duration::from_secs(5)).await;
    assert_eq!(line.as_deref(), Some("HTTP/1.1 200 OK"));
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let line = answered_within(&mut second, Duration::from_secs(5)).await;
    assert_eq!(line.as_deref(), Some("HTTP/1.1 200 OK"));

    // Both slots are taken (the connections stay open): a third waits, whichever worker's
    // socket it reached.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        answered_within(&mut third, Duration::from_millis(800)).await,
        None,
        "a connection beyond max_connections was served"
    );
    // One slot frees: the waiting connection is served.
    drop(second);
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    drop(first);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_listen_address_in_use_is_refused() {
    let fx = Fixture::new();
    let up = upstream().await;
    let first = fx.start(&routes(&up)).await;
    // A second gateway on the first one's address (same user, so `SO_REUSEPORT` would let it
    // join) must fail as a plain bind would, not share the port.
    let mut config = tollgate_gateway::config::parse(&fx.config(&routes(&up)), &fx.path()).unwrap();
    config.set_listen(first.local_addr(), "127.0.0.1:0".parse().unwrap());
    let error = tollgate_gateway::start(config).await.unwrap_err();
    assert!(
        error.starts_with(&format!("cannot listen on {}", first.local_addr())),
        "{error}"
    );
    first.shutdown().await;
}
