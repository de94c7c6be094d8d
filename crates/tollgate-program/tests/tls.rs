//! The accept loop under TLS (`serve_connections` with a `Listener` that has a `TlsAcceptor`)
//! over real sockets with a rustls client: the verified client certificate reaches the service
//! as a `ClientCertificate` extension on every request of the connection; a client that sends
//! nothing, or half a ClientHello, is closed at the header read deadline; a reload serves new
//! handshakes the new certificate while an open connection keeps working.

use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_core::ClientCertificate;
use tollgate_program::connection::{Limits, Listener, serve_connections};
use tollgate_program::tls::testing::{Issued, TestCa, self_signed_client};
use tollgate_program::tls::{ClientAuth, ServerTls, TlsAcceptor};

/// Serves, under `tls`, a service that answers each request with the `x5t#S256` of its
/// `ClientCertificate` extension (followed by ` self-signed` when it is not marked verified by
/// the CA), or `none`.
async fn start(tls: TlsAcceptor, limits: Limits) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    tokio::spawn(async move {
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let listener = Listener::new(tcp, Some(tls));
        serve_connections(listener, builder, limits, stopped, &graceful, |_peer| {
            hyper::service::service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                let body = match request.extensions().get::<ClientCertificate>() {
                    Some(certificate) if certificate.is_verified_by_ca() => certificate.x5t_s256(),
                    Some(certificate) => format!("{} self-signed", certificate.x5t_s256()),
                    None => "none".to_owned(),
                };
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
            })
        })
        .await;
    });
    addr
}

struct Files {
    dir: tempfile::TempDir,
    ca: TestCa,
    ca_file: std::path::PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tollgate test CA");
    let ca_file = ca.write(dir.path(), "ca");
    Files { dir, ca, ca_file }
}

fn client_config(
    ca: &TestCa,
    certificate: Option<&Issued>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.certificate().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(tollgate_program::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match certificate {
        Some(issued) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(issued.certificate.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(issued.private_key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>, name: &str) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .unwrap()
}

/// One HTTP/1.1 request on a kept-alive connection; the response body.
async fn get(stream: &mut Tls) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: tollgate\r\nX-Client-Cert: forged\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before the response");
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("content-length")
                .parse()
                .unwrap();
            if body.len() >= length {
                return body[..length].to_owned();
            }
        }
    }
}

fn limits(header_read_timeout: Duration) -> Limits {
    Limits {
        header_read_timeout,
        ..Limits::default()
    }
}

#[tokio::test]
async fn the_verified_client_certificate_reaches_every_request_of_the_connection() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let tls = ServerTls::new(cert, key).client_auth(ClientAuth::Optional, &f.ca_file);
    let addr = start(TlsAcceptor::new(tls).unwrap(), Limits::default()).await;

    let client = f.ca.client("client-1");
    let expected = ClientCertificate::from_der(client.der()).x5t_s256();
    let mut stream = connect(
        addr,
        client_config(&f.ca, Some(&client), &[b"http/1.1"]),
        "localhost",
    )
    .await;
    assert_eq!(get(&mut stream).await, expected);
    assert_eq!(get(&mut stream).await, expected, "the second request too");

    // Optional: a client with none is served, and no header makes one.
    let mut stream = connect(addr, client_config(&f.ca, None, &[]), "localhost").await;
    assert_eq!(get(&mut stream).await, "none");
}

