//! `tollgate serve` with `[tls]`, the real binary over real sockets, with clients that are not
//! rustls (curl, Python's `ssl`): HTTP/1.1 and HTTP/2 by ALPN, the certificate chosen by SNI,
//! reloads on a changed file and on SIGHUP that keep an open connection working, required
//! client certificates, and bad files refused before anything listens (for `tollgate gateway`
//! too).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;
use tollgate_program::tls::testing::{PythonClient, TestCa, curl, self_signed_client, x5t};

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// A CA, the default certificate (`localhost`, `127.0.0.1`) and one for `b.test`.
struct Certificates {
    ca: TestCa,
    ca_file: PathBuf,
    default: Vec<u8>,
    b: Vec<u8>,
}

fn certificates(dir: &Path) -> Certificates {
    let ca = TestCa::new("tollgate test CA");
    let ca_file = ca.write(dir, "ca");
    let default = ca.server(&["localhost", "127.0.0.1"]);
    default.write(dir, "server");
    let b = ca.server(&["b.test"]);
    b.write(dir, "b");
    Certificates {
        ca,
        ca_file,
        default: default.der().to_vec(),
        b: b.der().to_vec(),
    }
}

fn start(dir: &Path, tls: &str) -> Server {
    let config = config(dir).replace("data_dir =", "store = \"memory\"\ndata_dir =");
    Server::start(
        dir,
        &format!(
            "{config}\n[tls]\ncertificate = \"server.crt\"\nprivate_key = \"server.key\"\n{tls}"
        ),
    )
}

fn addr(server: &Server) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

#[test]
fn serve_answers_https_over_http1_and_http2_with_the_certificate_sni_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let server = start(
        dir.path(),
        "[[tls.certificates]]\ncertificate = \"b.crt\"\nprivate_key = \"b.key\"\n",
    );
    let addr = addr(&server);
    let ca = &certs.ca_file;
    assert_eq!(
        curl(ca, addr, "localhost", DISCOVERY, &["--http1.1"]).unwrap(),
        "1.1 200"
    );
    assert_eq!(
        curl(ca, addr, "localhost", DISCOVERY, &["--http2"]).unwrap(),
        "2 200"
    );
    // b.test's certificate is served for b.test (curl verifies the name against it).
    assert_eq!(
        curl(ca, addr, "b.test", DISCOVERY, &["--http2"]).unwrap(),
        "2 200"
    );
    // Plain HTTP is not served on a TLS listener.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "5", &server.url(DISCOVERY)])
        .output()
        .unwrap();
    assert!(!plain.status.success());

    let mut client = PythonClient::start(ca, None);
    let b = client.open(addr, "b.test").unwrap();
    assert_eq!(b.certificate, x5t(&certs.b));
    assert_eq!(client.get(DISCOVERY).unwrap().0, 200);
    // No SNI (an IP address), or a name no certificate covers: the default one.
    let none = client.open(addr, "127.0.0.1").unwrap();
    assert_eq!(none.certificate, x5t(&certs.default));
    assert_eq!(none.alpn.as_deref(), Some("http/1.1"));
    let unknown = client.open_any_name(addr, "c.test").unwrap();
    assert_eq!(unknown.certificate, x5t(&certs.default));
    assert!(
        client.open(addr, "c.test").is_err(),
        "c.test has no certificate"
    );
}

