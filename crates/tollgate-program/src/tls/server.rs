//! The `[tls]` table of a listener, read alike by `tollgate serve` and `tollgate gateway`: its
//! schema ([`TlsTable`]), its checks ([`tls`], which reads no file), and the rustls server
//! configuration the files make ([`ServerTls::load`]).
//!
//! The keys (the reference is `docs/configuration.md`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `certificate` | required | PEM file: the certificate chain, the server's own certificate first |
//! | `private_key` | required | PEM file: its private key (PKCS#8, PKCS#1 or SEC1) |
//! | `[[tls.certificates]]` | none | more `certificate` + `private_key` pairs, chosen by the name the client asks for (SNI) |
//! | `client_auth` | `"none"` | `"optional"` or `"required"`: ask for a client certificate signed by `client_ca` |
//! | `client_ca` | none | PEM file: the CAs client certificates must chain to (required unless `client_auth = "none"` or `self_signed_clients`) |
//! | `self_signed_clients` | `false` | also accept a certificate that does not chain to `client_ca` (any, without it), once the client proves its key: for RFC 8705 `self_signed_tls_client_auth` and certificate-bound tokens |
//! | `min_version` | `"1.2"` | or `"1.3"` |
//!
//! The certificate of `certificate` is the default: it is served to a client that sends no
//! server name, or one that no certificate is valid for. Otherwise the first certificate (the
//! default, then `[[tls.certificates]]` in order) whose names cover the requested name is served.

use super::pem::{self, PemFileError};
use crate::config::{ConfigError, Source};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// The ALPN protocols offered, preferred first: a client that offers both gets HTTP/2.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A `[tls]` table, as read: put it in a program's file schema as `Option<Spanned<TlsTable>>`
/// and check it with [`tls`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTable {
    certificate: Spanned<PathBuf>,
    private_key: Spanned<PathBuf>,
    #[serde(default)]
    certificates: Vec<CertificateTable>,
    client_auth: Option<Spanned<String>>,
    client_ca: Option<Spanned<PathBuf>>,
    self_signed_clients: Option<Spanned<bool>>,
    min_version: Option<Spanned<String>>,
}

/// One `[[tls.certificates]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateTable {
    certificate: Spanned<PathBuf>,
    private_key: Spanned<PathBuf>,
}

/// Whether, and how, clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client may present none, but one it presents must be valid.
    Optional,
    /// A client must present a valid certificate, or the handshake fails.
    Required,
}

/// A `[tls]` table, checked: the files it names (resolved from the configuration's directory),
/// not read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The default certificate first, then the ones chosen by SNI.
    certificates: Vec<CertificateFiles>,
    client_auth: ClientAuth,
    client_ca: Option<PathBuf>,
    /// Whether certificates that do not chain to `client_ca` are accepted too.
    self_signed_clients: bool,
    tls13_only: bool,
}

/// A certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertificateFiles {
    certificate: PathBuf,
    private_key: PathBuf,
}