#[tokio::test]
async fn the_client_certificate_reaches_http2_requests() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let tls = ServerTls::new(cert, key).client_auth(ClientAuth::Required, &f.ca_file);
    let addr = start(TlsAcceptor::new(tls).unwrap(), Limits::default()).await;
    let client = f.ca.client("client-2");
    let expected = ClientCertificate::from_der(client.der()).x5t_s256();
    let stream = connect(
        addr,
        client_config(&f.ca, Some(&client), &[b"h2", b"http/1.1"]),
        "localhost",
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for _ in 0..2 {
        let request = http::Request::get("https://localhost/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, expected.as_bytes());
    }
}

#[tokio::test]
async fn a_required_client_certificate_must_be_valid() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let tls = ServerTls::new(cert, key).client_auth(ClientAuth::Required, &f.ca_file);
    let acceptor = TlsAcceptor::new(tls).unwrap();
    let addr = start(acceptor.clone(), Limits::default()).await;

    let refused = |stream: Tls| async move {
        // TLS 1.3: the client finishes first; the server's refusal comes as an alert on read.
        let mut stream = stream;
        let _ = stream
            .write_all(b"GET / HTTP/1.1\r\nHost: tollgate\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time");
        assert!(matches!(read, Ok(0) | Err(_)), "served: {read:?}");
    };
    let try_connect = |config: Arc<rustls::ClientConfig>| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    };
    for config in [
        client_config(&f.ca, None, &[]),
        client_config(&f.ca, Some(&f.ca.expired_client("expired")), &[]),
        client_config(
            &f.ca,
            Some(&TestCa::new("another CA").client("stranger")),
            &[],
        ),
    ] {
        if let Ok(stream) = try_connect(config).await {
            refused(stream).await;
        }
    }
    assert_eq!(acceptor.stats().handshake_failures, 3);

    let client = f.ca.client("client-3");
    let mut stream = connect(addr, client_config(&f.ca, Some(&client), &[]), "localhost").await;
    assert_eq!(
        get(&mut stream).await,
        ClientCertificate::from_der(client.der()).x5t_s256()
    );
}

/// Whether the server closed the connection within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn silent_and_half_handshakes_are_closed_at_the_header_read_deadline() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let acceptor = TlsAcceptor::new(ServerTls::new(cert, key)).unwrap();
    let addr = start(acceptor.clone(), limits(Duration::from_secs(1))).await;

    let mut silent = TcpStream::connect(addr).await.unwrap();
    // The start of a TLS record holding a ClientHello of 512 bytes, and no more of it.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .unwrap();
    // A complete handshake and then no request: the same deadline.
    let mut idle = connect(addr, client_config(&f.ca, None, &[]), "localhost").await;

    let started = std::time::Instant::now();
    assert!(!closed_within(&mut silent, Duration::from_millis(500)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(closed_within(&mut half, Duration::from_secs(1)).await);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle TLS connection: {read:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(acceptor.stats().handshake_failures, 2);
}

#[tokio::test]
async fn a_reload_serves_new_handshakes_the_new_certificate_and_keeps_open_connections() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let acceptor = TlsAcceptor::new(ServerTls::new(&cert, &key)).unwrap();
    let addr = start(acceptor.clone(), Limits::default()).await;
    let config = client_config(&f.ca, None, &[]);
    let served = |stream: &Tls| {
        stream.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    let mut before = connect(addr, config.clone(), "localhost").await;
    let old = served(&before);
    assert_eq!(get(&mut before).await, "none");

    // A bad file: refused, one line naming it; the old certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    let e = acceptor.reload().unwrap_err().to_string();
    assert!(
        e.starts_with(&key.display().to_string()) && !e.contains('\n'),
        "{e}"
    );
    let other = connect(addr, config.clone(), "localhost").await;
    assert_eq!(served(&other), old);

    let renewed = f.ca.server(&["localhost"]);
    renewed.write(f.dir.path(), "server");
    acceptor.reload().unwrap();
    let after = connect(addr, config.clone(), "localhost").await;
    assert_eq!(served(&after), renewed.der());
    assert_ne!(served(&after), old);
    assert_eq!(
        get(&mut before).await,
        "none",
        "the open connection still works"
    );
    let stats = acceptor.stats();
    assert_eq!((stats.reloads, stats.failed_reloads), (1, 1));
}

#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let acceptor = TlsAcceptor::new(ServerTls::new(&cert, &key)).unwrap();
    let addr = start(acceptor.clone(), Limits::default()).await;
    let reloading = tollgate_program::tls::reload::spawn(acceptor.clone());
    let renewed = f.ca.server(&["localhost"]);
    renewed.write(f.dir.path(), "server");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stream = connect(addr, client_config(&f.ca, None, &[]), "localhost").await;
        if stream.get_ref().1.peer_certificates().unwrap()[0].as_ref() == renewed.der() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(acceptor.stats().reloads, 1);
    reloading.abort();
}

#[test]
fn a_key_that_is_not_the_certificates_is_named() {
    let f = files();
    let (cert, _) = f.ca.server(&["localhost"]).write(f.dir.path(), "a");
    let (_, other_key) = f.ca.server(&["localhost"]).write(f.dir.path(), "b");
    let e = TlsAcceptor::new(ServerTls::new(&cert, &other_key))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&other_key.display().to_string())
            && e.contains("not the private key")
            && e.contains(&cert.display().to_string())
            && !e.contains('\n'),
        "{e}"
    );
    let e = TlsAcceptor::new(ServerTls::new(&other_key, &other_key))
        .unwrap_err()
        .to_string();
    assert!(e.contains("b.key: no CERTIFICATE"), "{e}");
}

