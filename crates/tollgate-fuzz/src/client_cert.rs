//! The `client_cert` target: the two parsers of client-certificate names that see what a
//! network peer or an operator wrote, [`tollgate_layer::client_cert::from_header`] (the
//! certificate header a trusted proxy sets) and [`tollgate_issuer::SubjectDn::parse`] (a
//! `tls_client_auth_subject_dn`).

use http::{HeaderMap, HeaderValue};
use tollgate_core::ClientCertificate;
use tollgate_issuer::SubjectDn;
use tollgate_layer::client_cert::{CLIENT_CERT, from_header};

/// Feeds `data` as a `Client-Cert` header value (when it can be one) and as a subject DN.
///
/// Invariants: no panic; a certificate read from the header is a DER SEQUENCE whose thumbprint
/// is the SHA-256 of those bytes, and the same value read twice gives the same certificate; a DN
/// that parses prints as RFC 4514 text that parses back to an equal DN.
pub fn client_cert(data: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(&CLIENT_CERT, value);
        let read = from_header(&headers, &CLIENT_CERT);
        if let Some(certificate) = &read {
            assert_eq!(certificate.der().first(), Some(&0x30), "not a SEQUENCE");
            let again = ClientCertificate::from_der(certificate.der().to_vec());
            assert_eq!(again.x5t_s256(), certificate.x5t_s256());
            assert!(certificate.matches(&certificate.x5t_s256()));
        }
        assert_eq!(
            from_header(&headers, &CLIENT_CERT),
            read,
            "not deterministic"
        );
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(dn) = SubjectDn::parse(text)
    {
        let printed = dn.to_string();
        let back = SubjectDn::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(back, dn, "{text:?} printed as {printed:?}");
    }
}
