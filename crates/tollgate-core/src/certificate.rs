//! The client certificate a request arrived with, as a request extension: what a TLS listener
//! puts on every request of a connection whose client presented a certificate, and what
//! certificate-bound tokens (RFC 8705 §3) are checked against.
//!
//! A listener that terminates TLS inserts one [`ClientCertificate`] into each request's
//! extensions; a program behind a proxy that terminates TLS may insert one read from a header set
//! by that proxy, and only when the request came from that proxy. Nothing else may insert it: its
//! presence means "the peer proved possession of this certificate's key".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::sync::Arc;

/// The end-entity certificate of the client, DER-encoded, with its SHA-256 thumbprint (the
/// `x5t#S256` of RFC 8705 §3.1) computed once.
///
/// Cheap to clone (the DER is shared).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Arc<[u8]>,
    thumbprint: [u8; 32],
    verified_by_ca: bool,
}

impl ClientCertificate {
    /// The certificate from its DER encoding. The bytes are not parsed: whoever inserts the
    /// certificate has verified the peer's possession of it (a TLS handshake, or a trusted
    /// proxy's).
    pub fn from_der(der: impl Into<Arc<[u8]>>) -> Self {
        let der = der.into();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let mut thumbprint = [0u8; 32];
        thumbprint.copy_from_slice(digest.as_ref());
        ClientCertificate {
            der,
            thumbprint,
            verified_by_ca: false,
        }
    }

    /// Marks the certificate as one whose chain the listener verified against its configured
    /// client CA(s), not merely one whose key the peer proved it holds.
    ///
    /// Thumbprint checks (certificate-bound tokens, `self_signed_tls_client_auth`) need only
    /// possession; `tls_client_auth` (RFC 8705 §2.1) trusts the certificate's subject and
    /// alternative names, which only a CA vouches for: a listener that also accepts self-signed
    /// certificates must set this on the ones that chain to its CA, and only on those.
    pub fn verified_by_ca(mut self) -> Self {
        self.verified_by_ca = true;
        self
    }

    /// Whether [`verified_by_ca`](Self::verified_by_ca) was set.
    pub fn is_verified_by_ca(&self) -> bool {
        self.verified_by_ca
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 digest of the DER encoding.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// The thumbprint as a `cnf` claim carries it: `x5t#S256`, base64url without padding.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.thumbprint)
    }

    /// Whether `x5t_s256` (a `cnf.x5t#S256` value) names this certificate. The comparison
    /// decodes the claim and compares digests in constant time; a value that is not base64url
    /// of 32 bytes names no certificate.
    pub fn matches(&self, x5t_s256: &str) -> bool {
        let mut decoded = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(x5t_s256.as_bytes(), &mut decoded) {
            Ok(32) => aws_lc_rs::constant_time::verify_slices_are_equal(&decoded, &self.thumbprint)
                .is_ok(),
            _ => false,
        }
    }
}

impl fmt::Debug for ClientCertificate {
    // The DER is public but long: the thumbprint names it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.x5t_s256())
            .field("verified_by_ca", &self.verified_by_ca)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprint_is_the_sha256_of_the_der_in_base64url() {
        // SHA-256("abc"), RFC 6234's test vector, in base64url without padding.
        let cert = ClientCertificate::from_der(b"abc".to_vec());
        assert_eq!(
            cert.x5t_s256(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert!(cert.matches("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"));
    }

    #[test]
    fn another_or_malformed_thumbprint_does_not_match() {
        let cert = ClientCertificate::from_der(b"abc".to_vec());
        let other = ClientCertificate::from_der(b"abd".to_vec());
        assert!(!cert.matches(&other.x5t_s256()));
        assert!(!cert.matches(""));
        assert!(!cert.matches("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="));
        assert!(!cert.matches("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAF"));
        assert!(!cert.matches("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"));
    }
}
