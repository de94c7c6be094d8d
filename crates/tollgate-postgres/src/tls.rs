//! TLS to PostgreSQL with libpq's `sslmode` meanings, on rustls with the aws-lc-rs provider the
//! workspace uses: a `MakeTlsConnect` of our own (a few lines around `tokio-rustls`) rather than
//! a connector crate, so that no second crypto library (`ring`) comes in.
//!
//! What is checked, as libpq does:
//!
//! | `sslmode` | encrypted | chain checked against `sslrootcert` | host name checked |
//! |---|---|---|---|
//! | `disable` | no | — | — |
//! | `prefer` (default) | if the server can | if `sslrootcert` is set | no |
//! | `require` | yes | if `sslrootcert` is set | no |
//! | `verify-ca` | yes | yes (`sslrootcert` required) | no |
//! | `verify-full` | yes | yes (`sslrootcert` required) | yes (DNS name, or IP address) |
//!
//! Whatever is not checked, the handshake's own signatures still are: an unverified connection
//! is private against a passive listener, not against a man in the middle.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Socket, config::SslMode as WireMode};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` (plain first, TLS if the server insists) is not offered: no
            // server of tollgate's needs it, and it reads like more than it gives.
            other => {
                return Err(format!(
                    "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres negotiates: whether TLS is tried, and whether it is required.
    pub(crate) fn wire(self) -> WireMode {
        match self {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }
}

/// The TLS options of a connection string: `sslmode`, `sslrootcert`, `sslcert`, `sslkey`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SslOptions {
    pub(crate) mode: Option<SslMode>,
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

impl SslOptions {
    /// Takes `key=value` if it is one of these options: `Ok(true)`; `Ok(false)` for any other
    /// key.
    pub(crate) fn take(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "sslmode" => self.mode = Some(SslMode::parse(value)?),
            "sslrootcert" if value == "system" => {
                return Err(
                    "sslrootcert=system is not supported: name the CA file (sslrootcert=/path/ca.pem)"
                        .into(),
                );
            }
            "sslrootcert" => self.root_cert = Some(PathBuf::from(value)),
            "sslcert" => self.cert = Some(PathBuf::from(value)),
            "sslkey" => self.key = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(crate) fn mode(&self) -> SslMode {
        self.mode.unwrap_or(SslMode::Prefer)
    }

    /// The connector these options ask for, their files read. One-line errors naming the
    /// option and the file.
    pub(crate) fn connector(&self) -> Result<MakeRustls, String> {
        let mode = self.mode();
        let roots = match &self.root_cert {
            Some(path) => Some(Arc::new(roots(path)?)),
            None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(format!(
                    "sslmode={} needs sslrootcert=/path/to/ca.pem (the CA that signed the \
                     server's certificate)",
                    mode.as_str()
                ));
            }
            None => None,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => {
                WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?
            }
            // libpq: with a root certificate, `require` (and `prefer`) check the chain as
            // `verify-ca` does.
            (_, roots) => Arc::new(ChainOrAny {
                roots,
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert).map_err(|e| format!("sslcert: {e}"))?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey: {}: {}", key.display(), pem_reason(e)))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    format!(
                        "sslcert, sslkey: {}, {}: not a usable certificate and key: {e}",
                        cert.display(),
                        key.display()
                    )
                })?
            }
            _ => return Err("sslcert and sslkey go together: set both or neither".into()),
        };
        Ok(MakeRustls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The certificates of a PEM file, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |why: String| format!("{}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_reason(e)))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

/// `sslrootcert`'s certificates as trust anchors.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path).map_err(|e| format!("sslrootcert: {e}"))? {
        store.add(cert).map_err(|e| {
            format!(
                "sslrootcert: {}: not a usable CA certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(store)
}

/// What a server certificate must satisfy short of its name: a chain to a root of
/// `sslrootcert` (`verify-ca`, and libpq's `require`/`prefer` with a root certificate), or
/// nothing (`prefer` and `require` without one: libpq's "encrypted, not authenticated"). The
/// handshake signature is checked against the certificate either way.
#[derive(Debug)]
struct ChainOrAny {
    /// `None`: any certificate.
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOrAny {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Makes the TLS connector for each connection (tokio-postgres asks per host).
#[derive(Clone)]
pub(crate) struct MakeRustls {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustls")
    }
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    // Called for every connection, even one that will not use TLS (`sslmode=disable`, a Unix
    // socket, whose `domain` is empty): a name TLS cannot use fails the handshake, if any, not
    // the connection.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        Ok(RustlsConnect {
            connector: self.connector.clone(),
            name: ServerName::try_from(domain.to_owned()).map_err(|_| domain.to_owned()),
        })
    }
}

/// The TLS handshake with one host.
pub(crate) struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    /// The host, or what it was if TLS cannot name it.
    name: Result<ServerName<'static>, String>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let name = self.name.map_err(|host| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{host}` is not a host name or IP address TLS can verify"),
                )
            })?;
            self.connector.connect(name, stream).await.map(RustlsStream)
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for RustlsStream {
    // SCRAM-SHA-256-PLUS binds the password exchange to this TLS connection: a man in the
    // middle of an unverified one (`require`) cannot relay it to the server.
    fn channel_binding(&self) -> ChannelBinding {
        self.0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| tls_server_end_point(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929 §4.1's `tls-server-end-point`: the hash of the server's certificate (DER), with
/// the hash function of the certificate's signature algorithm (SHA-256 for MD5 and SHA-1), as
/// PostgreSQL computes it. None for a signature without such a hash (Ed25519, RSA-PSS): SCRAM
/// then goes without `-PLUS`.
fn tls_server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest;
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE {
    // algorithm OBJECT IDENTIFIER, ... }, ... }
    let (fields, _) = der(certificate, 0x30)?;
    let (_tbs, rest) = der(fields, 0x30)?;
    let (algorithm, _) = der(rest, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    // 1.2.840.113549.1.1.x (PKCS #1) and 1.2.840.10045.4.x (ECDSA), DER-encoded.
    const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let hash = if let Some(x) = oid.strip_prefix(PKCS1) {
        match x {
            // md5, sha1, sha256 WithRSAEncryption
            [0x04] | [0x05] | [0x0b] => &digest::SHA256,
            [0x0c] => &digest::SHA384,
            [0x0d] => &digest::SHA512,
            _ => return None,
        }
    } else if let Some(x) = oid.strip_prefix(ECDSA) {
        match x {
            // ecdsa-with-SHA1, ecdsa-with-SHA256, -SHA384, -SHA512
            [0x01] | [0x03, 0x02] => &digest::SHA256,
            [0x03, 0x03] => &digest::SHA384,
            [0x03, 0x04] => &digest::SHA512,
            _ => return None,
        }
    } else {
        return None;
    };
    Some(digest::digest(hash, certificate).as_ref().to_vec())
}

/// The contents of the DER element at the start of `input`, if its tag is `tag`, and what
/// follows it.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, mut rest) = rest.split_first()?;
    let length = if length < 0x80 {
        usize::from(length)
    } else {
        // Long form: the next `length & 0x7f` bytes, big-endian (at most 4: no certificate is
        // larger).
        let count = usize::from(length & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    rest.split_at_checked(length)
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_point_of_malformed_certificates_is_none() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01, 0x00],
            &[0x31, 0x00],
        ] {
            assert_eq!(tls_server_end_point(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn der_reads_short_and_long_lengths() {
        assert_eq!(
            der(&[0x06, 0x01, 0x2a, 0x05], 0x06),
            Some((&[0x2a][..], &[0x05][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(
            der(&long, 0x04).map(|(c, r)| (c.len(), r.len())),
            Some((0x80, 0))
        );
        assert_eq!(der(&[0x04, 0x80], 0x04), None);
    }
}
