//! Certificate-bound tokens (RFC 8705 §3) through the gateway over real sockets, with TLS ended
//! at a proxy in front that sends the client certificate in `Client-Cert`: believed only from
//! the trusted proxies, never forwarded upstream in any spelling, and the Layer's answer when the
//! certificate is not the token's.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use std::net::SocketAddr;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tollgate_core::{ClientCertificate, Confirmation};

/// A self-signed client certificate, DER.
fn certificate(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![format!("{name}.client.test")]).unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

/// `Client-Cert` as RFC 9440 writes it.
fn rfc9440(der: &[u8]) -> String {
    format!(":{}:", STANDARD.encode(der))
}

fn config(upstream: &Upstream, trusted: &str, extra: &str) -> String {
    let addr = upstream.addr;
    format!(
        r#"
[client_certificate]
trusted_proxies = [{trusted}]
{extra}

[forward_auth]
path = "/auth"
proxy = "nginx"

[[upstreams]]
name = "app"
url = "http://{addr}"

[[routes]]
prefix = "/public"
public = true
upstream = "app"

[[routes]]
prefix = "/orders"
upstream = "app"
"#
    )
}

struct Raw {
    status: StatusCode,
    head: String,
    body: String,
}

/// One HTTP/1.1 request from source address `from` (any 127.0.0.0/8 address works on Linux).
async fn send_from(from: &str, to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: shop.example\r\nconnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Raw {
        status: StatusCode::from_u16(status).unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// The header names the upstream's echo received.
fn echoed_names(raw: &Raw) -> Vec<String> {
    // The echo is JSON; with `connection: close` the body is sent whole (maybe chunked: the
    // JSON object is the part between the first `{` and the last `}`).
    let start = raw.body.find('{').unwrap();
    let end = raw.body.rfind('}').unwrap();
    let echo: serde_json::Value = serde_json::from_str(&raw.body[start..=end]).unwrap();
    echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_bound_token_needs_its_certificate_from_a_trusted_proxy() {
    let fx = Fixture::new();
    let up = upstream().await;
    let (mine, other) = (certificate("mine"), certificate("other"));
    let x5t = ClientCertificate::from_der(mine.clone()).x5t_s256();
    let bound = bearer(&fx.token(|c| c.cnf = Some(Confirmation::certificate(x5t.clone()))));
    let unbound = bearer(&fx.token(|_| {}));
    // 127.0.0.1 is the proxy; 127.0.0.2 is a client that reached the gateway directly.
    let gw = fx.start(&config(&up, r#""127.0.0.1/32""#, "")).await;
    let addr = gw.local_addr();
    let (mine_header, other_header) = (rfc9440(&mine), rfc9440(&other));

    // The token with its certificate, from the proxy: through, and the upstream sees no
    // certificate header in any spelling.
    let a = send_from(
        "127.0.0.1",
        addr,
        "/orders/1",
        &[
            ("authorization", &bound),
            ("client-cert", &mine_header),
            ("client_cert", &mine_header),
            ("client.cert", &mine_header),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.head);
    let names = echoed_names(&a);
    assert!(
        !names
            .iter()
            .any(|n| n.contains("client") && n.contains("cert")),
        "{names:?}"
    );

    // Another certificate: the Layer's 401 invalid_token.
    let a = send_from(
        "127.0.0.1",
        addr,
        "/orders/1",
        &[("authorization", &bound), ("client-cert", &other_header)],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.head.contains(
            "www-authenticate: bearer realm=\"tollgate\", error=\"invalid_token\", \
             error_description=\"token is bound to another client certificate\""
        ),
        "{}",
        a.head
    );

    // Two certificates from the proxy: which one would it mean? None, so refused.
    let a = send_from(
        "127.0.0.1",
        addr,
        "/orders/1",
        &[
            ("authorization", &bound),
            ("client-cert", &mine_header),
            ("Client-Cert", &mine_header),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // No certificate from the proxy: refused.
    let a = send_from("127.0.0.1", addr, "/orders/1", &[("authorization", &bound)]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // The right header, from a client that is not a trusted proxy: ignored, so refused; and a
    // spelling the gateway does not read is no way around it.
    for spelling in ["client-cert", "client_cert"] {
        let a = send_from(
            "127.0.0.2",
            addr,
            "/orders/1",
            &[("authorization", &bound), (spelling, &mine_header)],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{spelling}");
        assert!(a.head.contains("none was presented"), "{}", a.head);
    }

    // Unbound tokens are unaffected, and a client's header never reaches the upstream, on a
    // protected or a public route: nor do the headers in which other proxies pass a client
    // certificate or their verdict on it, which an upstream that sat behind one believes.
    for path in ["/orders/1", "/public/x"] {
        let a = send_from(
            "127.0.0.2",
            addr,
            path,
            &[
                ("authorization", &unbound),
                ("client-cert", &mine_header),
                ("Client_Cert", &mine_header),
                ("client.cert", &mine_header),
                ("client-cert-chain", &mine_header),
                ("x-ssl-client-cert", &mine_header),
                ("x-ssl-client-verify", "SUCCESS"),
                ("SSL_CLIENT_S_DN", "CN=admin"),
                ("x-forwarded-client-cert", "Hash=ab;Subject=\"CN=admin\""),
                ("x-arr-clientcert", &mine_header),
                ("x-client-cert-present", "true"),
                ("x-amzn-mtls-clientcert-subject", "CN=admin"),
                ("x-client-version", "kept"),
            ],
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.head);
        let names = echoed_names(&a);
        assert!(
            !names
                .iter()
                .any(|n| n.contains("cert") || n.contains("ssl")),
            "{path}: {names:?}"
        );
        assert!(names.iter().any(|n| n == "x-client-version"), "{names:?}");
    }

    // Forward-auth: nginx passes the certificate on the auth subrequest.
    let forward = |header: &'static str, value: String| {
        let bound = bound.clone();
        async move {
            send_from(
                "127.0.0.1",
                addr,
                "/auth",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", "/orders/1"),
                    ("authorization", &bound),
                    (header, &value),
                ],
            )
            .await
        }
    };
    assert_eq!(
        forward("client-cert", mine_header.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        forward("client-cert", other_header.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_proxy_header_is_ignored_and_a_custom_header_is_read() {
    let fx = Fixture::new();
    let up = upstream().await;
    let mine = certificate("mine");
    let x5t = ClientCertificate::from_der(mine.clone()).x5t_s256();
    let bound = bearer(&fx.token(|c| c.cnf = Some(Confirmation::certificate(x5t.clone()))));
    // nginx's `$ssl_client_escaped_cert` in a header of the operator's choosing.
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(&mine)
    );
    let escaped: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let gw = fx
        .start(&config(
            &up,
            r#""10.0.0.0/8", "127.0.0.2""#,
            r#"header = "X-SSL-Client-Cert""#,
        ))
        .await;
    let addr = gw.local_addr();
    let headers = [
        ("authorization", bound.as_str()),
        ("x-ssl-client-cert", &escaped),
    ];
    // 127.0.0.1 is not trusted here.
    let a = send_from("127.0.0.1", addr, "/orders/1", &headers).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = send_from("127.0.0.2", addr, "/orders/1", &headers).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.head);
    let names = echoed_names(&a);
    assert!(!names.iter().any(|n| n.contains("cert")), "{names:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn require_bound_tokens_and_bad_configuration() {
    let fx = Fixture::new();
    let up = upstream().await;
    let gw = fx
        .start(&config(&up, "", "require_bound_tokens = true"))
        .await;
    let unbound = bearer(&fx.token(|_| {}));
    let a = send_from(
        "127.0.0.1",
        gw.local_addr(),
        "/orders/1",
        &[("authorization", &unbound)],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.head.contains("not bound to a client certificate"),
        "{}",
        a.head
    );
    gw.shutdown().await;

    for (body, expected) in [
        (
            r#""10.0.0.0/33""#,
            "client_certificate.trusted_proxies: `10.0.0.0/33` is neither",
        ),
        (
            r#""proxy.example""#,
            "client_certificate.trusted_proxies: `proxy.example` is neither",
        ),
    ] {
        let text = fx.config(&config(&up, body, ""));
        let error = tollgate_gateway::config::parse(&text, &fx.path())
            .expect_err(body)
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    // Any header a proxy passes certificates in may be the one read.
    for header in ["X-ARR-ClientCert", "x-forwarded-client-cert", "client_cert"] {
        let text = fx.config(&config(&up, "", &format!("header = \"{header}\"")));
        tollgate_gateway::config::parse(&text, &fx.path()).expect(header);
    }
    for header in [
        "authorization",
        "x-forwarded-for",
        "x_auth_subject",
        "bad header",
    ] {
        let text = fx.config(&config(&up, "", &format!("header = \"{header}\"")));
        let error = tollgate_gateway::config::parse(&text, &fx.path())
            .expect_err(header)
            .to_string();
        assert!(error.contains("client_certificate.header"), "{error}");
    }
}

/// Over the gateway's own TLS listener (curl as the client): the certificate the handshake
/// verified is the one bound tokens are judged against, and a header cannot stand in for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_over_direct_tls_needs_the_connections_certificate() {
    use tollgate_program::tls::testing::{TestCa, curl, x5t};
    let fx = Fixture::new();
    let up = upstream().await;
    let dir = fx.dir.path();
    let ca = TestCa::new("tollgate test CA");
    let ca_file = ca.write(dir, "ca");
    ca.server(&["localhost"]).write(dir, "server");
    let clients = TestCa::new("clients CA");
    clients.write(dir, "clients-ca");
    let mine = clients.client("svc");
    let (mine_cert, mine_key) = mine.write(dir, "svc");
    let (other_cert, other_key) = clients.client("other").write(dir, "other");
    let bound = bearer(&fx.token(|c| c.cnf = Some(Confirmation::certificate(x5t(mine.der())))));
    let gw = fx
        .start(&format!(
            "[tls]\ncertificate = \"server.crt\"\nprivate_key = \"server.key\"\n\
             client_auth = \"optional\"\nclient_ca = \"clients-ca.crt\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n\
             [[routes]]\nprefix = \"/orders\"\nupstream = \"app\"\n",
            up.addr
        ))
        .await;
    let addr = gw.local_addr();
    let authorization = format!("authorization: {bound}");
    let header = format!("client-cert: {}", rfc9440(mine.der()));
    let (mine_cert, mine_key) = (mine_cert.to_str().unwrap(), mine_key.to_str().unwrap());
    let (other_cert, other_key) = (other_cert.to_str().unwrap(), other_key.to_str().unwrap());
    tokio::task::block_in_place(|| {
        let get = |args: &[&str]| curl(&ca_file, addr, "localhost", "/orders/1", args).unwrap();
        let with = |cert: &str, key: &str| {
            get(&[
                "--http1.1",
                "-H",
                &authorization,
                "--cert",
                cert,
                "--key",
                key,
            ])
        };
        assert_eq!(with(mine_cert, mine_key), "1.1 200");
        assert_eq!(with(other_cert, other_key), "1.1 401");
        assert_eq!(get(&["--http2", "-H", &authorization]), "2 401");
        // The header, from a client the configuration does not trust (no [client_certificate]).
        assert_eq!(
            get(&["--http2", "-H", &authorization, "-H", &header]),
            "2 401"
        );
    });
    gw.shutdown().await;
}
