//! Where a request's [`ClientCertificate`] comes from when TLS ends at a proxy in front.
//!
//! Certificate-bound tokens (RFC 8705 §3) are checked by
//! [`ValidateBearer`](crate::ValidateBearer) against the [`ClientCertificate`] in the request's
//! extensions. A program that terminates TLS itself has its listener insert it. A program behind
//! a proxy that terminates TLS (nginx, a load balancer) learns the certificate from a header that
//! proxy sets: [`FromTrustedProxyLayer`] reads that header **only** on requests whose peer
//! address ([`PeerAddr`], or axum's `ConnectInfo<SocketAddr>` with feature `axum`) is one of the
//! configured [`TrustedProxies`], and removes the header from every request, so that neither the
//! Layer nor the application ever believes a client that sends it itself.
//!
//! Two header forms are read, told apart by their first character:
//!
//! * RFC 9440 `Client-Cert`: the DER certificate as a Structured Field byte sequence,
//!   `:<base64>:`;
//! * nginx's `$ssl_client_escaped_cert`: the PEM certificate, URL-escaped
//!   (`proxy_set_header Client-Cert $ssl_client_escaped_cert;`).
//!
//! Fail closed: a header that is malformed, sent twice, too long, or holds anything but one
//! certificate gives no certificate, so a bound token is then refused.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tollgate_layer::client_cert::{FromTrustedProxyLayer, TrustedProxies};
//! use tower::ServiceBuilder;
//!
//! let trusted = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1"])?;
//! let service = ServiceBuilder::new()
//!     // Outside the Layer, so the certificate is in place when the token is judged.
//!     .layer(FromTrustedProxyLayer::new(trusted))
//!     .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//! # let _ = service;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, Request};
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tollgate_core::{ClientCertificate, PeerAddr};
use tower_layer::Layer;
use tower_service::Service;

/// The header RFC 9440 names, and the default of [`FromTrustedProxyLayer`].
pub static CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");

/// Longest header value read: a certificate chain of a few kilobytes in PEM, escaped, fits; a
/// longer value is refused unread.
const MAX_HEADER_LEN: usize = 16 * 1024;

/// The addresses of the proxies whose certificate header is believed: IP networks in CIDR
/// notation (`10.0.0.0/8`, `fd00::/8`) or single addresses (`127.0.0.1`).
///
/// Cheap to clone. An IPv4 peer seen as an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, on a
/// dual-stack listener) is judged as the IPv4 address.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// A trusted-proxy entry that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProxy(pub String);

impl fmt::Display for InvalidProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is neither an IP address nor a CIDR network (such as 10.0.0.0/8)",
            self.0
        )
    }
}

impl std::error::Error for InvalidProxy {}

impl TrustedProxies {
    /// The networks and addresses listed, each `a.b.c.d/n`, `a.b.c.d`, or their IPv6 forms.
    pub fn parse<I, S>(entries: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = entries
            .into_iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| InvalidProxy(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(nets.into()))
    }

    /// Whether `peer` is a trusted proxy.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The certificate in header `name`: `None` when the header is absent, sent more than once,
/// longer than 16 KiB, or not one certificate in either form (RFC 9440 byte sequence, or
/// URL-escaped PEM).
///
/// Only for headers set by a trusted proxy: whoever calls this has checked the peer.
pub fn from_header(headers: &HeaderMap, name: &HeaderName) -> Option<ClientCertificate> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.as_bytes();
    if value.len() > MAX_HEADER_LEN {
        return None;
    }
    let der = match value.first()? {
        b':' => from_byte_sequence(value)?,
        _ => from_escaped_pem(value)?,
    };
    // A DER certificate is a SEQUENCE: anything else is not one (the bytes are not parsed
    // further; the proxy verified the certificate).
    (der.len() > 2 && der[0] == 0x30).then(|| ClientCertificate::from_der(der))
}

/// RFC 9440 §2.2 / RFC 8941 §3.3.5: `:` base64 `:`.
fn from_byte_sequence(value: &[u8]) -> Option<Vec<u8>> {
    let inner = value.strip_prefix(b":")?.strip_suffix(b":")?;
    STANDARD.decode(inner).ok()
}

/// nginx's `$ssl_client_escaped_cert`: one PEM `CERTIFICATE` block, URL-escaped.
fn from_escaped_pem(value: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let pem = percent_decode(value)?;
    let pem = std::str::from_utf8(&pem).ok()?.trim();
    let body = pem.strip_prefix(BEGIN)?.strip_suffix(END)?;
    // One block only: a chain, or text around the block, is not what the proxy should send.
    if body.contains("-----") {
        return None;
    }
    let base64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    STANDARD.decode(base64).ok()
}

