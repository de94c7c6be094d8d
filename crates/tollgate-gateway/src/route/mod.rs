//! Routes: which requests the gateway lets through, to which upstream, and what a token must
//! carry for them.
//!
//! Paths are first checked and percent-decoded ([`routable`]): a path an upstream could read as
//! another is refused with 400. A route matches the decoded path's prefix, segment by segment
//! (`/api` matches `/api` and `/api/orders`, not `/apiary`), and optionally a list of methods.
//! The routes with the longest prefix that covers the path decide, the first of them whose
//! methods include the method winning; a request no route matches is refused with 403 (see
//! [`crate::gateway`]). A route is public
//! (no token looked at) or protected: a valid, unrevoked token, of one of the route's issuers if
//! it lists some, plus every listed scope, every listed role and, if set, a tenant at or below
//! the route's.

mod path;

pub(crate) use path::routable;

use http::Method;
use std::sync::Arc;
use tollgate_core::{Claims, TenantPath};

/// One `[[routes]]` entry.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) prefix: String,
    pub(crate) methods: Option<Vec<Method>>,
    /// Index into the gateway's upstreams; `None` for a route only forward-auth answers.
    pub(crate) upstream: Option<usize>,
    pub(crate) access: Access,
    pub(crate) strip_authorization: bool,
}

/// Who may use a route.
#[derive(Debug)]
pub(crate) enum Access {
    /// Anyone: the token is not looked at (identity headers are still removed).
    Public,
    /// A valid, unrevoked token that meets these requirements.
    Protected(Requirements),
}

/// What a protected route asks of a verified token.
#[derive(Debug)]
pub(crate) struct Requirements {
    scopes: Vec<String>,
    /// The scopes, space-separated, for the `insufficient_scope` challenge.
    scope_challenge: Arc<str>,
    roles: Vec<String>,
    tenant: Option<TenantPath>,
    /// The issuers whose tokens the route accepts; `None`: any issuer the gateway trusts.
    issuers: Option<Vec<String>>,
}

/// Why a verified token may not use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The token's issuer is trusted by the gateway but not listed by the route: refused as the
    /// Layer refuses a token of an unknown issuer.
    Issuer,
    /// A scope is missing: the route's scopes, space-separated.
    Scope(Arc<str>),
    /// A role is missing.
    Role,
    /// The token's tenant is not the route's or below it.
    Tenant,
}

impl Denied {
    /// The metrics label.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            // The Layer's label for a wrong issuer: the two refusals read alike.
            Denied::Issuer => "invalid_token",
            Denied::Scope(_) => "insufficient_scope",
            Denied::Role => "missing_role",
            Denied::Tenant => "wrong_tenant",
        }
    }
}

impl Requirements {
    pub(crate) fn new(
        scopes: Vec<String>,
        roles: Vec<String>,
        tenant: Option<TenantPath>,
        issuers: Option<Vec<String>>,
    ) -> Self {
        Requirements {
            scope_challenge: scopes.join(" ").into(),
            scopes,
            roles,
            tenant,
            issuers,
        }
    }

    /// Whether `claims` meet every requirement. The issuer first: a token of another issuer is
    /// not valid here (401), whatever it carries.
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), Denied> {
        if let Some(issuers) = &self.issuers
            && !issuers.contains(&claims.iss)
        {
            return Err(Denied::Issuer);
        }
        if !self.scopes.iter().all(|s| claims.has_scope(s)) {
            return Err(Denied::Scope(self.scope_challenge.clone()));
        }
        if !self.roles.iter().all(|r| claims.has_role(r)) {
            return Err(Denied::Role);
        }
        if let Some(tenant) = &self.tenant
            && !tenant.covers(claims.tenant())
        {
            return Err(Denied::Tenant);
        }
        Ok(())
    }
}

/// The routes in order.
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub(crate) fn new(routes: Vec<Arc<Route>>) -> Self {
        RouteTable { routes }
    }

    /// The route for `method` and `path` (as [`routable`] made it), with its index (for
    /// metrics): among the routes whose prefix covers the path, only those with the longest such
    /// prefix are considered, and the first of them whose methods include `method` wins. A
    /// method that the most specific routes do not list never falls back to a broader route: a
    /// public `/` after a GET-only `/api` does not make `DELETE /api/x` public.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<(usize, &Arc<Route>)> {
        let longest = self
            .routes
            .iter()
            .filter(|r| prefix_matches(&r.prefix, path))
            .map(|r| r.prefix.len())
            .max()?;
        self.routes.iter().enumerate().find(|(_, r)| {
            r.prefix.len() == longest
                && prefix_matches(&r.prefix, path)
                && r.methods.as_ref().is_none_or(|m| m.contains(method))
        })
    }

    /// Every route, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

/// `prefix` covers `path` whole segments at a time.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, methods: Option<&[Method]>) -> Arc<Route> {
        Arc::new(Route {
            prefix: prefix.to_owned(),
            methods: methods.map(<[Method]>::to_vec),
            upstream: Some(0),
            access: Access::Public,
            strip_authorization: false,
        })
    }

    #[test]
    fn the_longest_covering_prefix_decides() {
        let table = RouteTable::new(vec![
            route("/", None),
            route("/api", Some(&[Method::GET])),
            route("/api", Some(&[Method::POST])),
            route("/api/admin", None),
        ]);
        let find = |method: Method, path: &str| table.find(&method, path).map(|(i, _)| i);
        assert_eq!(find(Method::GET, "/api/x"), Some(1));
        assert_eq!(find(Method::POST, "/api/x"), Some(2));
        // Not `/`'s: `/api` is more specific and lists neither.
        assert_eq!(find(Method::DELETE, "/api/x"), None);
        assert_eq!(find(Method::DELETE, "/api/admin/x"), Some(3));
        assert_eq!(find(Method::DELETE, "/apiary"), Some(0));
    }

    #[test]
    fn the_issuer_is_judged_before_scopes_roles_and_tenant() {
        let requirements = Requirements::new(
            vec!["orders:read".into()],
            vec!["admin".into()],
            None,
            Some(vec!["https://a".into()]),
        );
        let mut claims: Claims = serde_json::from_value(serde_json::json!({
            "iss": "https://b", "sub": "s", "aud": "api", "exp": 2, "iat": 1, "jti": "j",
            "client_id": "c",
        }))
        .unwrap();
        // A token of another issuer is not valid here: 401, not a 403 for what it lacks.
        assert_eq!(requirements.check(&claims), Err(Denied::Issuer));
        claims.iss = "https://a".into();
        assert!(matches!(requirements.check(&claims), Err(Denied::Scope(_))));
        claims.scope = "orders:read".into();
        claims.roles = vec!["admin".into()];
        assert_eq!(requirements.check(&claims), Ok(()));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/orders"));
        assert!(!prefix_matches("/api", "/apiary"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(prefix_matches("/", "/anything"));
        assert!(!prefix_matches("/api", "/"));
    }
}
