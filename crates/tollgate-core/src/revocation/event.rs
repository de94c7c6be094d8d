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
    /// Tokens whose `sid` claim names this session (OpenID Connect's session id: what a
    /// back-channel logout ends).
    Session(String),
}

impl CutoffScope {
    /// The scopes' names, in the order of [`CutoffScope`]'s variants: what every store
    /// (SQLite's and PostgreSQL's `cutoffs.scope` column), the Redis wire format and the JSON form
    /// call them, spelled in this one place.
    pub const KINDS: [&'static str; 5] = ["all", "tenant", "subject", "client", "session"];

    /// This scope's name: `all`, `tenant`, `subject`, `client` or `session` (see
    /// [`KINDS`](Self::KINDS)).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[match self {
            CutoffScope::All => 0,
            CutoffScope::Tenant(_) => 1,
            CutoffScope::Subject(_) => 2,
            CutoffScope::Client(_) => 3,
            CutoffScope::Session(_) => 4,
        }]
    }

    /// What this scope names: the tenant path, the subject, the client id or the session id;
    /// empty for [`All`](CutoffScope::All).
    pub fn value(&self) -> &str {
        match self {
            CutoffScope::All => "",
            CutoffScope::Tenant(v)
            | CutoffScope::Subject(v)
            | CutoffScope::Client(v)
            | CutoffScope::Session(v) => v,
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
            "session" => Some(CutoffScope::Session(value)),
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
    /// Every token in `scope` issued strictly before `issued_before`, whoever issued it: what
    /// tollgate's own token service and `tollgate revoke` produce.
    Cutoff {
        /// Which tokens the cutoff applies to.
        scope: CutoffScope,
        /// Tokens issued before this instant are rejected; at or after it, accepted.
        issued_before: UnixMillis,
    },
    /// Every token **of one issuer** in `scope` issued strictly before `issued_before`: what an
    /// identity provider's back-channel logout or security event means. Subjects and sessions
    /// are an issuer's own names (two providers may both have a user `1234`), so such a cutoff
    /// never touches another issuer's tokens; [`CutoffScope::All`] here means "every token of
    /// this issuer".
    IssuerCutoff {
        /// The `iss` of the tokens it applies to, compared exactly.
        issuer: String,
        /// Which of that issuer's tokens the cutoff applies to.
        scope: CutoffScope,
        /// Tokens issued before this instant are rejected; at or after it, accepted.
        issued_before: UnixMillis,
    },
}

impl RevocationEvent {
    /// Whether the event can take effect: a tenant cutoff must name a valid
    /// [`TenantPath`](crate::TenantPath), and an issuer's cutoff a non-empty issuer.
    /// [`RevocationIndex::apply`](crate::RevocationIndex::apply) ignores invalid events.
    pub fn is_valid(&self) -> bool {
        match self {
            RevocationEvent::IssuerCutoff { issuer, .. } if issuer.is_empty() => false,
            RevocationEvent::Cutoff { scope, .. } | RevocationEvent::IssuerCutoff { scope, .. } => {
                match scope {
                    CutoffScope::Tenant(path) => crate::TenantPath::is_valid(path),
                    _ => true,
                }
            }
            _ => true,
        }
    }

    /// The cutoff this event carries, if it is one: the issuer it is limited to (`None` for
    /// every issuer), its scope and its instant. One place for code that treats both kinds of
    /// cutoff alike (stores, wire formats).
    pub fn as_cutoff(&self) -> Option<(Option<&str>, &CutoffScope, UnixMillis)> {
        match self {
            RevocationEvent::Cutoff {
                scope,
                issued_before,
            } => Some((None, scope, *issued_before)),
            RevocationEvent::IssuerCutoff {
                issuer,
                scope,
                issued_before,
            } => Some((Some(issuer), scope, *issued_before)),
            _ => None,
        }
    }

    /// A cutoff limited to `issuer`'s tokens when it is `Some`, for every issuer's otherwise:
    /// the inverse of [`as_cutoff`](Self::as_cutoff).
    pub fn cutoff(issuer: Option<&str>, scope: CutoffScope, issued_before: UnixMillis) -> Self {
        match issuer {
            Some(issuer) => RevocationEvent::IssuerCutoff {
                issuer: issuer.to_owned(),
                scope,
                issued_before,
            },
            None => RevocationEvent::Cutoff {
                scope,
                issued_before,
            },
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
            CutoffScope::Session("s-1".into()),
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
        let session = RevocationEvent::IssuerCutoff {
            issuer: "https://id.example.com".into(),
            scope: CutoffScope::Session("s-1".into()),
            issued_before: UnixMillis(7),
        };
        let json = serde_json::to_string(&session).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"issuer_cutoff","issuer":"https://id.example.com","scope":{"type":"session","value":"s-1"},"issued_before":7}"#
        );
        assert_eq!(
            serde_json::from_str::<RevocationEvent>(&json).unwrap(),
            session
        );
    }

    #[test]
    fn both_kinds_of_cutoff_read_alike() {
        for issuer in [None, Some("https://id.example.com")] {
            let event = RevocationEvent::cutoff(issuer, CutoffScope::All, UnixMillis(9));
            assert_eq!(
                event.as_cutoff(),
                Some((issuer, &CutoffScope::All, UnixMillis(9)))
            );
        }
        assert!(
            !RevocationEvent::cutoff(Some(""), CutoffScope::All, UnixMillis(1)).is_valid(),
            "an issuer's cutoff names its issuer"
        );
        assert!(
            !RevocationEvent::cutoff(Some("i"), CutoffScope::Tenant("Org".into()), UnixMillis(1))
                .is_valid()
        );
    }
}