/// Checks `[tls]` from `source`: the values, not the files (see [`ServerTls::load`]).
pub fn tls(source: &Source, table: &TlsTable) -> Result<ServerTls, ConfigError> {
    let pair = |certificate: &Spanned<PathBuf>, private_key: &Spanned<PathBuf>| CertificateFiles {
        certificate: source.resolve(certificate.get_ref()),
        private_key: source.resolve(private_key.get_ref()),
    };
    let mut certificates = vec![pair(&table.certificate, &table.private_key)];
    certificates.extend(
        table
            .certificates
            .iter()
            .map(|c| pair(&c.certificate, &c.private_key)),
    );
    let client_auth = match &table.client_auth {
        None => ClientAuth::None,
        Some(value) => match value.get_ref().as_str() {
            "none" => ClientAuth::None,
            "optional" => ClientAuth::Optional,
            "required" => ClientAuth::Required,
            _ => {
                return Err(source.error(
                    value,
                    "tls.client_auth",
                    "must be \"none\", \"optional\" or \"required\"",
                ));
            }
        },
    };
    let self_signed_clients = match &table.self_signed_clients {
        Some(value) if *value.get_ref() && client_auth == ClientAuth::None => {
            return Err(source.error(
                value,
                "tls.self_signed_clients",
                "is only used with client_auth = \"optional\" or \"required\"",
            ));
        }
        Some(value) => *value.get_ref(),
        None => false,
    };
    let client_ca = match (&table.client_ca, client_auth) {
        (Some(ca), ClientAuth::None) => {
            return Err(source.error(
                ca,
                "tls.client_ca",
                "is only used with client_auth = \"optional\" or \"required\"",
            ));
        }
        (None, ClientAuth::Optional | ClientAuth::Required) if !self_signed_clients => {
            let message = "needs client_ca, the CAs client certificates must chain to (or \
                           self_signed_clients = true to accept any certificate whose key the client proves)";
            return Err(match &table.client_auth {
                Some(at) => source.error(at, "tls.client_auth", message),
                None => source.error_at(None, format_args!("tls.client_auth: {message}")),
            });
        }
        (ca, _) => ca.as_ref().map(|ca| source.resolve(ca.get_ref())),
    };
    let tls13_only = match &table.min_version {
        None => false,
        Some(value) => match value.get_ref().as_str() {
            "1.2" => false,
            "1.3" => true,
            _ => {
                return Err(source.error(value, "tls.min_version", "must be \"1.2\" or \"1.3\""));
            }
        },
    };
    Ok(ServerTls {
        certificates,
        client_auth,
        client_ca,
        self_signed_clients,
        tls13_only,
    })
}

impl ServerTls {
    /// Settings for one certificate and its key, without client certificates (for tests and
    /// programs configured in code).
    pub fn new(certificate: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> Self {
        ServerTls {
            certificates: vec![CertificateFiles {
                certificate: certificate.into(),
                private_key: private_key.into(),
            }],
            client_auth: ClientAuth::None,
            client_ca: None,
            self_signed_clients: false,
            tls13_only: false,
        }
    }

    /// Adds a certificate chosen by SNI (the first one stays the default).
    pub fn sni_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> Self {
        self.certificates.push(CertificateFiles {
            certificate: certificate.into(),
            private_key: private_key.into(),
        });
        self
    }

    /// Asks clients for certificates signed by the CAs of `client_ca` (a PEM file); with
    /// [`ClientAuth::None`], asks for none (and `client_ca` is ignored).
    pub fn client_auth(mut self, client_auth: ClientAuth, client_ca: impl Into<PathBuf>) -> Self {
        self.client_auth = client_auth;
        self.client_ca = (client_auth != ClientAuth::None).then(|| client_ca.into());
        self
    }

    /// Asks clients for a certificate (with [`ClientAuth::Optional`] or
    /// [`ClientAuth::Required`]) and accepts any whose key the client proves, with no CA: see
    /// [`self_signed_clients`](Self::self_signed_clients).
    pub fn client_auth_self_signed(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self.client_ca = None;
        self.self_signed_clients = client_auth != ClientAuth::None;
        self
    }

    /// Also accepts client certificates that do not chain to `client_ca` (with
    /// [`ClientAuth::Optional`] or [`ClientAuth::Required`]), once the client proves their key:
    /// they reach requests as a [`ClientCertificate`](tollgate_core::ClientCertificate) that is
    /// not `verified_by_ca`, good for a thumbprint (RFC 8705 self-signed client authentication,
    /// certificate-bound tokens) and never for the names a CA vouches for.
    pub fn self_signed_clients(mut self, accept: bool) -> Self {
        self.self_signed_clients = accept;
        self
    }

    /// How clients present certificates.
    pub fn client_authentication(&self) -> ClientAuth {
        self.client_auth
    }

    /// Every file the configuration is made of: what a reload watches.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = Vec::with_capacity(2 * self.certificates.len() + 1);
        for pair in &self.certificates {
            files.push(pair.certificate.as_path());
            files.push(pair.private_key.as_path());
        }
        files.extend(self.client_ca.as_deref());
        files
    }

