//! Certificates for tests (feature `test-util`): a private CA, server certificates for DNS names
//! or IP addresses, client certificates (valid or expired), written as the PEM files a `[tls]`
//! table names. Made with rcgen, so tests need no openssl CLI. Failures panic: this is for tests.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub certificate: String,
    /// Its private key, PEM (PKCS#8).
    pub private_key: String,
    der: Vec<u8>,
}

impl Issued {
    /// The certificate, DER (what `tollgate_core::ClientCertificate` is made of).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let certificate = dir.join(format!("{stem}.crt"));
        let private_key = dir.join(format!("{stem}.key"));
        write(&certificate, &self.certificate);
        write(&private_key, &self.private_key);
        (certificate, private_key)
    }
}

/// A self-signed client certificate (no CA) whose subject's common name is `name`: what an
/// RFC 8705 `self_signed_tls_client_auth` client registers by its thumbprint.
pub fn self_signed_client(name: &str) -> Issued {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("certificate parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("certificate key");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    Issued {
        certificate: cert.pem(),
        private_key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

impl TestCa {
    /// A new CA named `name` (its subject's common name).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's certificate, PEM (what `client_ca` or a client's trust store names).
    pub fn certificate(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `dir/<stem>.crt`; returns its path.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.crt"));
        write(&path, &self.pem);
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses); the first is also its
    /// subject's common name.
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A client certificate whose subject's common name is `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A client certificate that expired in 2000.
    pub fn expired_client(&self, name: &str) -> Issued {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth, true)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> Issued {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate parameters");
        if let Some(name) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *name);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(1999, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 1, 1);
        }
        let key = KeyPair::generate().expect("certificate key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signed certificate");
        Issued {
            certificate: cert.pem(),
            private_key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A TLS client for tests that is not rustls: Python's `ssl` (OpenSSL) with `http.client`,
/// driven line by line, so that one connection can be kept open across a server's reload.
/// Needs `python3` (Debian package `python3`); without it, [`PythonClient::start`] panics
/// saying so.
#[derive(Debug)]
pub struct PythonClient {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

/// What the server presented when a connection was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The `x5t#S256` (base64url SHA-256) of the server's certificate.
    pub certificate: String,
    /// The protocol ALPN chose, if any.
    pub alpn: Option<String>,
}

const PYTHON_CLIENT: &str = r#"
import base64, hashlib, http.client, json, socket, ssl, sys
ca = sys.argv[1]
def context(check_hostname=True):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = check_hostname
    if len(sys.argv) > 3:
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
conn = None
def out(o):
    print(json.dumps(o), flush=True)
for line in sys.stdin:
    parts = line.split()
    try:
        if parts[0] in ("open", "open_any_name"):
            host, port, name = parts[1], int(parts[2]), parts[3]
            ctx = context(parts[0] == "open")
            sock = socket.create_connection((host, port), timeout=10)
            tls = ctx.wrap_socket(sock, server_hostname=name)
            conn = http.client.HTTPSConnection(name, port, context=ctx, timeout=10)
            conn.sock = tls
            conn.auto_open = 0
            der = tls.getpeercert(binary_form=True)
            x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
            out({"certificate": x5t, "alpn": tls.selected_alpn_protocol()})
        elif parts[0] == "get":
            conn.request("GET", parts[1])
            response = conn.getresponse()
            out({"status": response.status, "body": response.read().decode("utf-8", "replace")})
    except Exception as e:
        conn = None
        out({"error": "%s: %s" % (type(e).__name__, e)})
"#;

impl PythonClient {
    /// A client that trusts the CAs of `ca` (a PEM file), presenting `client` (certificate and
    /// key files) when asked for a certificate.
    pub fn start(ca: &Path, client: Option<(&Path, &Path)>) -> Self {
        let mut command = std::process::Command::new("python3");
        command.arg("-c").arg(PYTHON_CLIENT).arg(ca);
        if let Some((certificate, key)) = client {
            command.arg(certificate).arg(key);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3, which the TLS tests need (Debian: python3): {e}")
            });
        let stdin = child.stdin.take().expect("python's stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("python's stdout"));
        PythonClient {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, line: &str) -> Result<serde_json::Value, String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{line}").expect("write to python");
        self.stdin.flush().expect("write to python");
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("read from python");
        let value: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("python answered {answer:?}: {e}"));
        match value.get("error") {
            Some(error) => Err(error.as_str().unwrap_or_default().to_owned()),
            None => Ok(value),
        }
    }

    fn opened(value: serde_json::Value) -> Opened {
        Opened {
            certificate: value["certificate"].as_str().unwrap_or_default().to_owned(),
            alpn: value["alpn"].as_str().map(str::to_owned),
        }
    }

    /// Opens a new connection to `addr`, asking for `server_name` (SNI, unless it is an IP
    /// address) and verifying the certificate for it. The previous connection is dropped.
    pub fn open(
        &mut self,
        addr: std::net::SocketAddr,
        server_name: &str,
    ) -> Result<Opened, String> {
        self.ask(&format!("open {} {} {server_name}", addr.ip(), addr.port()))
            .map(Self::opened)
    }

    /// [`open`](Self::open), trusting the certificate's chain but not checking its names (to
    /// see which certificate a name no certificate covers gets).
    pub fn open_any_name(
        &mut self,
        addr: std::net::SocketAddr,
        server_name: &str,
    ) -> Result<Opened, String> {
        self.ask(&format!(
            "open_any_name {} {} {server_name}",
            addr.ip(),
            addr.port()
        ))
        .map(Self::opened)
    }

    /// `GET path` on the open connection (never a new one): the status and body.
    pub fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let value = self.ask(&format!("get {path}"))?;
        let status = value["status"].as_u64().unwrap_or_default();
        Ok((
            u16::try_from(status).unwrap_or_default(),
            value["body"].as_str().unwrap_or_default().to_owned(),
        ))
    }
}

impl Drop for PythonClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `x5t#S256` of a DER certificate, as [`Opened::certificate`] shows it.
pub fn x5t(der: &[u8]) -> String {
    tollgate_core::ClientCertificate::from_der(der).x5t_s256()
}

/// `curl --cacert <ca>` on `https://<name>:<port><path>`, `name` resolved to `addr`, with more
/// `args` (`--http2`, say): `"<http version> <status>"` as curl reports them
/// (`-w '%{http_version} %{http_code}'`), or curl's error. Needs `curl` (Debian package `curl`).
pub fn curl(
    ca: &Path,
    addr: std::net::SocketAddr,
    name: &str,
    path: &str,
    args: &[&str],
) -> Result<String, String> {
    let port = addr.port();
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:{}", addr.ip())])
        .args(args)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run curl, which the TLS tests need (Debian: curl): {e}")
        });
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
