//! The forward-auth endpoint: a proxy the operator already runs (nginx `auth_request`, Traefik
//! `ForwardAuth`, Envoy `ext_authz` in HTTP service mode) asks the gateway about each request;
//! the gateway answers 200 with the verified identity in headers, or the Layer's 401/403.
//!
//! The original method and URI are read from the headers of the configured proxy only
//! ([`ForwardAuthProxy`]), so a client cannot name another URI through the other proxies'
//! conventions:
//!
//! | proxy | method | URI |
//! |---|---|---|
//! | nginx | `X-Original-Method` | `X-Original-URI` (set them with `proxy_set_header`) |
//! | Traefik | `X-Forwarded-Method` | `X-Forwarded-Uri` (Traefik sets them) |
//! | Envoy | the request's | the request's path after the auth path (`path_prefix`) |

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request};

/// Which proxy calls the forward-auth endpoint: it decides which headers carry the original
/// method and URI (only that proxy's headers are trusted, so a client cannot smuggle another
/// convention's headers through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardAuthProxy {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI`, set in the auth location
    /// with `proxy_set_header`.
    Nginx,
    /// Traefik `ForwardAuth`: `X-Forwarded-Method` and `X-Forwarded-Uri`, set by Traefik.
    Traefik,
    /// Envoy `ext_authz` (HTTP service): the original path appended to the auth path
    /// (`path_prefix`), the original method as the request's.
    Envoy,
}

/// `[forward_auth]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct ForwardAuth {
    pub(crate) path: String,
    pub(crate) proxy: ForwardAuthProxy,
}

/// The request a forward-auth call is about.
#[derive(Debug, Clone)]
pub(crate) struct Original {
    pub(crate) method: Method,
    pub(crate) uri: PathAndQuery,
}

/// Why a forward-auth call names no usable original request, method or URI (400).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoOriginal;

impl ForwardAuth {
    /// Whether `path` is this endpoint: the path itself, or (Envoy, `path_prefix`) the path
    /// followed by the original one.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.path.as_str()) {
            Some("") => true,
            Some(rest) => self.proxy == ForwardAuthProxy::Envoy && rest.starts_with('/'),
            None => false,
        }
    }

    /// The original method and URI of a forward-auth call.
    pub(crate) fn original<B>(&self, request: &Request<B>) -> Result<Original, NoOriginal> {
        let headers = request.headers();
        let (method, uri) = match self.proxy {
            ForwardAuthProxy::Nginx => (
                header(headers, "x-original-method"),
                header(headers, "x-original-uri").ok_or(NoOriginal)?,
            ),
            ForwardAuthProxy::Traefik => (
                header(headers, "x-forwarded-method"),
                header(headers, "x-forwarded-uri").ok_or(NoOriginal)?,
            ),
            ForwardAuthProxy::Envoy => {
                let pq = request.uri().path_and_query().ok_or(NoOriginal)?;
                let rest = pq
                    .as_str()
                    .strip_prefix(self.path.as_str())
                    .ok_or(NoOriginal)?;
                (Some(request.method().as_str()), rest)
            }
        };
        // Absent only if the proxy was not set up to send it: guessing (GET) would judge a
        // route by a method the request may not have.
        let method =
            Method::from_bytes(method.ok_or(NoOriginal)?.as_bytes()).map_err(|_| NoOriginal)?;
        if !uri.starts_with('/') {
            return Err(NoOriginal);
        }
        let uri = PathAndQuery::try_from(uri).map_err(|_| NoOriginal)?;
        Ok(Original { method, uri })
    }
}

/// The header's one value: none when it is absent, not text, or sent twice (which of two would
/// the proxy have meant?).
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    }
}
