//! `https://` upstreams: a real nginx serving TLS with certificates from a private CA made here
//! (rcgen). The request passes through with the CA in `ca_file`; a certificate from another CA,
//! or for another host, is a 502; a client certificate reaches an upstream that asks for one;
//! an upstream that picks `h2` by ALPN is spoken to in HTTP/2; connections are reused (nginx's
//! `$connection` serial number, echoed in every answer, stays the same).
//!
//! Needs `nginx` (on the `PATH`, in `/usr/sbin`, or named by `TOLLGATE_NGINX`).

mod support;

use http::StatusCode;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use support::{Fixture, bearer, send};

/// A private certificate authority.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A certificate for `names` (DNS names or IP addresses) with common name `cn`, for a
    /// server or a client: its PEM and its key's.
    fn issue(
        &self,
        names: &[&str],
        cn: &str,
        purpose: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.0.pem()).unwrap();
        path
    }
}

/// One TLS `server` of the test nginx.
struct Site {
    cert: (String, String),
    http2: bool,
    /// The CA whose client certificates are required.
    client_ca: Option<String>,
}

/// An nginx of the test's own with one TLS listener per site, on free ports; each answers every
/// request with the protocol, the connection's serial number and the client certificate's
/// subject. Stopped when dropped.
struct Nginx {
    ports: Vec<u16>,
    _process: support::nginx::Nginx,
}

impl Nginx {
    fn start(sites: &[Site]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().display().to_string();
        let mut servers = String::new();
        let mut ports = Vec::new();
        for (i, site) in sites.iter().enumerate() {
            let port = support::nginx::free_port();
            ports.push(port);
            std::fs::write(dir.path().join(format!("cert{i}.pem")), &site.cert.0).unwrap();
            std::fs::write(dir.path().join(format!("key{i}.pem")), &site.cert.1).unwrap();
            let client = match &site.client_ca {
                Some(ca) => {
                    std::fs::write(dir.path().join(format!("client-ca{i}.pem")), ca).unwrap();
                    format!("ssl_verify_client on; ssl_client_certificate {p}/client-ca{i}.pem;")
                }
                None => String::new(),
            };
            let http2 = if site.http2 { " http2" } else { "" };
            servers.push_str(&format!(
                r#"
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        ssl_certificate {p}/cert{i}.pem;
        ssl_certificate_key {p}/key{i}.pem;
        {client}
        location / {{
            return 200 "protocol=$server_protocol connection=$connection client=$ssl_client_s_dn host=$http_host";
        }}
    }}
"#
            ));
        }
        Nginx {
            _process: support::nginx::Nginx::start(dir, &servers, &ports),
            ports,
        }
    }
}

fn server_site(ca: &Ca, names: &[&str]) -> Site {
    Site {
        cert: ca.issue(names, "upstream", ExtendedKeyUsagePurpose::ServerAuth),
        http2: false,
        client_ca: None,
    }
}

/// One upstream per `(name, url, extra keys)`, each on route `/name`, behind one gateway with
/// one worker (so that one part of each pool serves every request).
async fn gateway(
    fx: &Fixture,
    upstreams: &[(&str, String, String)],
) -> tollgate_gateway::RunningGateway {
    let mut body = String::new();
    for (name, url, extra) in upstreams {
        body.push_str(&format!(
            "[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\nconnect_timeout = 5\n{extra}\n\
             [[routes]]\nprefix = \"/{name}\"\nupstream = \"{name}\"\n"
        ));
    }
    let text = fx.config_with("workers = 1\n", &body);
    let config = tollgate_gateway::config::parse(&text, &fx.path())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    tollgate_gateway::start(config).await.unwrap()
}

/// The `key=value` fields of nginx's answer.
fn field<'a>(body: &'a str, key: &str) -> &'a str {
    body.split(' ')
        .find_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

