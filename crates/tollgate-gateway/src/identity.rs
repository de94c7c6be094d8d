//! The verified identity as headers: set for the upstream (or in a forward-auth answer), after
//! every client copy, in any spelling, was removed ([`crate::headers`]), so that a client can
//! never supply its own.

use http::{HeaderMap, HeaderName, HeaderValue};
use tollgate_core::Claims;

/// The header names that carry subject, client, tenant, scopes, roles and token id.
#[derive(Debug, Clone)]
pub(crate) struct IdentityHeaders {
    /// subject, client, tenant, scopes, roles, jti.
    names: [HeaderName; 6],
}

/// A claim that cannot stand in a header value (a control character in `sub`, say).
#[derive(Debug)]
pub(crate) struct Unrepresentable;

impl IdentityHeaders {
    pub(crate) fn new(names: [HeaderName; 6]) -> Self {
        IdentityHeaders { names }
    }

    /// The header names (the client's copies are removed by
    /// [`crate::headers::strip_client_copies`]).
    pub(crate) fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// Sets the identity headers from `claims` (scopes space-separated, roles comma-separated;
    /// tenant and roles left out when the token has none).
    ///
    /// A claim whose header an upstream would read as something else is refused: a value with
    /// a control character, or with spaces at either end (parsers trim them: `" admin"` would be
    /// `admin`), an empty subject, and a role holding a `,` or a space (`["user,admin"]` would
    /// read as two roles).
    pub(crate) fn insert(
        &self,
        headers: &mut HeaderMap,
        claims: &Claims,
    ) -> Result<(), Unrepresentable> {
        let value = |text: &str| {
            if text.trim() != text {
                return Err(Unrepresentable);
            }
            HeaderValue::from_str(text).map_err(|_| Unrepresentable)
        };
        let [subject, client, tenant, scopes, roles, jti] = &self.names;
        if claims.sub.is_empty() {
            return Err(Unrepresentable);
        }
        headers.insert(subject, value(&claims.sub)?);
        headers.insert(client, value(&claims.client_id)?);
        if let Some(t) = &claims.tenant {
            headers.insert(tenant, value(t)?);
        }
        if !claims.scope.is_empty() {
            headers.insert(scopes, value(&claims.scope)?);
        }
        if !claims.roles.is_empty() {
            if claims
                .roles
                .iter()
                .any(|r| r.is_empty() || r.contains(|c: char| c == ',' || c.is_whitespace()))
            {
                return Err(Unrepresentable);
            }
            headers.insert(roles, value(&claims.roles.join(","))?);
        }
        headers.insert(jti, value(&claims.jti)?);
        Ok(())
    }
}
