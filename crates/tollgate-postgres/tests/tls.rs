//! `sslmode` against a real PostgreSQL of the test's own with `ssl = on` and a certificate for
//! `localhost` from a private CA made here (rcgen): what each mode accepts and refuses, as
//! libpq's, and that the store works over TLS.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tollgate_core::{RevocationEvent, UnixMillis};
use tollgate_postgres::testing::{PostgresServer, client};
use tollgate_postgres::{PostgresOptions, PostgresStore, PostgresTarget};
use tollgate_store::{Record, Store};

fn options() -> PostgresOptions {
    PostgresOptions::default()
        .connect_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(5))
}

/// A private CA's certificate (PEM) and its issuer.
fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// A server presenting a certificate for `localhost` (only) from `ca`.
fn tls_server(ca: &CertifiedIssuer<'static, KeyPair>) -> PostgresServer {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "postgres");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, ca).unwrap();
    PostgresServer::start_private_with_tls(&cert.pem(), &key.serialize_pem())
}

fn target(host: &str, port: u16, query: &str) -> PostgresTarget {
    PostgresTarget::new(&format!(
        "postgresql://tollgate@{host}:{port}/tollgate?{query}"
    ))
    .unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Whether the connection `target` makes is encrypted, as the server sees it.
async fn encrypted(target: &PostgresTarget) -> bool {
    client(target)
        .await
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn connect_error(target: PostgresTarget) -> String {
    PostgresStore::connect(target, options())
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn sslmode_verifies_as_libpq_does() {
    let ca = new_ca("test CA");
    let other = new_ca("another CA");
    let server = tls_server(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let other_file = write(dir.path(), "other.pem", &other.pem());
    let port = server.port();
    let root = |file: &Path| format!("sslrootcert={}", file.display());

    // verify-full with the right CA and host name: encrypted, and the store works.
    let full = target(
        "localhost",
        port,
        &format!("sslmode=verify-full&{}", root(&ca_file)),
    );
    assert!(encrypted(&full).await);
    let store = PostgresStore::connect(full, options()).await.unwrap();
    store
        .commit(vec![Record::Revocation(RevocationEvent::Token {
            jti: "over-tls".into(),
            expires_at: UnixMillis(9_000_000),
        })])
        .await
        .unwrap();

    // Another CA: refused, under verify-ca and under require with a root certificate.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = connect_error(target(
            "localhost",
            port,
            &format!("sslmode={mode}&{}", root(&other_file)),
        ))
        .await;
        assert!(
            e.contains("UnknownIssuer") && !e.contains('\n'),
            "{mode}: {e}"
        );
    }

    // The certificate names `localhost`, not 127.0.0.1: verify-full refuses, verify-ca (the
    // chain only) accepts.
    let e = connect_error(target(
        "127.0.0.1",
        port,
        &format!("sslmode=verify-full&{}", root(&ca_file)),
    ))
    .await;
    assert!(e.contains("not valid for name"), "{e}");
    let ca_only = target(
        "127.0.0.1",
        port,
        &format!("sslmode=verify-ca&{}", root(&ca_file)),
    );
    assert!(encrypted(&ca_only).await);

    // require without a root certificate: encrypted, not verified (libpq's meaning).
    assert!(encrypted(&target("127.0.0.1", port, "sslmode=require")).await);
    // prefer (the default) is encrypted when the server offers it; disable is plain.
    assert!(encrypted(&target("127.0.0.1", port, "sslmode=prefer")).await);
    assert!(!encrypted(&target("127.0.0.1", port, "sslmode=disable")).await);
}

#[tokio::test]
async fn sslcert_and_sslkey_present_a_client_certificate() {
    let ca = new_ca("test CA");
    let client_ca = new_ca("client CA");
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &ca).unwrap();
    let server = PostgresServer::start_private_with_client_certificates(
        &server_cert.pem(),
        &server_key.serialize_pem(),
        &client_ca.pem(),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "tollgate");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&client_key, &client_ca).unwrap();
    let cert_file = write(dir.path(), "client.pem", &client_cert.pem());
    let key_file = write(dir.path(), "client-key.pem", &client_key.serialize_pem());
    let verified = format!("sslmode=verify-full&sslrootcert={}", ca_file.display());

    let with_certificate = target(
        "localhost",
        server.port(),
        &format!(
            "{verified}&sslcert={}&sslkey={}",
            cert_file.display(),
            key_file.display()
        ),
    );
    assert!(encrypted(&with_certificate).await);
    PostgresStore::connect(with_certificate, options())
        .await
        .unwrap();
    let e = connect_error(target("localhost", server.port(), &verified)).await;
    assert!(e.contains("requires a valid client certificate"), "{e}");
}

/// SCRAM with channel binding (`-PLUS`): the password exchange is bound to the TLS connection,
/// which tokio-postgres's `channel_binding=require` insists on.
#[tokio::test]
async fn scram_binds_to_the_tls_connection() {
    let ca = new_ca("test CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    let server = PostgresServer::start_private_with_password_and_tls(
        "s3cret",
        &cert.pem(),
        &key.serialize_pem(),
    );
    let bound = target(
        "127.0.0.1",
        server.port(),
        "sslmode=require&channel_binding=require",
    )
    .with_password(Some("s3cret".into()));
    assert!(encrypted(&bound).await);
    PostgresStore::connect(bound, options()).await.unwrap();
}

/// A Unix socket has no host name and PostgreSQL speaks no TLS on it: `prefer` (the default)
/// connects plain, as before TLS existed; `require` is refused with the reason.
#[tokio::test]
async fn a_unix_socket_connects_under_prefer() {
    let server = tls_server(&new_ca("test CA"));
    let conninfo = format!(
        "host='{}' port={} user=tollgate dbname=tollgate",
        server.socket_dir().display(),
        server.port()
    );
    let unix = PostgresTarget::new(&conninfo).unwrap();
    assert!(!encrypted(&unix).await);
    PostgresStore::connect(unix, options()).await.unwrap();
    let e =
        connect_error(PostgresTarget::new(&format!("{conninfo} sslmode=require")).unwrap()).await;
    assert!(e.contains("TLS") && !e.contains('\n'), "{e}");
}

#[tokio::test]
async fn require_refuses_a_server_without_tls() {
    let server = PostgresServer::start_private();
    let plain = target("127.0.0.1", server.port(), "sslmode=require");
    let e = connect_error(plain).await;
    assert!(
        e.contains("TLS") && e.contains("127.0.0.1") && !e.contains('\n'),
        "{e}"
    );
    // prefer falls back to plain, as libpq's.
    assert!(!encrypted(&target("127.0.0.1", server.port(), "sslmode=prefer")).await);
}
