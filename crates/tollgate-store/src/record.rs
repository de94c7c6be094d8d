//! What a store records: the tokens the issuer handed out and the revocations it made.

use tollgate_core::{RevocationEvent, UnixMillis};

/// SHA-256 of a refresh token: the only form in which refresh tokens are stored.
pub type TokenHash = [u8; 32];

/// An access token the issuer signed: enough to count it in a batch revocation and to judge it
/// against the revocation index. The token itself is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// `jti`.
    pub jti: String,
    /// The refresh-token family it was minted from, if any.
    pub grant_id: Option<String>,
    /// Tenant path.
    pub tenant: String,
    /// `sub`.
    pub subject: String,
    /// `client_id`.
    pub client_id: String,
    /// Issue instant, millisecond precision.
    pub issued_at: UnixMillis,
    /// Expiry.
    pub expires_at: UnixMillis,
}

/// A refresh token, stored by hash, with what is needed to mint access tokens from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the opaque token.
    pub hash: TokenHash,
    /// The family (grant) it belongs to; rotation keeps the grant id.
    pub grant_id: String,
    /// The client it is bound to.
    pub client_id: String,
    /// The resource owner's subject.
    pub subject: String,
    /// Tenant path.
    pub tenant: String,
    /// Space-separated scopes granted.
    pub scope: String,
    /// Issue instant.
    pub issued_at: UnixMillis,
    /// Expiry.
    pub expires_at: UnixMillis,
    /// Set once the token has been exchanged for a new one: presenting it again is reuse.
    pub rotated: bool,
}

/// One change to durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An access token was issued.
    AccessToken(AccessTokenRecord),
    /// A refresh token was issued.
    RefreshToken(RefreshTokenRecord),
    /// The refresh token with this hash was rotated (exchanged); it stays stored, marked, until
    /// it expires so that a replay is recognised.
    RefreshRotated(TokenHash),
    /// A revocation: stored as the event itself. Token and grant events are kept until their
    /// `expires_at`; cutoffs (one per issuer and scope, the latest instant wins; everyone's
    /// apart from each issuer's) until no token they bind can still be accepted.
    ///
    /// A cutoff of one issuer must name it: stores spell "every issuer" as an empty issuer, so
    /// [`Store::commit`](crate::Store::commit) refuses an issuer's cutoff with an empty one (it
    /// would come back as everyone's).
    Revocation(RevocationEvent),
}

/// What [`Store::purge`](crate::Store::purge) forgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purge {
    /// Tokens and token or grant revocations that expired before this instant.
    pub expired_before: UnixMillis,
    /// Cutoffs at or before this instant: every token they could bind has expired.
    pub cutoffs_before: UnixMillis,
}

impl Purge {
    /// Forgets what expired before `expired_before` and the cutoffs at or before
    /// `cutoffs_before`.
    pub fn new(expired_before: UnixMillis, cutoffs_before: UnixMillis) -> Self {
        Purge {
            expired_before,
            cutoffs_before,
        }
    }
}

/// Everything live, as read back on start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Access tokens that had not expired.
    pub access_tokens: Vec<AccessTokenRecord>,
    /// Refresh tokens that had not expired, rotated ones included.
    pub refresh_tokens: Vec<RefreshTokenRecord>,
    /// Every revocation event still stored (token and grant events not yet purged, every cutoff).
    pub revocations: Vec<RevocationEvent>,
}
