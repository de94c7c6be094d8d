//! The request headers the gateway owns or judges, handled before anything of its own is set:
//! the client's hop-by-hop headers (and what its `Connection` names), the upgrade a client may
//! ask for, and every client copy of a header the gateway sets, matched the way CGI, WSGI, Rack
//! and PHP upstreams read names (`X_Auth_Roles` and `x-auth-roles` are one variable to them).
//!
//! The order matters. Hop-by-hop removal runs on the client's request first, so `Connection:
//! x-auth-subject` can only remove the client's own copy, never the value the gateway writes
//! later; the identity headers are written last (`crate::identity`).

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

/// The request id header: accepted from the client when well-formed, otherwise made up; sent
/// to the upstream and back to the client.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
/// `keep-alive` and `proxy-connection` have no constant in `http`.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// `Proxy`: no standard meaning, but CGI turns it into `HTTP_PROXY`, which many HTTP clients
/// inside the upstream take as their outbound proxy ("httpoxy"). Never forwarded.
static PROXY: HeaderName = HeaderName::from_static("proxy");

/// Headers only a proxy in front may set, which upstreams read as the request's own URL, scheme,
/// host or client: the gateway is that proxy, so a client's copies never pass. `Forwarded`
/// (Rack reads it before `X-Forwarded-*`), `X-Real-IP`, the other `X-Forwarded-*` spellings
/// frameworks honour, and `X-Original-URL`/`X-Rewrite-URL`, on which IIS URL Rewrite, Symfony
/// and Zend route (a request judged as `/public/x` could be served as `/admin/x`).
static PROXY_OWNED: [HeaderName; 9] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("front-end-https"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// The headers with which Rails, Laravel, Express (method-override) and others let a request
/// claim another method than its own.
pub(crate) static METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// The beginnings of the names other TLS-terminating proxies give the client certificate they
/// verified, or what they concluded from it, as CGI reads them (see [`same_variable`]): RFC
/// 9440's `Client-Cert` and `Client-Cert-Chain`; the `X-SSL-Client-*`, `X-Client-Cert*`,
/// `X-Client-Verify` and `X-Client-DN` conventions of nginx and HAProxy set-ups (and their CGI
/// `SSL_CLIENT_*` forms); Envoy's `X-Forwarded-Client-Cert`; Traefik's
/// `X-Forwarded-Tls-Client-Cert(-Info)`; AWS's `X-Amzn-Mtls-Clientcert*`; Azure's and ASP.NET
/// Core's `X-ARR-ClientCert`; Google's load balancers' `X-Client-Cert-*`. An upstream that once
/// sat behind such a proxy believes them: the gateway is the proxy now, and sets none, so a
/// client's copies never pass.
static CLIENT_CERT_PREFIXES: [&str; 13] = [
    "client-cert",
    "ssl-client-",
    "x-ssl-client-",
    "x-ssl-cert",
    "x-client-cert",
    "x-client-verify",
    "x-client-dn",
    "x-client-s-dn",
    "x-client-i-dn",
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-amzn-mtls-clientcert",
    "x-arr-clientcert",
];

/// Whether a client certificate (or a proxy's verdict on one) is what upstreams read in
/// `name`, whatever its spelling: see [`CLIENT_CERT_PREFIXES`].
pub(crate) fn is_client_cert_header(name: &str) -> bool {
    let name = name.as_bytes();
    // Every prefix begins with `c`, `s` or `x`: most headers are ruled out by their first byte.
    if !matches!(
        name.first().map(u8::to_ascii_lowercase),
        Some(b'c' | b's' | b'x')
    ) {
        return false;
    }
    CLIENT_CERT_PREFIXES.iter().any(|prefix| {
        name.len() >= prefix.len()
            && prefix
                .bytes()
                .zip(name)
                .all(|(p, n)| fold_for_cgi(p) == fold_for_cgi(*n))
    })
}

/// Whether `name` is owned by HTTP or by the gateway, so that it may not carry claims. Names
/// are compared as CGI reads them.
pub(crate) fn is_reserved(name: &HeaderName) -> bool {
    let owned = [
        &AUTHORIZATION,
        &HOST,
        &CONTENT_LENGTH,
        &CONTENT_TYPE,
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REQUEST_ID,
        &PROXY,
    ];
    is_client_cert_header(name.as_str())
        || HOP_BY_HOP
            .iter()
            .chain(owned)
            .chain(&METHOD_OVERRIDE)
            .chain(&PROXY_OWNED)
            .any(|reserved| same_variable(reserved.as_str(), name.as_str()))
}

/// Whether two header names are one variable to a CGI/WSGI/Rack/PHP upstream: equal once every
/// character but a letter or digit is read as `-`, whatever the case. WSGI and Rack turn `-`
/// into `_`, PHP turns `.` (and `-`) into `_`, Apache's CGI environment turns anything that is
/// not alphanumeric into `_`: so `X_Auth_Roles`, `X.Auth.Roles` and `x-auth-roles` are one.
pub(crate) fn same_variable(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| fold_for_cgi(x) == fold_for_cgi(y))
}