/// Waits until a log line contains every one of `parts`.
fn wait_for_log(server: &Server, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|line| parts.iter().all(|p| line.contains(p)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}: {:?}",
            server.logs.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens connections until one is served `certificate`.
fn wait_for_certificate(client: &mut PythonClient, addr: SocketAddr, certificate: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.open(addr, "localhost").unwrap().certificate != x5t(certificate) {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_reloads_its_certificates_on_change_and_on_sighup_keeping_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let server = start(dir.path(), "");
    let addr = addr(&server);
    let mut kept = PythonClient::start(&certs.ca_file, None);
    assert_eq!(
        kept.open(addr, "localhost").unwrap().certificate,
        x5t(&certs.default)
    );
    assert_eq!(kept.get(DISCOVERY).unwrap().0, 200);
    let mut fresh = PythonClient::start(&certs.ca_file, None);

    // A bad key: one line naming it, and the old certificate is still served.
    let key = dir.path().join("server.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    wait_for_log(&server, &["TLS reload failed", &key.display().to_string()]);
    assert_eq!(
        fresh.open(addr, "localhost").unwrap().certificate,
        x5t(&certs.default)
    );

    // New files, no signal: the change is seen.
    let renewed = certs.ca.server(&["localhost"]);
    renewed.write(dir.path(), "server");
    wait_for_certificate(&mut fresh, addr, renewed.der());
    wait_for_log(&server, &["TLS certificates reloaded"]);
    assert_eq!(kept.get(DISCOVERY).unwrap().0, 200, "the open connection");

    // SIGHUP.
    let again = certs.ca.server(&["localhost"]);
    again.write(dir.path(), "server");
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for_certificate(&mut fresh, addr, again.der());
    wait_for_log(&server, &["TLS certificates reloaded", "SIGHUP"]);
    assert_eq!(kept.get(DISCOVERY).unwrap().0, 200, "the open connection");
    assert_eq!(fresh.get(DISCOVERY).unwrap().0, 200);
    server.stop();
}

#[test]
fn serve_with_required_client_certificates_refuses_none_expired_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let clients_ca = TestCa::new("clients CA");
    clients_ca.write(dir.path(), "clients-ca");
    let server = start(
        dir.path(),
        "client_auth = \"required\"\nclient_ca = \"clients-ca.crt\"\n",
    );
    let addr = addr(&server);
    let (cert, key) = clients_ca.client("svc").write(dir.path(), "svc");
    let mut valid = PythonClient::start(&certs.ca_file, Some((&cert, &key)));
    valid.open(addr, "localhost").unwrap();
    assert_eq!(valid.get(DISCOVERY).unwrap().0, 200);

    let (expired_cert, expired_key) = clients_ca.expired_client("old").write(dir.path(), "old");
    let (stranger_cert, stranger_key) = TestCa::new("another CA")
        .client("stranger")
        .write(dir.path(), "stranger");
    for client in [
        None,
        Some((&expired_cert, &expired_key)),
        Some((&stranger_cert, &stranger_key)),
    ] {
        let mut client = PythonClient::start(
            &certs.ca_file,
            client.map(|(c, k): (&PathBuf, &PathBuf)| (c.as_path(), k.as_path())),
        );
        // TLS 1.3: the server's refusal reaches the client at its first read.
        let refused = client
            .open(addr, "localhost")
            .and_then(|_| client.get(DISCOVERY));
        assert!(refused.is_err(), "{refused:?}");
    }
    assert_eq!(
        curl(&certs.ca_file, addr, "localhost", DISCOVERY, &[]).map_err(|_| ()),
        Err(())
    );
}

/// Runs `tollgate <command> --config <path>`, which must fail before listening; its stderr.
fn refused(command: &str, path: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([command, "--config"])
        .arg(path)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("is serving"), "{stderr}");
    stderr
}

#[test]
fn bad_or_mismatched_files_are_one_line_naming_the_file_before_anything_listens() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let config = config(dir.path()).replace("data_dir =", "store = \"memory\"\ndata_dir =");
    let path = dir.path().join("tollgate.toml");

    // serve: b.test's key with the default certificate.
    std::fs::write(
        &path,
        format!("{config}\n[tls]\ncertificate = \"server.crt\"\nprivate_key = \"b.key\"\n"),
    )
    .unwrap();
    let stderr = refused("serve", &path);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let key = dir.path().join("b.key").display().to_string();
    let line = stderr
        .lines()
        .find(|l| l.contains("not the private key"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&key) && line.contains("server.crt"), "{line}");

    // gateway: a certificate file that is not there.
    let gateway = dir.path().join("gateway.toml");
    let key_file = dir.path().join("k1.der");
    std::fs::write(
        &key_file,
        tollgate_core::SigningKey::generate(tollgate_core::SigningAlgorithm::EdDSA, "k1")
            .unwrap()
            .to_der(),
    )
    .unwrap();
    std::fs::write(
        &gateway,
        "listen = \"127.0.0.1:0\"\nissuer = \"https://issuer\"\naudience = [\"api\"]\n\
         [keys]\nfiles = [{ kid = \"k1\", algorithm = \"EdDSA\", file = \"k1.der\" }]\n\
         [ops]\nlisten = \"127.0.0.1:0\"\n\
         [tls]\ncertificate = \"missing.crt\"\nprivate_key = \"server.key\"\n\
         [[upstreams]]\nname = \"app\"\nurl = \"http://127.0.0.1:9\"\n[[routes]]\nprefix = \"/\"\n",
    )
    .unwrap();
    let stderr = refused("gateway", &gateway);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let missing = dir.path().join("missing.crt").display().to_string();
    assert!(stderr.lines().any(|l| l.contains(&missing)), "{stderr}");
    drop(certs);
}

