//! The endpoints: each module translates one protocol endpoint (form or JSON in, a call to the
//! ledger or the directories, an OAuth or Identity API answer out) and imports no other endpoint.
//!
//! [`ROUTES`] is the one routing table: the service dispatches on it, and discovery publishes the
//! paths it names.

pub(crate) mod api_revoke;
pub(crate) mod batch_revocation;
pub(crate) mod discovery;
pub(crate) mod introspection;
pub(crate) mod jwks;
pub(crate) mod openapi;
pub(crate) mod revocation;
pub(crate) mod token;
pub(crate) mod userinfo;

use crate::protocol::response::ErrorShape;
use http::Method;

/// Every endpoint the service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Token,
    Revocation,
    ApiRevoke,
    BatchRevocation,
    Introspection,
    Userinfo,
    OpenIdConfiguration,
    OAuthMetadata,
    Jwks,
    OpenApi,
}

/// The methods a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Methods {
    Post,
    /// `GET` (and `HEAD`).
    Get,
    /// `GET` (and `HEAD`) or `POST` (OpenID Connect Core §5.3.1).
    GetOrPost,
}

impl Methods {
    /// Whether `method` is accepted.
    pub(crate) fn accept(self, method: &Method) -> bool {
        let get = method == Method::GET || method == Method::HEAD;
        match self {
            Methods::Post => method == Method::POST,
            Methods::Get => get,
            Methods::GetOrPost => get || method == Method::POST,
        }
    }

    /// The `Allow` header of a `405`.
    pub(crate) fn allow(self) -> &'static str {
        match self {
            Methods::Post => "POST",
            Methods::Get => "GET, HEAD",
            Methods::GetOrPost => "GET, POST",
        }
    }
}

/// One row of the routing table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) path: &'static str,
    pub(crate) methods: Methods,
    pub(crate) endpoint: Endpoint,
    /// How the endpoint's errors look, `405` included.
    pub(crate) errors: ErrorShape,
}

const fn route(
    path: &'static str,
    methods: Methods,
    endpoint: Endpoint,
    errors: ErrorShape,
) -> Route {
    Route {
        path,
        methods,
        endpoint,
        errors,
    }
}

/// (path, methods) → endpoint, for every endpoint.
pub(crate) const ROUTES: [Route; 10] = {
    use Endpoint as E;
    use ErrorShape::{Camel, OAuth, PluginError};
    use Methods::{Get, GetOrPost, Post};
    [
        route("/connect/token", Post, E::Token, OAuth),
        route("/connect/revocation", Post, E::Revocation, OAuth),
        route("/connect/introspect", Post, E::Introspection, OAuth),
        route("/connect/userinfo", GetOrPost, E::Userinfo, OAuth),
        route("/.well-known/jwks.json", Get, E::Jwks, OAuth),
        route("/openapi.json", Get, E::OpenApi, OAuth),
        route(
            "/.well-known/openid-configuration",
            Get,
            E::OpenIdConfiguration,
            OAuth,
        ),
        route(
            "/.well-known/oauth-authorization-server",
            Get,
            E::OAuthMetadata,
            OAuth,
        ),
        route("/api/id/v1/auth/token/revoke", Post, E::ApiRevoke, Camel),
        route(
            "/api/v2/identity/token/batch-revocation",
            Post,
            E::BatchRevocation,
            PluginError,
        ),
    ]
};

/// The route serving `path`, if any.
pub(crate) fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

/// The path `endpoint` is served at.
pub(crate) fn path(endpoint: Endpoint) -> &'static str {
    ROUTES
        .iter()
        .find(|r| r.endpoint == endpoint)
        .map_or("/", |r| r.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_exactly_one_route() {
        let all = [
            Endpoint::Token,
            Endpoint::Revocation,
            Endpoint::ApiRevoke,
            Endpoint::BatchRevocation,
            Endpoint::Introspection,
            Endpoint::Userinfo,
            Endpoint::OpenIdConfiguration,
            Endpoint::OAuthMetadata,
            Endpoint::Jwks,
            Endpoint::OpenApi,
        ];
        for endpoint in all {
            assert_eq!(
                ROUTES.iter().filter(|r| r.endpoint == endpoint).count(),
                1,
                "{endpoint:?}"
            );
        }
        for route in &ROUTES {
            assert_eq!(find(route.path).map(|r| r.endpoint), Some(route.endpoint));
        }
    }

    /// The OpenAPI description names exactly the routes the service serves, with their methods.
    #[test]
    fn the_openapi_description_covers_every_route_and_no_other() {
        let description: serde_json::Value =
            serde_json::from_str(openapi::DESCRIPTION).expect("openapi.json is JSON");
        let paths = description["paths"].as_object().expect("paths");
        for route in &ROUTES {
            let described = paths
                .get(route.path)
                .unwrap_or_else(|| panic!("{} is served but not described", route.path));
            let mut methods: Vec<&str> = described
                .as_object()
                .expect("a path item")
                .keys()
                .map(String::as_str)
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(k))
                .collect();
            methods.sort_unstable();
            let expected: &[&str] = match route.methods {
                Methods::Post => &["post"],
                Methods::Get => &["get"],
                Methods::GetOrPost => &["get", "post"],
            };
            assert_eq!(methods, expected, "{}", route.path);
        }
        for path in paths.keys() {
            assert!(find(path).is_some(), "{path} is described but not served");
        }
    }
}
