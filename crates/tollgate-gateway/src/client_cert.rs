//! `[client_certificate]`: the client certificate of a request, for certificate-bound tokens
//! (RFC 8705 §3), when TLS ends at a proxy in front of the gateway.
//!
//! The proxy sends the certificate it verified in a header (`Client-Cert` by default, RFC 9440's
//! byte sequence or nginx's `$ssl_client_escaped_cert`; read by
//! [`tollgate_layer::client_cert::from_header`]). The gateway believes that header only from a
//! peer in `trusted_proxies`; from anyone else it is ignored. Either way the header, in every
//! spelling a CGI-style upstream reads as the same name (`Client_Cert`, `Client.Cert`), is
//! removed before the request goes anywhere ([`crate::headers::strip_client_copies`]): an upstream
//! that reads it could otherwise be told any certificate by any client.
//!
//! The Layer then judges bound tokens against the [`ClientCertificate`] this puts in the
//! extensions, exactly as it judges those of a certificate the gateway's own TLS listener
//! verified.

use http::{HeaderName, Request};
use std::net::IpAddr;
use tollgate_core::ClientCertificate;
use tollgate_layer::client_cert::{CLIENT_CERT, TrustedProxies, from_header};

/// `[client_certificate]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct ClientCertHeader {
    /// The header the trusted proxies send; removed from every request.
    pub(crate) name: HeaderName,
    /// Whose header is believed: nobody's without the table.
    pub(crate) trusted: TrustedProxies,
    /// `require_bound_tokens`: unbound tokens are refused on every protected route.
    pub(crate) require_bound_tokens: bool,
}

impl Default for ClientCertHeader {
    /// `Client-Cert`, believed from nobody (but still removed).
    fn default() -> Self {
        ClientCertHeader {
            name: CLIENT_CERT.clone(),
            trusted: TrustedProxies::default(),
            require_bound_tokens: false,
        }
    }
}

impl ClientCertHeader {
    /// On a request from a trusted proxy, makes the header's certificate (or none, when the
    /// header is absent or malformed) the request's: a certificate the gateway's own TLS
    /// listener saw on that connection is the proxy's, not the client's. Other requests keep
    /// what the listener saw. The header itself is left for `strip_client_copies`.
    pub(crate) fn apply<B>(&self, peer: IpAddr, request: &mut Request<B>) {
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            return;
        }
        let certificate = from_header(request.headers(), &self.name);
        let extensions = request.extensions_mut();
        extensions.remove::<ClientCertificate>();
        if let Some(certificate) = certificate {
            extensions.insert(certificate);
        }
    }
}