fn fold_for_cgi(c: u8) -> u8 {
    if c.is_ascii_alphanumeric() {
        c.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// Whether a header name has a character other than a letter, a digit or `-`: one that some
/// upstream may read as another name.
fn unusual(name: &HeaderName) -> bool {
    name.as_str()
        .bytes()
        .any(|c| !c.is_ascii_alphanumeric() && c != b'-')
}

/// What the client's hop-by-hop headers asked for that the gateway carries to the upstream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hop {
    /// The protocol(s) of an allowed upgrade (`Upgrade`, as sent).
    pub(crate) upgrade: Option<HeaderValue>,
    /// `TE: trailers`, which gRPC servers require (the one TE value HTTP/2 allows).
    pub(crate) te_trailers: bool,
}

/// Removes the client's hop-by-hop headers and everything its `Connection` header names, and
/// returns what of them is carried on: an upgrade to protocols that are all in `upgrades`
/// (HTTP/1.1 only; an upgrade to anything else is dropped and the request goes on as an ordinary
/// one), and `TE: trailers`.
pub(crate) fn take_hop_by_hop(
    version: Version,
    headers: &mut HeaderMap,
    upgrades: &Upgrades,
) -> Hop {
    let te_trailers = headers
        .get(TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let asks_upgrade = version == Version::HTTP_11
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    let upgrade = asks_upgrade
        .then(|| {
            let mut values = headers.get_all(UPGRADE).iter();
            // One `Upgrade` line; several would be read differently by different upstreams.
            match (values.next(), values.next()) {
                (Some(value), None) if upgrades.allows(value) => Some(value.clone()),
                _ => None,
            }
        })
        .flatten();
    remove_hop_by_hop(headers);
    Hop {
        upgrade,
        te_trailers,
    }
}

/// The tokens of every `Connection` line.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // What `Connection` names beyond the standard hop-by-hop headers: usually nothing (it says
    // `keep-alive`, `close` or `upgrade`), so usually no allocation.
    let mut listed: Vec<HeaderName> = Vec::new();
    for token in connection_tokens(headers) {
        if token.is_empty()
            || ["keep-alive", "close", "upgrade"]
                .iter()
                .any(|t| token.eq_ignore_ascii_case(t))
        {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            listed.push(name);
        }
    }
    for name in listed.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// Removes, from a client's request, every header that is, or that a CGI-style upstream would
/// read as, a header the gateway sets or judges: the identity headers (`identity`), the
/// `X-Forwarded-*` headers, `X-Request-Id`, `Authorization` and the method-override headers in
/// their other spellings (`_`, `.`, ...: see [`same_variable`]; their exact spellings are judged
/// elsewhere), `Proxy`, and, under
/// [`MethodOverride::Strip`], the method-override headers themselves; and `client_cert`, the
/// header of `[client_certificate]`, with every header in which some proxy passes a client
/// certificate ([`is_client_cert_header`]), in every spelling (read, when a trusted proxy sent
/// it, before this runs).
pub(crate) fn strip_client_copies(
    headers: &mut HeaderMap,
    identity: &[HeaderName],
    method_override: MethodOverride,
    client_cert: &HeaderName,
) {
    for name in identity {
        headers.remove(name);
    }
    headers.remove(client_cert);
    headers.remove(&PROXY);
    for name in &PROXY_OWNED {
        headers.remove(name);
    }
    if method_override == MethodOverride::Strip {
        for name in &METHOD_OVERRIDE {
            headers.remove(name);
        }
    }
    // A few short comparisons per header; most requests carry none of these.
    let certificates: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_client_cert_header(name.as_str()))
        .cloned()
        .collect();
    for name in certificates {
        headers.remove(name);
    }
    // Names with `_`, `.` and the like are rare: look for them only when there is one.
    if !headers.keys().any(unusual) {
        return;
    }
    let judged = [
        &AUTHORIZATION,
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REQUEST_ID,
        client_cert,
    ];
    let doubles: Vec<HeaderName> = headers
        .keys()
        .filter(|name| unusual(name))
        .filter(|name| {
            identity
                .iter()
                .chain(judged)
                .chain(&METHOD_OVERRIDE)
                .chain(&PROXY_OWNED)
                .any(|owned| same_variable(owned.as_str(), name.as_str()))
        })
        .cloned()
        .collect();
    for name in doubles {
        headers.remove(name);
    }
}

/// The protocols a client may upgrade a connection to (`[proxy] upgrades`): `websocket` by
/// default. An upgrade to anything else is dropped (the request goes on as an ordinary one), and
/// `h2c`/`h2` can never be listed: after the upstream's 101 the client would speak HTTP/2 to it
/// directly, any path, any header, past every route.
#[derive(Debug, Clone)]
pub(crate) struct Upgrades(pub(crate) Vec<String>);

impl Default for Upgrades {
    fn default() -> Self {
        Upgrades(vec!["websocket".to_owned()])
    }
}

impl Upgrades {
    /// Whether every protocol an `Upgrade` value lists is allowed (names compared without case;
    /// a listed name allows each of its versions).
    pub(crate) fn allows(&self, value: &HeaderValue) -> bool {
        let Ok(value) = value.to_str() else {
            return false;
        };
        let mut protocols = value.split(',').map(str::trim).peekable();
        protocols.peek().is_some()
            && protocols.all(|protocol| {
                let name = protocol.split('/').next().unwrap_or(protocol);
                !protocol.is_empty()
                    && self.0.iter().any(|allowed| {
                        allowed.eq_ignore_ascii_case(protocol) || allowed.eq_ignore_ascii_case(name)
                    })
            })
    }
}

/// What the gateway does with `X-HTTP-Method-Override`, `X-HTTP-Method` and
/// `X-Method-Override` (`[proxy] method_override`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum MethodOverride {
    /// Removed from every request (the default): the upstream acts on the request's method,
    /// which is the one routes judged.
    #[default]
    Strip,
    /// Forwarded, and the route must allow both the request's method and the one they claim
    /// (and be the same route for both); conflicting or malformed claims are refused.
    Judge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_as_cgi_reads_them() {
        assert!(same_variable("x-auth-roles", "X_Auth_Roles"));
        assert!(same_variable("x-auth-roles", "x_auth-roles"));
        assert!(same_variable("x-auth-roles", "X.Auth.Roles"));
        assert!(same_variable("x-auth-roles", "x!auth~roles"));
        assert!(!same_variable("x-auth-roles", "x-auth-role"));
        assert!(!same_variable("x-auth-roles", "x-auth-rolesx"));
    }

    #[test]
    fn every_proxys_client_certificate_header_is_stripped() {
        let mut headers = HeaderMap::new();
        let forged = [
            "client-cert",
            "client-cert-chain",
            "Client_Cert",
            "x-ssl-client-cert",
            "X_SSL_Client_Verify",
            "x-ssl-client-s-dn",
            "ssl_client_cert",
            "x-ssl-cert",
            "x-client-cert",
            "x-client-cert-present",
            "x-client-verify",
            "x-client-dn",
            "x-forwarded-client-cert",
            "x-forwarded-tls-client-cert-info",
            "x-amzn-mtls-clientcert-leaf",
            "X-ARR-ClientCert",
        ];
        for name in forged {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        for kept in ["x-client-version", "x-client-id", "x-ssl", "accept"] {
            headers.insert(kept, HeaderValue::from_static("kept"));
        }
        let configured = HeaderName::from_static("x-proxy-certificate");
        headers.insert(&configured, HeaderValue::from_static("forged"));
        strip_client_copies(&mut headers, &[], MethodOverride::Strip, &configured);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            ["accept", "x-client-id", "x-client-version", "x-ssl"],
            "{headers:?}"
        );
    }

    #[test]
    fn connection_cannot_name_what_the_gateway_sets_later() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("x-auth-subject, upgrade"),
        );
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("x-auth-subject", HeaderValue::from_static("forged"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        let hop = take_hop_by_hop(Version::HTTP_11, &mut headers, &Upgrades::default());
        assert!(hop.upgrade.is_none(), "h2c is never carried");
        assert!(hop.te_trailers);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn only_allowed_upgrades_are_carried() {
        let ask = |upgrade: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(UPGRADE, HeaderValue::from_static(upgrade));
            take_hop_by_hop(Version::HTTP_11, &mut headers, &Upgrades::default()).upgrade
        };
        assert!(ask("websocket").is_some());
        assert!(ask("WebSocket").is_some());
        for refused in ["h2c", "websocket, h2c", "foo/1", "TLS/1.2", ""] {
            assert!(ask(refused).is_none(), "{refused}");
        }
    }
}
