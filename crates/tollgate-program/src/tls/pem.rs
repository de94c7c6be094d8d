//! Certificates, private keys and CA bundles from PEM files: what a `[tls]` table or an
//! upstream's `ca_file` names. Each error is one line that names the file and says what is wrong
//! with it, so that a program can refuse to start before anything listens.

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::fmt;
use std::path::{Path, PathBuf};

/// A PEM file that could not be used: which file, and why.
#[derive(Debug)]
pub struct PemFileError {
    path: PathBuf,
    reason: String,
}

impl PemFileError {
    pub(crate) fn new(path: &Path, reason: impl Into<String>) -> Self {
        PemFileError {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for PemFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for PemFileError {}

/// Why a PEM file could not be read, in words (the file is named by the caller).
fn reason(error: pem::Error) -> String {
    match error {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// Every certificate in `path`, in order (a chain: the end-entity certificate first). Fails if
/// the file cannot be read, is not PEM, or holds no certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemFileError::new(path, reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemFileError::new(path, reason(e)))?;
    if certs.is_empty() {
        return Err(PemFileError::new(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The private key in `path` (PKCS#8, PKCS#1 RSA or SEC1 EC; the first one in the file).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemFileError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => PemFileError::new(path, "no PRIVATE KEY in the file"),
        other => PemFileError::new(path, reason(other)),
    })
}

/// The PKCS#8 DER of a signing key file (what `tollgate keygen` writes, or a key an identity
/// provider generated): DER as it is, or the body of a PEM `PRIVATE KEY` block. `None` for PEM
/// of another kind (`RSA PRIVATE KEY`, `EC PRIVATE KEY`: `openssl pkcs8 -topk8 -nocrypt`
/// converts them) or a `PRIVATE KEY` block that is not valid.
pub fn pkcs8_der(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Some(bytes.to_vec());
    }
    PrivatePkcs8KeyDer::from_pem_slice(bytes)
        .ok()
        .map(|key| key.secret_pkcs8_der().to_vec())
}

/// The certificates in `path` as trust anchors. Fails if one of them is not a usable CA
/// certificate, or there is none.
pub fn roots(path: &Path) -> Result<RootCertStore, PemFileError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| PemFileError::new(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.pem");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[test]
    fn a_missing_file_is_named_in_one_line() {
        let e = certificates(Path::new("/nonexistent/cert.pem")).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("/nonexistent/cert.pem: "), "{shown}");
        assert!(!shown.contains('\n'), "{shown}");
    }

    #[test]
    fn a_file_without_the_item_says_which_item() {
        let (_dir, path) = file("not pem at all\n");
        let e = certificates(&path).unwrap_err().to_string();
        assert!(e.contains("file.pem: ") && e.contains("CERTIFICATE"), "{e}");
        let e = private_key(&path).unwrap_err().to_string();
        assert!(e.contains("file.pem: ") && e.contains("PRIVATE KEY"), "{e}");
    }

    #[test]
    fn a_signing_key_file_is_der_or_pem_pkcs8() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBk3eFN2v7aMFBV9c6wYJ1Lw0R4Z7oW3a0lZXvz0wC8K\n-----END PRIVATE KEY-----\n";
        let der = pkcs8_der(pem.as_bytes()).unwrap();
        assert_eq!(der[..2], [0x30, 0x2e]);
        assert_eq!(pkcs8_der(&der), Some(der.clone()), "DER is taken as it is");
        assert_eq!(
            pkcs8_der(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
            None
        );
    }

    #[test]
    fn a_key_file_is_not_a_certificate() {
        let (_dir, path) = file(
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBk3eFN2v7aMFBV9c6wYJ1Lw0R4Z7oW3a0lZXvz0wC8K\n-----END PRIVATE KEY-----\n",
        );
        assert!(private_key(&path).is_ok());
        let e = certificates(&path).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
    }
}
