//! TLS for connections a program makes (the gateway's `https://` upstreams): whom to trust (the
//! operating system's store, or one CA file), an optional client certificate, the protocols
//! offered by ALPN, and the handshake on a tokio stream.
//!
//! The peer's certificate is always verified, against the host it was reached by: a DNS name
//! (sent as SNI) or an IP address (checked against the certificate's IP address entries; RFC 6066
//! sends no SNI for one). There is no switch to turn verification off.

use super::pem::{self, PemFileError};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};

pub use tokio_rustls::client::TlsStream;

/// The ALPN name of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Which certificate authorities a connection trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's trust store (on Debian `/etc/ssl/certs`, kept by
    /// `update-ca-certificates`; `SSL_CERT_FILE` / `SSL_CERT_DIR` point elsewhere).
    System,
    /// Only the CA certificates of this PEM file.
    CaFile(PathBuf),
}

/// A client certificate (its chain, end-entity first) and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate chain file.
    pub certificate: PathBuf,
    /// The private key file.
    pub key: PathBuf,
}

/// A TLS client configuration that could not be made: one line, naming the file when a file is
/// at fault, and which part of the configuration is ([`ClientTlsError::part`]).
#[derive(Debug)]
pub struct ClientTlsError {
    part: Part,
    message: String,
}

/// The part of a TLS client configuration at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The host is not a DNS name or an IP address.
    ServerName,
    /// The CA file, or the system store.
    Trust,
    /// The client certificate file, or a key that does not go with it.
    ClientCertificate,
    /// The client's private key file.
    ClientKey,
}

impl ClientTlsError {
    fn new(part: Part, message: impl Into<String>) -> Self {
        ClientTlsError {
            part,
            message: message.into(),
        }
    }

    fn file(part: Part, e: PemFileError) -> Self {
        ClientTlsError::new(part, e.to_string())
    }

    /// Which part of the configuration is at fault (for the caller to name its key).
    pub fn part(&self) -> Part {
        self.part
    }
}

impl fmt::Display for ClientTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientTlsError {}

/// Makes TLS connections to one host: the host name (or IP address) the certificate must be
/// valid for, and the client configuration. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector to `host` (a DNS name, an IPv4 address, or an IPv6 address with or without
    /// its brackets) trusting `trust`, presenting `identity` if asked, offering `alpn` (in order
    /// of preference; empty: no ALPN).
    ///
    /// Reads the files now, so that a missing or bad one stops the program before it serves.
    pub fn new(
        host: &str,
        trust: &Trust,
        identity: Option<&Identity>,
        alpn: &[&[u8]],
    ) -> Result<Connector, ClientTlsError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(bare.to_owned()).map_err(|_| {
            ClientTlsError::new(
                Part::ServerName,
                format!("`{host}` is not a valid TLS server name"),
            )
        })?;
        let roots = match trust {
            Trust::System => system_roots()?,
            Trust::CaFile(path) => {
                Arc::new(pem::roots(path).map_err(|e| ClientTlsError::file(Part::Trust, e))?)
            }
        };
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientTlsError::new(Part::Trust, format!("TLS configuration: {e}")))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain = pem::certificates(&identity.certificate)
                    .map_err(|e| ClientTlsError::file(Part::ClientCertificate, e))?;
                let key = pem::private_key(&identity.key)
                    .map_err(|e| ClientTlsError::file(Part::ClientKey, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| key_error(&identity.certificate, &identity.key, &e))?
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Connector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake on `io` (a connected stream). A certificate that does not verify, a
    /// protocol error, or a closed connection fail it (an `io::Error` whose message says why).
    pub async fn connect<IO>(&self, io: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.connector.connect(self.name.clone(), io).await
    }
}

/// Whether the server picked HTTP/2 by ALPN on `stream`.
pub fn negotiated_h2<IO>(stream: &TlsStream<IO>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ALPN_H2)
}

fn key_error(certificate: &Path, key: &Path, error: &rustls::Error) -> ClientTlsError {
    ClientTlsError::new(
        Part::ClientCertificate,
        format!(
            "{}, {}: not a usable client certificate and key: {error}",
            certificate.display(),
            key.display()
        ),
    )
}

/// The operating system's trust store, read once per process (it is a few hundred files).
fn system_roots() -> Result<Arc<RootCertStore>, ClientTlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            // Certificates the store holds that webpki cannot use (old or odd ones) are
            // skipped, as every TLS client does; only an empty store is an error.
            let (_added, _ignored) = store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "no CA certificate found in the system trust store{why} (install \
                     ca-certificates, or set ca_file)"
                ));
            }
            Ok(Arc::new(store))
        })
        .clone()
        .map_err(|message| ClientTlsError::new(Part::Trust, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hosts_and_ips() {
        let trust = Trust::System;
        // The system store may be empty on a bare machine: only the name is checked here.
        for host in ["upstream.internal", "127.0.0.1", "[::1]", "::1"] {
            match Connector::new(host, &trust, None, &[]) {
                Ok(_) => {}
                Err(e) => assert!(e.to_string().contains("system trust store"), "{host}: {e}"),
            }
        }
        let e = Connector::new("bad name!", &trust, None, &[]).unwrap_err();
        assert!(e.to_string().contains("not a valid TLS server name"), "{e}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = Connector::new(
            "h",
            &Trust::CaFile("/nonexistent/ca.pem".into()),
            None,
            &[ALPN_H2],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/ca.pem: "), "{e}");
    }
}