    /// Reads the files and makes the rustls configuration: TLS 1.2 (unless `min_version =
    /// "1.3"`) and 1.3, ALPN `h2` and `http/1.1`, the certificates by SNI, client certificates
    /// as configured. Each error is one line naming the file at fault.
    pub fn load(&self) -> Result<Arc<ServerConfig>, PemFileError> {
        Ok(self.load_live()?.config)
    }

    /// [`load`](Self::load), and what tells a CA-verified client certificate from a
    /// self-signed one afterwards.
    pub(crate) fn load_live(&self) -> Result<Live, PemFileError> {
        let provider = super::provider();
        let mut keys = Vec::with_capacity(self.certificates.len());
        for pair in &self.certificates {
            keys.push(Arc::new(certified_key(pair, &provider)?));
        }
        let versions: &[&'static rustls::SupportedProtocolVersion] = if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| {
                PemFileError::new(&self.certificates[0].certificate, format!("TLS: {e}"))
            })?;
        let ca_check = match (&self.client_ca, self.client_auth) {
            (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
                let roots = Arc::new(pem::roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                let verifier = if self.client_auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                Some(verifier.build().map_err(|e| {
                    PemFileError::new(ca, format!("cannot verify clients with these CAs: {e}"))
                })?)
            }
            _ => None,
        };
        let builder = match (&ca_check, self.client_auth, self.self_signed_clients) {
            (_, ClientAuth::None, _) => builder.with_no_client_auth(),
            (ca, auth, true) => builder.with_client_cert_verifier(Arc::new(AnyCertificate {
                ca: ca.clone(),
                mandatory: auth == ClientAuth::Required,
                algorithms: provider.signature_verification_algorithms,
            })),
            (Some(ca), _, false) => builder.with_client_cert_verifier(ca.clone()),
            // `tls` refuses client certificates with neither a CA nor self_signed_clients.
            (None, _, false) => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(BySni { keys }));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Live {
            config: Arc::new(config),
            ca_check: ca_check.filter(|_| self.self_signed_clients),
            self_signed: self.self_signed_clients,
        })
    }
}

/// A loaded configuration, and how to tell whether the certificate a client presented chains
/// to `client_ca` (what `tls_client_auth` relies on) or was only accepted as self-signed.
pub(crate) struct Live {
    pub(crate) config: Arc<ServerConfig>,
    /// With `self_signed_clients` and a `client_ca`: the CA check, asked again after the
    /// handshake.
    ca_check: Option<Arc<dyn ClientCertVerifier>>,
    self_signed: bool,
}

impl Live {
    /// Whether the presented chain (end-entity certificate first) was verified against
    /// `client_ca`: always, unless self-signed certificates are accepted too; then only if the
    /// CA check passes it.
    pub(crate) fn verified_by_ca(&self, chain: &[CertificateDer<'_>]) -> bool {
        if !self.self_signed {
            return true;
        }
        let (Some(check), Some((end_entity, intermediates))) =
            (&self.ca_check, chain.split_first())
        else {
            return false;
        };
        check
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .is_ok()
    }
}

/// Accepts any client certificate webpki can read, once the client proves its key (the
/// handshake's signature is verified as usual): the certificate is then trusted for its
/// thumbprint only ([`Live::verified_by_ca`] tells the chained ones apart). Its dates and chain
/// are not checked (RFC 8705 §2.2: the client is known by the certificate it registered).
#[derive(Debug)]
struct AnyCertificate {
    /// Offered as the acceptable issuers, so that clients with a CA-issued certificate pick it.
    ca: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.as_ref().map_or(&[], |ca| ca.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
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

/// A chain and its key, checked: the key must be the one of the chain's first certificate, and
/// that certificate must be one webpki can read (it is matched against SNI names).
fn certified_key(
    pair: &CertificateFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, PemFileError> {
    let chain = pem::certificates(&pair.certificate)?;
    let key = pem::private_key(&pair.private_key)?;
    webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
        PemFileError::new(
            &pair.certificate,
            format!("the first certificate cannot be read: {e}"),
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| PemFileError::new(&pair.private_key, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // `keys_match` cannot tell when the key's public half is unknown to the provider; the
        // handshake's signature would then fail, but the pair may be right: let it through.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(_) => Err(PemFileError::new(
            &pair.private_key,
            format!(
                "is not the private key of the certificate in {}",
                pair.certificate.display()
            ),
        )),
    }
}

/// Picks the certificate by the name the client asks for (SNI); the first one is the default.
#[derive(Debug)]
struct BySni {
    /// Never empty: [`ServerTls`] always has the default.
    keys: Vec<Arc<CertifiedKey>>,
}

impl BySni {
    /// The first certificate valid for `name`.
    fn for_name(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.keys.iter().find(|key| {
            key.cert.first().is_some_and(|cert: &CertificateDer<'_>| {
                webpki::EndEntityCert::try_from(cert)
                    .and_then(|ee| ee.verify_is_valid_for_subject_name(&name))
                    .is_ok()
            })
        })
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.for_name(name))
            .or_else(|| self.keys.first())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        tls: TlsTable,
    }