#[tokio::test]
async fn https_upstreams_verify_the_certificate_and_reuse_connections() {
    support::nginx::nginx_binary();
    let ca = Ca::new("test CA");
    let other_ca = Ca::new("another CA");
    let nginx = Nginx::start(&[
        // 0: HTTP/1.1, a certificate for `localhost` only.
        server_site(&ca, &["localhost"]),
        // 1: HTTP/2 by ALPN, a certificate for the IP address.
        Site {
            http2: true,
            ..server_site(&ca, &["127.0.0.1"])
        },
        // 2: a certificate from another CA.
        server_site(&other_ca, &["localhost"]),
    ]);
    let fx = Fixture::new();
    let ca_file = ca.write(fx.dir.path(), "ca.pem");
    let trust = format!("ca_file = \"{}\"\n", ca_file.display());
    let [h1, h2, other] = [nginx.ports[0], nginx.ports[1], nginx.ports[2]];
    let gw = gateway(
        &fx,
        &[
            ("h1", format!("https://localhost:{h1}"), trust.clone()),
            ("h2", format!("https://127.0.0.1:{h2}"), trust.clone()),
            // The right CA, but the certificate names `localhost`, not the IP address.
            (
                "wrongname",
                format!("https://127.0.0.1:{h1}"),
                trust.clone(),
            ),
            (
                "otherca",
                format!("https://localhost:{other}"),
                trust.clone(),
            ),
            // The system store knows nothing of the private CA.
            ("system", format!("https://localhost:{h1}"), String::new()),
        ],
    )
    .await;
    let auth = bearer(&fx.token(|_| {}));

    // HTTP/1.1, verified against the private CA; `Host` is the upstream's own; three requests
    // one after another go on one pooled connection.
    let mut connections = Vec::new();
    for _ in 0..3 {
        let a = send(gw.local_addr(), "GET", "/h1/x", &[("authorization", &auth)]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(field(&a.body, "protocol"), "HTTP/1.1", "{}", a.body);
        assert_eq!(
            field(&a.body, "host"),
            format!("localhost:{h1}"),
            "{}",
            a.body
        );
        connections.push(field(&a.body, "connection").to_owned());
    }
    assert!(
        connections.iter().all(|c| c == &connections[0]),
        "HTTP/1.1 connections not reused: {connections:?}"
    );

    // h2 chosen by ALPN: HTTP/2, one connection for sequential and concurrent requests; an IP
    // host is verified against the certificate's IP address.
    let mut connections = Vec::new();
    for _ in 0..2 {
        let a = send(gw.local_addr(), "GET", "/h2/x", &[("authorization", &auth)]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(field(&a.body, "protocol"), "HTTP/2.0", "{}", a.body);
        connections.push(field(&a.body, "connection").to_owned());
    }
    let concurrent = futures_join(gw.local_addr(), "/h2/y", &auth, 4).await;
    for a in &concurrent {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        connections.push(field(&a.body, "connection").to_owned());
    }
    assert!(
        connections.iter().all(|c| c == &connections[0]),
        "HTTP/2 connection not shared: {connections:?}"
    );

    // Refused certificates are a 502, never the upstream's answer, and a warning that names
    // the upstream and says why.
    let logs = logs();
    for (route, why) in [
        ("wrongname", "not valid for name"),
        ("otherca", "UnknownIssuer"),
        ("system", "UnknownIssuer"),
    ] {
        let a = send(
            gw.local_addr(),
            "GET",
            &format!("/{route}/x"),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{route}: {}", a.body);
        assert!(!a.body.contains("protocol="), "{route}: {}", a.body);
        let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        assert!(
            logged
                .lines()
                .any(|l| l.contains(&format!("upstream={route}"))
                    && l.contains("TLS handshake failed")
                    && l.contains(why)),
            "{route}: no warning saying {why}:\n{logged}"
        );
    }
}

/// Everything the gateway logs in this test binary (a global subscriber: the gateway's workers
/// are threads of their own).
fn logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        struct Writer(&'static std::sync::Mutex<Vec<u8>>);
        impl std::io::Write for Writer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_writer(move || Writer(logs))
            .finish()
            .init();
        logs
    })
}

/// `n` requests to `path` at once.
async fn futures_join(
    addr: std::net::SocketAddr,
    path: &str,
    auth: &str,
    n: usize,
) -> Vec<support::Answer> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (path, auth) = (path.to_owned(), auth.to_owned());
            tokio::spawn(async move { send(addr, "GET", &path, &[("authorization", &auth)]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_client_certificate_reaches_an_upstream_that_requires_one() {
    support::nginx::nginx_binary();
    let ca = Ca::new("test CA");
    let client_ca = Ca::new("client CA");
    let nginx = Nginx::start(&[Site {
        client_ca: Some(client_ca.0.pem()),
        ..server_site(&ca, &["localhost"])
    }]);
    let fx = Fixture::new();
    let dir = fx.dir.path();
    let ca_file = ca.write(dir, "ca.pem");
    let (cert, key) = client_ca.issue(&[], "tollgate-gateway", ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("client.pem"), cert).unwrap();
    std::fs::write(dir.join("client-key.pem"), key).unwrap();
    let port = nginx.ports[0];
    let gw = gateway(
        &fx,
        &[
            (
                "mtls",
                format!("https://localhost:{port}"),
                // Relative paths: from the configuration file's directory.
                format!(
                    "ca_file = \"{}\"\nclient_certificate = \"client.pem\"\nclient_key = \"client-key.pem\"\n",
                    ca_file.display()
                ),
            ),
            (
                "anonymous",
                format!("https://localhost:{port}"),
                format!("ca_file = \"{}\"\n", ca_file.display()),
            ),
        ],
    )
    .await;
    let auth = bearer(&fx.token(|_| {}));
    let a = send(
        gw.local_addr(),
        "GET",
        "/mtls/x",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        field(&a.body, "client"),
        "CN=tollgate-gateway",
        "{}",
        a.body
    );
    // Without one, nginx answers 400 itself ("No required SSL certificate was sent").
    let a = send(
        gw.local_addr(),
        "GET",
        "/anonymous/x",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
}

#[test]
fn tls_keys_are_checked_when_the_configuration_is_read() {
    let fx = Fixture::new();
    let parse = |upstream: &str| {
        let text = fx.config(&format!(
            "[[upstreams]]\nname = \"u\"\n{upstream}\n[[routes]]\nprefix = \"/\"\n"
        ));
        tollgate_gateway::config::parse(&text, &fx.path())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse("url = \"https://localhost\"\nh2c = true");
    assert!(e.contains("upstreams[0].h2c") && e.contains("ALPN"), "{e}");
    let e = parse("url = \"http://localhost\"\nca_file = \"ca.pem\"");
    assert!(
        e.contains("upstreams[0].ca_file") && e.contains("https://"),
        "{e}"
    );
    let e = parse("url = \"https://localhost\"\nca_file = \"missing.pem\"");
    assert!(
        e.contains("upstreams[0].ca_file") && e.contains("missing.pem"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let e = parse("url = \"https://localhost\"\nclient_certificate = \"c.pem\"");
    assert!(
        e.contains("client_certificate") && e.contains("client_key"),
        "{e}"
    );
    let ca = Ca::new("test CA");
    let ca_file = ca.write(fx.dir.path(), "ca.pem");
    let e = parse(&format!(
        "url = \"https://localhost\"\nca_file = \"{}\"\nclient_certificate = \"ca.pem\"\nclient_key = \"ca.pem\"",
        ca_file.display()
    ));
    assert!(
        e.contains("upstreams[0].client_key") && e.contains("PRIVATE KEY"),
        "{e}"
    );
    // A key that is not the certificate's.
    let (cert, _) = ca.issue(&[], "a", ExtendedKeyUsagePurpose::ClientAuth);
    let (_, other_key) = ca.issue(&[], "b", ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(fx.dir.path().join("c.pem"), cert).unwrap();
    std::fs::write(fx.dir.path().join("k.pem"), other_key).unwrap();
    let e = parse(&format!(
        "url = \"https://localhost\"\nca_file = \"{}\"\nclient_certificate = \"c.pem\"\nclient_key = \"k.pem\"",
        ca_file.display()
    ));
    assert!(
        e.contains("upstreams[0].client_certificate") && e.contains("not a usable"),
        "{e}"
    );
    let e = parse("url = \"ftp://localhost\"");
    assert!(e.contains("http:// or https://"), "{e}");
}
