//! Logout token validation (OpenID Connect Back-Channel Logout 1.0, §2.4 and §2.6).

use super::issuer::{LogoutIssuer, RevokeOnLogout};
use crate::http::{is_strict_json, numeric_date};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use tollgate_core::jws::{self, Compact, JwsError, Present};
use tollgate_core::{Audience, CutoffScope, RevocationEvent, UnixMillis};

/// The member of `events` that makes a JWT a logout token.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The longest logout token read: they are a few hundred bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A logout token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogoutToken {
    /// `iss`: the provider.
    pub issuer: String,
    /// `sub`: the user whose sessions ended, if named.
    pub subject: Option<String>,
    /// `sid`: the session that ended, if named.
    pub session: Option<String>,
    /// `jti`.
    pub jti: String,
    /// `iat`, Unix seconds on the provider's clock.
    pub issued_at: i64,
}

impl LogoutToken {
    /// The cutoff this logout means under `revoke` (see [`RevokeOnLogout`]): that issuer's
    /// tokens of the session or of the subject, issued before the end of the logout token's
    /// second.
    pub fn event(&self, revoke: RevokeOnLogout) -> RevocationEvent {
        let scope = match (revoke, &self.subject, &self.session) {
            (RevokeOnLogout::Subject, Some(sub), _) | (_, Some(sub), None) => {
                CutoffScope::Subject(sub.clone())
            }
            (_, _, Some(sid)) => CutoffScope::Session(sid.clone()),
            // Validation guarantees `sub` or `sid`; without either there is nothing narrower
            // than the issuer, and a logout must not revoke less than it says.
            (_, None, None) => CutoffScope::All,
        };
        RevocationEvent::IssuerCutoff {
            issuer: self.issuer.clone(),
            scope,
            issued_before: UnixMillis::from_secs(self.issued_at.saturating_add(1)),
        }
    }
}

/// Why a logout token was refused. Each has a description safe to send back (it never echoes
/// the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutTokenError {
    /// Not a compact JWS, a header or claims that do not parse, a claim named twice.
    Malformed,
    /// The header's `typ` is neither `logout+jwt` nor `JWT`.
    WrongType,
    /// `iss` is not a configured issuer.
    UnknownIssuer,
    /// The signature, its algorithm or its key.
    Signature(JwsError),
    /// `aud` does not name the configured client.
    WrongAudience,
    /// `iat` is missing or older than the freshness window.
    Stale,
    /// `iat` is in the future beyond the clock-skew leeway.
    NotYetValid,
    /// `exp` has passed.
    Expired,
    /// No `jti`.
    MissingTokenId,
    /// No `events` object with the back-channel logout event.
    NotALogoutToken,
    /// Neither `sub` nor `sid`.
    NoSubjectOrSession,
    /// A `nonce`: logout tokens must not carry one (it is how an ID token is told apart).
    NoncePresent,
}

impl LogoutTokenError {
    /// The `error_description` sent to the provider.
    pub fn description(&self) -> &'static str {
        match self {
            LogoutTokenError::Malformed => "malformed logout token",
            LogoutTokenError::WrongType => "logout token type must be logout+jwt",
            LogoutTokenError::UnknownIssuer => "unknown issuer",
            LogoutTokenError::Signature(JwsError::AlgorithmNotAllowed) => {
                "signing algorithm not allowed"
            }
            LogoutTokenError::Signature(JwsError::UnknownKey) => "unknown signing key",
            LogoutTokenError::Signature(JwsError::CriticalHeader) => "unsupported critical header",
            LogoutTokenError::Signature(JwsError::Malformed) => "malformed logout token",
            LogoutTokenError::Signature(_) => "invalid signature",
            LogoutTokenError::WrongAudience => "wrong audience",
            LogoutTokenError::Stale => "logout token too old",
            LogoutTokenError::NotYetValid => "logout token issued in the future",
            LogoutTokenError::Expired => "logout token expired",
            LogoutTokenError::MissingTokenId => "logout token has no jti",
            LogoutTokenError::NotALogoutToken => {
                "not a logout token (no back-channel logout event)"
            }
            LogoutTokenError::NoSubjectOrSession => "logout token names neither sub nor sid",
            LogoutTokenError::NoncePresent => "logout token must not carry a nonce",
        }
    }
}

impl fmt::Display for LogoutTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for LogoutTokenError {}