#[tokio::test]
async fn the_http_version_is_the_one_alpn_chose() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let addr = start(
        TlsAcceptor::new(ServerTls::new(cert, key)).unwrap(),
        Limits::default(),
    )
    .await;
    // ALPN http/1.1 (or none), then the HTTP/2 preface: closed, not served as HTTP/2.
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut stream = connect(addr, client_config(&f.ca, None, alpn), "localhost").await;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // ALPN h2, then an HTTP/1.1 request: closed too.
    let mut stream = connect(addr, client_config(&f.ca, None, &[b"h2"]), "localhost").await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: tollgate\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // ALPN http/1.1 and HTTP/1.1: served.
    let mut stream = connect(
        addr,
        client_config(&f.ca, None, &[b"http/1.1"]),
        "localhost",
    )
    .await;
    assert_eq!(get(&mut stream).await, "none");
}

#[tokio::test]
async fn self_signed_clients_are_accepted_for_their_thumbprint_only() {
    let f = files();
    let (cert, key) = f.ca.server(&["localhost"]).write(f.dir.path(), "server");
    let refused = |addr: SocketAddr, config: Arc<rustls::ClientConfig>| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let Ok(mut stream) = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
        else {
            return;
        };
        let _ = stream
            .write_all(b"GET / HTTP/1.1\r\nHost: tollgate\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time");
        assert!(matches!(read, Ok(0) | Err(_)), "served: {read:?}");
    };

    // With client_ca: a CA-issued certificate is marked verified, a self-signed one (or one of
    // another CA) is accepted for its thumbprint, unmarked; none is refused.
    let tls = ServerTls::new(&cert, &key)
        .client_auth(ClientAuth::Required, &f.ca_file)
        .self_signed_clients(true);
    let addr = start(TlsAcceptor::new(tls).unwrap(), Limits::default()).await;
    let issued = f.ca.client("client-ca");
    let mut stream = connect(addr, client_config(&f.ca, Some(&issued), &[]), "localhost").await;
    assert_eq!(
        get(&mut stream).await,
        ClientCertificate::from_der(issued.der()).x5t_s256()
    );
    for own in [
        self_signed_client("alice-device"),
        TestCa::new("another CA").client("stranger"),
    ] {
        let mut stream = connect(addr, client_config(&f.ca, Some(&own), &[]), "localhost").await;
        assert_eq!(
            get(&mut stream).await,
            format!(
                "{} self-signed",
                ClientCertificate::from_der(own.der()).x5t_s256()
            )
        );
    }
    refused(addr, client_config(&f.ca, None, &[])).await;

    // Without client_ca: any certificate the client proves, never marked; optional: none is
    // served too.
    let tls = ServerTls::new(&cert, &key).client_auth_self_signed(ClientAuth::Optional);
    let addr = start(TlsAcceptor::new(tls).unwrap(), Limits::default()).await;
    let own = self_signed_client("bob-device");
    let mut stream = connect(addr, client_config(&f.ca, Some(&own), &[]), "localhost").await;
    assert_eq!(
        get(&mut stream).await,
        format!(
            "{} self-signed",
            ClientCertificate::from_der(own.der()).x5t_s256()
        )
    );
    let mut stream = connect(addr, client_config(&f.ca, Some(&issued), &[]), "localhost").await;
    assert!(
        get(&mut stream).await.ends_with(" self-signed"),
        "no CA, nothing verified"
    );
    let mut stream = connect(addr, client_config(&f.ca, None, &[]), "localhost").await;
    assert_eq!(get(&mut stream).await, "none");
}