    fn parse(text: &str) -> Result<ServerTls, ConfigError> {
        let source = Source::new(Path::new("/etc/tollgate/gw.toml"), text.to_owned());
        let file: File = source.deserialize()?;
        tls(&source, &file.tls)
    }

    #[test]
    fn paths_are_resolved_and_sni_certificates_follow_the_default() {
        let tls = parse(
            "[tls]\ncertificate = \"a.crt\"\nprivate_key = \"/keys/a.key\"\n\
             [[tls.certificates]]\ncertificate = \"b.crt\"\nprivate_key = \"b.key\"\n",
        )
        .unwrap();
        assert_eq!(
            tls.files(),
            [
                Path::new("/etc/tollgate/a.crt"),
                Path::new("/keys/a.key"),
                Path::new("/etc/tollgate/b.crt"),
                Path::new("/etc/tollgate/b.key"),
            ]
        );
        assert_eq!(tls.client_authentication(), ClientAuth::None);
    }

    #[test]
    fn client_auth_needs_client_ca_and_known_values() {
        let base = "[tls]\ncertificate = \"a.crt\"\nprivate_key = \"a.key\"\n";
        let e = parse(&format!("{base}client_auth = \"required\"\n")).unwrap_err();
        assert!(
            e.message()
                .starts_with("/etc/tollgate/gw.toml:4:15: tls.client_auth: needs client_ca"),
            "{e}"
        );
        let e = parse(&format!("{base}client_auth = \"maybe\"\n")).unwrap_err();
        assert!(e.message().contains("tls.client_auth: must be"), "{e}");
        let e = parse(&format!("{base}client_ca = \"ca.crt\"\n")).unwrap_err();
        assert!(e.message().contains("tls.client_ca: is only used"), "{e}");
        let e = parse(&format!("{base}min_version = \"1.1\"\n")).unwrap_err();
        assert!(e.message().contains("tls.min_version: must be"), "{e}");
        let tls = parse(&format!(
            "{base}client_auth = \"optional\"\nclient_ca = \"ca.crt\"\nmin_version = \"1.3\"\n"
        ))
        .unwrap();
        assert_eq!(tls.client_authentication(), ClientAuth::Optional);
        assert_eq!(tls.files().last(), Some(&Path::new("/etc/tollgate/ca.crt")));
    }

    #[test]
    fn self_signed_clients_need_client_certificates_and_make_client_ca_optional() {
        let base = "[tls]\ncertificate = \"a.crt\"\nprivate_key = \"a.key\"\n";
        let e = parse(&format!("{base}self_signed_clients = true\n")).unwrap_err();
        assert!(
            e.message()
                .contains("tls.self_signed_clients: is only used"),
            "{e}"
        );
        let tls = parse(&format!(
            "{base}client_auth = \"required\"\nself_signed_clients = true\n"
        ))
        .unwrap();
        assert_eq!(tls.client_authentication(), ClientAuth::Required);
        assert!(tls.self_signed_clients);
        let e = parse(&format!("{base}client_auth = \"required\"\n")).unwrap_err();
        assert!(e.message().contains("self_signed_clients = true"), "{e}");
    }
}