/// `curl` POSTing `form` to `https://localhost:<port><path>` with the client certificate
/// `cert` (certificate and key files), if any: the status and the body.
fn post_with_certificate(
    ca: &Path,
    addr: SocketAddr,
    path: &str,
    form: &[&str],
    cert: Option<(&Path, &Path)>,
) -> (u16, serde_json::Value) {
    let port = addr.port();
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:{}", addr.ip())]);
    for field in form {
        command.args(["--data-urlencode", field]);
    }
    if let Some((certificate, key)) = cert {
        command.arg("--cert").arg(certificate).arg("--key").arg(key);
    }
    let output = command
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl (Debian: curl)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The payload of a JWT.
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn tls_client_auth_over_the_listener_issues_certificate_bound_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let clients = TestCa::new("clients CA");
    clients.write(dir.path(), "clients-ca");
    let svc = clients.client("svc");
    let (svc_cert, svc_key) = svc.write(dir.path(), "svc");
    let (other_cert, other_key) = clients.client("other").write(dir.path(), "other");
    let server = start(
        dir.path(),
        "client_auth = \"optional\"\nclient_ca = \"clients-ca.crt\"\n\
         [[clients]]\nid = \"mtls-svc\"\ngrants = [\"client_credentials\"]\n\
         scopes = [\"orders:read\"]\ntoken_endpoint_auth_method = \"tls_client_auth\"\n\
         tls_client_auth_subject_dn = \"CN=svc\"\n",
    );
    let addr = addr(&server);
    let ca = &certs.ca_file;
    let token_form = ["grant_type=client_credentials", "client_id=mtls-svc"];
    let (status, body) = post_with_certificate(
        ca,
        addr,
        "/connect/token",
        &token_form,
        Some((&svc_cert, &svc_key)),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&token);
    assert_eq!(claims["cnf"]["x5t#S256"], x5t(svc.der()), "{claims}");

    // Introspection, authenticated the same way, shows the binding.
    let (status, answer) = post_with_certificate(
        ca,
        addr,
        "/connect/introspect",
        &["client_id=mtls-svc", &format!("token={token}")],
        Some((&svc_cert, &svc_key)),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["cnf"]["x5t#S256"], x5t(svc.der()));

    // Another certificate of the same CA, or none: 401 invalid_client.
    for cert in [Some((other_cert.as_path(), other_key.as_path())), None] {
        let (status, body) = post_with_certificate(ca, addr, "/connect/token", &token_form, cert);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
    }
}

#[test]
fn self_signed_clients_authenticate_by_thumbprint_and_never_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let device = self_signed_client("svc");
    let (device_cert, device_key) = device.write(dir.path(), "device");
    let (stranger_cert, stranger_key) = self_signed_client("svc").write(dir.path(), "stranger");
    let server = start(
        dir.path(),
        &format!(
            "client_auth = \"optional\"\nself_signed_clients = true\n\
             [[clients]]\nid = \"device\"\ngrants = [\"client_credentials\"]\n\
             scopes = [\"orders:read\"]\ntoken_endpoint_auth_method = \"self_signed_tls_client_auth\"\n\
             certificate_thumbprints = [\"{}\"]\n\
             [[clients]]\nid = \"mtls-svc\"\ngrants = [\"client_credentials\"]\n\
             scopes = [\"orders:read\"]\ntoken_endpoint_auth_method = \"tls_client_auth\"\n\
             tls_client_auth_subject_dn = \"CN=svc\"\n",
            x5t(device.der())
        ),
    );
    let addr = addr(&server);
    let ca = &certs.ca_file;

    // The registered self-signed certificate: a token bound to it.
    let form = ["grant_type=client_credentials", "client_id=device"];
    let (status, body) = post_with_certificate(
        ca,
        addr,
        "/connect/token",
        &form,
        Some((&device_cert, &device_key)),
    );
    assert_eq!(status, 200, "{body}");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], x5t(device.der()), "{claims}");

    // Another self-signed certificate with the same name: not the registered one.
    let (status, body) = post_with_certificate(
        ca,
        addr,
        "/connect/token",
        &form,
        Some((&stranger_cert, &stranger_key)),
    );
    assert_eq!((status, &body["error"]), (401, &"invalid_client".into()));

    // A self-signed certificate naming itself CN=svc is no CA's word: tls_client_auth refuses.
    let (status, body) = post_with_certificate(
        ca,
        addr,
        "/connect/token",
        &["grant_type=client_credentials", "client_id=mtls-svc"],
        Some((&device_cert, &device_key)),
    );
    assert_eq!((status, &body["error"]), (401, &"invalid_client".into()));
}