/// The configured issuers and the freshness rules.
#[derive(Debug)]
pub(crate) struct Validator {
    pub(crate) issuers: Vec<LogoutIssuer>,
    pub(crate) max_age_secs: i64,
    pub(crate) leeway_secs: i64,
}

impl Validator {
    /// Validates `token` at `now` (Unix seconds); the token and the issuer it came from.
    pub(crate) async fn validate(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(LogoutToken, &LogoutIssuer), LogoutTokenError> {
        let compact = Compact::parse(token, MAX_TOKEN_LEN).map_err(|e| match e {
            JwsError::Malformed => LogoutTokenError::Malformed,
            other => LogoutTokenError::Signature(other),
        })?;
        // §2.4: explicit typing is recommended, not required; many providers send the generic
        // `JWT`. Any other type (`at+jwt`, `secevent+jwt`) is another kind of token.
        if let Some(typ) = &compact.header().typ
            && !jws::typ_is(typ, "logout+jwt")
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(LogoutTokenError::WrongType);
        }
        // The issuer is read before the signature is checked only to choose whose keys check it.
        #[derive(Deserialize)]
        struct Issuer {
            iss: String,
        }
        if !is_strict_json(compact.payload()) {
            return Err(LogoutTokenError::Malformed);
        }
        let claimed: Issuer =
            serde_json::from_slice(compact.payload()).map_err(|_| LogoutTokenError::Malformed)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == claimed.iss)
            .ok_or(LogoutTokenError::UnknownIssuer)?;
        verify(&compact, issuer).await?;
        let claims: RawClaims =
            serde_json::from_slice(compact.payload()).map_err(|_| LogoutTokenError::Malformed)?;
        Ok((self.check_claims(claims, issuer, now)?, issuer))
    }

    fn check_claims(
        &self,
        claims: RawClaims,
        issuer: &LogoutIssuer,
        now: i64,
    ) -> Result<LogoutToken, LogoutTokenError> {
        if !claims.aud.contains(&issuer.client_id) {
            return Err(LogoutTokenError::WrongAudience);
        }
        let iat = claims
            .iat
            .as_ref()
            .and_then(numeric_date)
            .ok_or(LogoutTokenError::Stale)?;
        if iat < now.saturating_sub(self.max_age_secs) {
            return Err(LogoutTokenError::Stale);
        }
        if iat > now.saturating_add(self.leeway_secs) {
            return Err(LogoutTokenError::NotYetValid);
        }
        if let Some(exp) = &claims.exp {
            let exp = numeric_date(exp).ok_or(LogoutTokenError::Malformed)?;
            if now >= exp.saturating_add(self.leeway_secs) {
                return Err(LogoutTokenError::Expired);
            }
        }
        let jti = claims
            .jti
            .filter(|j| !j.is_empty())
            .ok_or(LogoutTokenError::MissingTokenId)?;
        let is_logout = claims
            .events
            .as_ref()
            .and_then(|events| events.get(LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !is_logout {
            return Err(LogoutTokenError::NotALogoutToken);
        }
        let subject = claims.sub.filter(|s| !s.is_empty());
        let session = claims.sid.filter(|s| !s.is_empty());
        if subject.is_none() && session.is_none() {
            return Err(LogoutTokenError::NoSubjectOrSession);
        }
        if claims.nonce.0 {
            return Err(LogoutTokenError::NoncePresent);
        }
        Ok(LogoutToken {
            issuer: issuer.issuer.clone(),
            subject,
            session,
            jti,
            issued_at: iat,
        })
    }
}

/// Checks the signature with the issuer's keys; a key set fetched remotely is refetched once
/// when the `kid` is unknown (the provider may have just rotated).
async fn verify(compact: &Compact<'_>, issuer: &LogoutIssuer) -> Result<(), LogoutTokenError> {
    match compact.verify(&issuer.keys, &issuer.algorithms) {
        Err(JwsError::UnknownKey) => {
            let refetched = issuer.remote.as_ref().and_then(|remote| remote.refetch());
            let Some(refetched) = refetched else {
                return Err(LogoutTokenError::Signature(JwsError::UnknownKey));
            };
            refetched.await;
            compact
                .verify(&issuer.keys, &issuer.algorithms)
                .map_err(LogoutTokenError::Signature)
        }
        other => other.map_err(LogoutTokenError::Signature),
    }
}

/// The claims a logout token is judged by; a claim named twice does not deserialize.
#[derive(Deserialize)]
struct RawClaims {
    aud: Audience,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    events: Option<Map<String, Value>>,
    #[serde(default)]
    nonce: Present,
}
