//! One provider whose logout tokens a receiver accepts.

use tollgate_core::{KeySet, SigningAlgorithm};
use tollgate_layer::RemoteJwks;

/// What a back-channel logout revokes. Which one is right depends on what the provider puts in
/// its access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RevokeOnLogout {
    /// The ended session's tokens (their `sid`); a logout token with only `sub` revokes the
    /// subject's tokens, as the specification means it. Right for providers whose access tokens
    /// carry `sid` (Keycloak does).
    #[default]
    Session,
    /// Every token of the subject (`sub`) from that issuer, whichever session it came from; a
    /// logout token with only `sid` still revokes that session. Right for providers whose access
    /// tokens carry no `sid`: a session cutoff would match none of them.
    Subject,
}

/// A provider whose logout tokens are accepted: its `iss`, the client id its logout tokens are
/// addressed to (`aud`), its keys and the algorithms it signs with.
#[derive(Debug, Clone)]
pub struct LogoutIssuer {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) keys: KeySet,
    pub(crate) remote: Option<RemoteJwks>,
    pub(crate) algorithms: Vec<SigningAlgorithm>,
    pub(crate) revoke: RevokeOnLogout,
}

impl LogoutIssuer {
    /// Logout tokens from `issuer` (compared exactly with their `iss`) addressed to `client_id`,
    /// verified with `keys`.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>, keys: KeySet) -> Self {
        LogoutIssuer {
            issuer: issuer.into(),
            client_id: client_id.into(),
            keys,
            remote: None,
            algorithms: SigningAlgorithm::ALL.to_vec(),
            revoke: RevokeOnLogout::default(),
        }
    }

    /// Logout tokens from `issuer` addressed to `client_id`, verified with keys fetched from its
    /// JWKS (shared with the Verifier of its access tokens, if that is the same `RemoteJwks`);
    /// an unknown `kid` makes it refetch once.
    pub fn remote(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        remote: RemoteJwks,
    ) -> Self {
        LogoutIssuer {
            keys: remote.keys().clone(),
            remote: Some(remote),
            ..LogoutIssuer::new(issuer, client_id, KeySet::new())
        }
    }

    /// Restricts the accepted algorithms (default: every one tollgate implements; each key still
    /// verifies only its own).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// What a logout revokes (default [`RevokeOnLogout::Session`]).
    pub fn revoke(mut self, revoke: RevokeOnLogout) -> Self {
        self.revoke = revoke;
        self
    }

    /// The issuer, as compared with `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}
