//! The revocation events produced by the issuer and applied by every validator.

use crate::{Claims, UnixMillis};
use serde::{Deserialize, Serialize};

/// Which tokens a [`RevocationEvent::Cutoff`] applies to.
///
/// Non-exhaustive: new scopes may be added, so a `match` needs a wildcard arm (a validator that
/// meets a scope it does not know should refuse to act on the event rather than guess).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum CutoffScope {
    /// Every token.
    All,
    /// Tokens of this tenant path and of its sub-tenants (`/Org` covers `/Org/Sub`).
    Tenant(String),
    /// Tokens whose `sub` is this subject.
    Subject(String),
    /// Tokens issued to this client.
    Client(String),
}

impl CutoffScope {
    /// The scopes' names, in the order of [`CutoffScope`]'s variants: what every store
    /// (SQLite's and PostgreSQL's `cutoffs.scope` column), the Redis wire format and the JSON form
    /// call them, spelled in this one place.
    pub const KINDS: [&'static str; 4] = ["all", "tenant", "subject", "client"];

    /// This scope's name: `all`, `tenant`, `subject` or `client` (see [`KINDS`](Self::KINDS)).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[match self {
            CutoffScope::All => 0,
            CutoffScope::Tenant(_) => 1,
            CutoffScope::Subject(_) => 2,
            CutoffScope::Client(_) => 3,
        }]
    }

    /// What this scope names: the tenant path, the subject or the client id; empty for
    /// [`All`](CutoffScope::All).
    pub fn value(&self) -> &str {
        match self {
            CutoffScope::All => "",
            CutoffScope::Tenant(v) | CutoffScope::Subject(v) | CutoffScope::Client(v) => v,
        }
    }

    /// The scope named `kind` with this `value`, as [`kind`](Self::kind) and
    /// [`value`](Self::value) give them apart: `None` for a name this version does not know,
    /// or for `all` with a value. (A tenant path is not validated here; see
    /// [`RevocationEvent::is_valid`].)
    pub fn from_parts(kind: &str, value: impl Into<String>) -> Option<CutoffScope> {
        let value = value.into();
        match kind {
            "all" if value.is_empty() => Some(CutoffScope::All),
            "tenant" => Some(CutoffScope::Tenant(value)),
            "subject" => Some(CutoffScope::Subject(value)),
            "client" => Some(CutoffScope::Client(value)),
            _ => None,
        }
    }
}

/// One revocation, as stored, replicated and applied.
///
/// Non-exhaustive: new kinds of revocation may be added, so a `match` needs a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevocationEvent {
    /// One access token, by `jti`. Forgotten once `expires_at` has passed.
    Token {
        /// The token's `jti`.
        jti: String,
        /// The token's expiry; the entry is purged after it.
        expires_at: UnixMillis,
    },
    /// A refresh-token family and every access token minted from it.
    Grant {
        /// The grant id carried by the family's tokens.
        grant_id: String,
        /// The latest expiry of any token of the family.
        expires_at: UnixMillis,
    },
    /// Every token in `scope` issued strictly before `issued_before`.
    Cutoff {
        /// Which tokens the cutoff applies to.
        scope: CutoffScope,
        /// Tokens issued before this instant are rejected; at or after it, accepted.
        issued_before: UnixMillis,
    },
}

impl RevocationEvent {
    /// Whether the event can take effect: a tenant cutoff must name a valid
    /// [`TenantPath`](crate::TenantPath). [`RevocationIndex::apply`](crate::RevocationIndex::apply)
    /// ignores invalid events.
    pub fn is_valid(&self) -> bool {
        match self {
            RevocationEvent::Cutoff {
                scope: CutoffScope::Tenant(path),
                ..
            } => crate::TenantPath::is_valid(path),
            _ => true,
        }
    }

    /// Revokes the token these claims belong to, until it expires.
    pub fn revoke_token(claims: &Claims) -> Self {
        RevocationEvent::Token {
            jti: claims.jti.clone(),
            expires_at: UnixMillis::from_secs(claims.exp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip_and_match_the_json_form() {
        for scope in [
            CutoffScope::All,
            CutoffScope::Tenant("/Org".into()),
            CutoffScope::Subject("alice".into()),
            CutoffScope::Client("web".into()),
        ] {
            assert_eq!(
                CutoffScope::from_parts(scope.kind(), scope.value()),
                Some(scope.clone())
            );
            let json = serde_json::to_value(&scope).unwrap();
            assert_eq!(json["type"], scope.kind(), "{json}");
        }
        assert_eq!(CutoffScope::from_parts("all", "x"), None);
        assert_eq!(CutoffScope::from_parts("issuer", "x"), None);
    }

    #[test]
    fn revoke_token_lasts_until_the_token_expires() {
        let claims: Claims = serde_json::from_str(
            r#"{"iss":"i","sub":"s","aud":"a","exp":100,"iat":1,"jti":"j","client_id":"c"}"#,
        )
        .unwrap();
        assert_eq!(
            RevocationEvent::revoke_token(&claims),
            RevocationEvent::Token {
                jti: "j".into(),
                expires_at: UnixMillis(100_000)
            }
        );
    }

    #[test]
    fn json_shape_is_stable() {
        let e = RevocationEvent::Cutoff {
            scope: CutoffScope::Tenant("/Org".into()),
            issued_before: UnixMillis(5),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"cutoff","scope":{"type":"tenant","value":"/Org"},"issued_before":5}"#
        );
        assert_eq!(serde_json::from_str::<RevocationEvent>(&json).unwrap(), e);
        let all = RevocationEvent::Cutoff {
            scope: CutoffScope::All,
            issued_before: UnixMillis(1),
        };
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(serde_json::from_str::<RevocationEvent>(&json).unwrap(), all);
    }
}