/// `%XX` decoding; `None` on a `%` not followed by two hex digits.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter().copied();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The peer address of a request: [`PeerAddr`], or axum's `ConnectInfo<SocketAddr>`.
fn peer<B>(request: &Request<B>) -> Option<IpAddr> {
    if let Some(PeerAddr(ip)) = request.extensions().get::<PeerAddr>() {
        return Some(*ip);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

/// Puts the client certificate a trusted proxy sends in a header into the request's
/// extensions; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct FromTrustedProxyLayer {
    trusted: TrustedProxies,
    header: HeaderName,
}

impl FromTrustedProxyLayer {
    /// Believes header `Client-Cert` from the `trusted` proxies.
    pub fn new(trusted: TrustedProxies) -> Self {
        FromTrustedProxyLayer {
            trusted,
            header: CLIENT_CERT.clone(),
        }
    }

    /// Reads the certificate from `header` instead of `Client-Cert` (e.g. `X-SSL-Client-Cert`).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }
}

impl<S> Layer<S> for FromTrustedProxyLayer {
    type Service = FromTrustedProxy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FromTrustedProxy {
            inner,
            trusted: self.trusted.clone(),
            header: self.header.clone(),
        }
    }
}

/// Middleware made by [`FromTrustedProxyLayer`].
///
/// On a request from a trusted proxy, the [`ClientCertificate`] in the extensions becomes the
/// one in the header, or none (a certificate a listener put there would be the proxy's own, not
/// the client's). On any other request the extensions are left alone. The header is removed from
/// every request.
#[derive(Debug, Clone)]
pub struct FromTrustedProxy<S> {
    inner: S,
    trusted: TrustedProxies,
    header: HeaderName,
}

impl<S, B> Service<Request<B>> for FromTrustedProxy<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if peer(&request).is_some_and(|ip| self.trusted.contains(ip)) {
            let certificate = from_header(request.headers(), &self.header);
            let extensions = request.extensions_mut();
            extensions.remove::<ClientCertificate>();
            if let Some(certificate) = certificate {
                extensions.insert(certificate);
            }
        }
        request.headers_mut().remove(&self.header);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    // Not a real certificate: a DER SEQUENCE is all `from_header` looks for.
    const DER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x07];

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&CLIENT_CERT, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn pem_escaped(der: &[u8]) -> String {
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(der)
        );
        pem.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn reads_both_forms() {
        let want = ClientCertificate::from_der(DER.to_vec());
        let sf = format!(":{}:", STANDARD.encode(DER));
        assert_eq!(
            from_header(&headers(&[&sf]), &CLIENT_CERT),
            Some(want.clone())
        );
        let pem = pem_escaped(DER);
        assert_eq!(from_header(&headers(&[&pem]), &CLIENT_CERT), Some(want));
    }

    #[test]
    fn anything_else_is_no_certificate() {
        let sf = format!(":{}:", STANDARD.encode(DER));
        let two = format!("{}{}", pem_escaped(DER), pem_escaped(DER));
        let long = format!(":{}:", STANDARD.encode(vec![0x30; MAX_HEADER_LEN]));
        for bad in [
            "",
            ":",
            "::",
            ":not base64:",
            &format!(":{}", STANDARD.encode(DER)),
            &format!(":{}:", STANDARD.encode(b"not a sequence")),
            "%2D%2D%2D%2D%2DBEGIN",
            "%zz",
            &two,
            &long,
        ] {
            assert_eq!(from_header(&headers(&[bad]), &CLIENT_CERT), None, "{bad}");
        }
        assert_eq!(from_header(&headers(&[&sf, &sf]), &CLIENT_CERT), None);
        assert_eq!(from_header(&headers(&[]), &CLIENT_CERT), None);
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let t = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1", " fd00::/8 "]).unwrap();
        for ip in ["10.1.2.3", "127.0.0.1", "::ffff:127.0.0.1", "fd00::1"] {
            assert!(t.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "127.0.0.2", "::1"] {
            assert!(!t.contains(ip.parse().unwrap()), "{ip}");
        }
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/33"]).unwrap_err(),
            InvalidProxy("10.0.0.0/33".into())
        );
        assert!(TrustedProxies::parse(["example.com"]).is_err());
        assert!(TrustedProxies::default().is_empty());
    }
}
