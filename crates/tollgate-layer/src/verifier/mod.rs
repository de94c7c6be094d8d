//! Token verification: signature, header, registered claims, then the revocation index; for one
//! issuer or several, each with its own keys ([`Issuer`]).

mod builder;
mod issuer;

pub use builder::{BuildError, VerifierBuilder};
pub use issuer::Issuer;

use crate::cache::VerifiedTokenCache;
use crate::claims::VerifiedClaims;
use crate::remote_jwks::RemoteJwks;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use issuer::{Issuers, Read, TrustedIssuer};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use tokio::sync::futures::OwnedNotified;
use tollgate_core::{
    Claims, Clock, KeySet, RevocationIndex, Revoked, SigningAlgorithm, TenantPath, VerifyError,
};

/// Why a bearer token was not accepted. Each reason has a short description that is safe to show
/// the client (it never echoes token contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than the configured maximum.
    TooLarge,
    /// Not a compact JWS, bad base64url, or a header or payload that is not the expected JSON.
    Malformed,
    /// `alg` is not one tollgate supports (this includes `none`) or not one this verifier allows.
    AlgorithmNotAllowed,
    /// The header has a `crit` member: it asks for extensions this verifier does not implement.
    CriticalHeader,
    /// `typ` is not `at+jwt` (RFC 9068) while the verifier requires it.
    WrongType,
    /// No key has the token's `kid`.
    UnknownKey,
    /// The token has no `kid` and the key set holds several keys, so none can be chosen.
    MissingKeyId,
    /// The key named by `kid` belongs to another algorithm than the header's `alg`.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// A required claim is missing or mistyped, or a claim is named twice.
    InvalidClaims,
    /// `jti` is missing or empty: the token has no id, so it could never be revoked by id, and
    /// accepting it would leave a token that only a cutoff can stop.
    MissingTokenId,
    /// `iss` is not a configured issuer (or, with several issuers, is missing).
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// The revocation index rejects the token.
    Revoked(Revoked),
    /// The token is bound to a client certificate (`cnf.x5t#S256`, RFC 8705 §3) and the request
    /// came with none.
    CertificateRequired,
    /// The token is bound to another client certificate than the request's.
    CertificateMismatch,
    /// The token's `cnf` asks for a proof of possession tollgate does not check (`jkt` of DPoP,
    /// `jwk`, ...) or names no method at all: accepting it would drop the binding.
    UnsupportedConfirmation,
    /// The token is not bound to a client certificate while the layer
    /// [requires bound tokens](crate::ValidateBearerLayer::require_bound_tokens).
    Unbound,
}

impl TokenError {
    /// The `error_description` sent to the client.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token too large",
            TokenError::Malformed => "malformed token",
            TokenError::AlgorithmNotAllowed => "signing algorithm not allowed",
            TokenError::CriticalHeader => "unsupported critical header",
            TokenError::WrongType => "token type must be at+jwt",
            TokenError::UnknownKey => "unknown signing key",
            TokenError::MissingKeyId => "token names no signing key (kid)",
            TokenError::AlgorithmMismatch => "signing algorithm does not match the key",
            TokenError::BadSignature => "invalid signature",
            TokenError::InvalidClaims => "invalid claims",
            TokenError::MissingTokenId => "token has no id (jti)",
            TokenError::WrongIssuer => "wrong issuer",
            TokenError::WrongAudience => "wrong audience",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::Revoked(Revoked::Token) => "token revoked",
            TokenError::Revoked(Revoked::Grant) => "token revoked (grant revoked)",
            TokenError::Revoked(Revoked::Cutoff { .. }) => {
                "token revoked (issued before a revocation cutoff)"
            }
            // A kind of revocation the index learns later.
            TokenError::Revoked(_) => "token revoked",
            TokenError::CertificateRequired => {
                "token is bound to a client certificate and none was presented"
            }
            TokenError::CertificateMismatch => "token is bound to another client certificate",
            TokenError::UnsupportedConfirmation => "unsupported token confirmation (cnf)",
            TokenError::Unbound => "token is not bound to a client certificate",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for TokenError {}

/// Default maximum token length in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest encoded JWS header accepted.
const MAX_HEADER_LEN: usize = 1024;
/// Longest encoded signature accepted: RSA-8192, the largest key imported, gives 1366
/// characters (1024 bytes).
const MAX_SIGNATURE_LEN: usize = 1366;
const MAX_SIGNATURE_BYTES: usize = 1024;

/// Checks JWT access tokens: what [`ValidateBearer`](crate::ValidateBearer) runs on every request.
///
/// In order: length; compact-JWS shape; header JSON (`alg` supported); with several issuers, the
/// issuer named by the payload's `iss` (read alone, before anything is verified: a token naming
/// no configured issuer is refused here); `alg` allowed for that issuer, no `crit`, `typ`; the
/// key named by `kid` among **that issuer's** keys, which must be of the header's `alg`; the
/// signature; the claims (required RFC 9068 claims present, a `jti` that is not empty, `iss`,
/// `aud` for that issuer, `exp`, `nbf`, `iat` with leeway); the revocation index.
/// `jku`, `x5u` and `jwk` headers are ignored: keys come only from the configured sources.
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Issuers,
    leeway_secs: i64,
    max_token_len: usize,
    index: Arc<RevocationIndex>,
    clock: Arc<dyn Clock>,
    cache: Option<VerifiedTokenCache>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Verifier")
            .field("issuers", &i.issuers)
            .field("leeway_secs", &i.leeway_secs)
            .field("cache", &i.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The revocation index this verifier consults.
    pub fn index(&self) -> &Arc<RevocationIndex> {
        &self.inner.index
    }

    /// The keys of the first issuer: the one configured with [`VerifierBuilder::issuer`], or
    /// else the first one added. For a verifier of one issuer, its keys; with several, use
    /// [`issuer_keys`](Self::issuer_keys).
    pub fn keys(&self) -> &KeySet {
        &self.inner.issuers.first().keys
    }

    /// The keys this verifier checks the tokens of issuer `iss` with (exact match), and the
    /// remote JWKS they are fetched from, if that is their source; `None` when `iss` is not a
    /// configured issuer.
    ///
    /// For code that verifies other tokens of the same issuers, such as a back-channel logout
    /// receiver checking a logout token with its issuer's keys: it gets the keys this verifier
    /// trusts for that issuer, and no other issuer's.
    pub fn issuer_keys(&self, iss: &str) -> Option<(&KeySet, Option<&RemoteJwks>)> {
        let issuer = self.inner.issuers.get(iss)?;
        Some((&issuer.keys, issuer.remote.as_ref()))
    }

    /// The clock this verifier reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, TokenError> {
        let i = &*self.inner;
        if token.len() > i.max_token_len {
            return Err(TokenError::TooLarge);
        }
        let now = i.clock.now().as_secs();
        let Some(cache) = &i.cache else {
            return self.verify_uncached(token, now).map(VerifiedClaims::new);
        };
        let epoch = i.issuers.key_epoch();
        if let Some(claims) = cache.get(token, epoch, now.saturating_sub(i.leeway_secs)) {
            i.index
                .check(&claims.identity())
                .map_err(TokenError::Revoked)?;
            return Ok(claims);
        }
        // The epoch was read before verifying: if a key is removed meanwhile, the entry is born
        // stale rather than outliving the key.
        let claims = VerifiedClaims::new(self.verify_uncached(token, now)?);
        cache.insert(token, &claims, epoch);
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let i = &*self.inner;
        let (header_b64, payload_b64, signature_b64) = split_jws(token)?;
        let mut header_buf = [0u8; MAX_HEADER_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut header_buf)
            .map_err(|_| TokenError::Malformed)?;
        if !tollgate_core::jws::is_object(&header_buf[..n]) {
            return Err(TokenError::Malformed);
        }
        let header: Header<'_> =
            serde_json::from_slice(&header_buf[..n]).map_err(|_| TokenError::Malformed)?;
        let alg: SigningAlgorithm = header
            .alg
            .parse()
            .map_err(|_| TokenError::AlgorithmNotAllowed)?;
        let (issuer, payload) = i.issuers.judging(payload_b64)?;
        if !issuer.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if header.crit.0 {
            return Err(TokenError::CriticalHeader);
        }
        if issuer.require_at_jwt && !header.typ.as_deref().is_some_and(is_at_jwt) {
            return Err(TokenError::WrongType);
        }
        let mut signature_buf = [0u8; MAX_SIGNATURE_BYTES];
        let n = URL_SAFE_NO_PAD
            .decode_slice(signature_b64, &mut signature_buf)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        issuer
            .keys
            .verify(header.kid.as_deref(), alg, signed, &signature_buf[..n])
            .map_err(|e| match e {
                VerifyError::UnknownKey if header.kid.is_none() => TokenError::MissingKeyId,
                VerifyError::UnknownKey => TokenError::UnknownKey,
                VerifyError::AlgorithmMismatch => TokenError::AlgorithmMismatch,
                VerifyError::BadSignature => TokenError::BadSignature,
                // A reason `KeySet::verify` learns later still means "not verified".
                _ => TokenError::BadSignature,
            })?;
        // Read once: already, if choosing the issuer needed it.
        let parse = |payload: Vec<u8>| {
            serde_json::from_slice::<Claims>(&payload).map_err(|_| unreadable_claims(&payload))
        };
        let claims = match payload {
            Read::Claims(claims) => *claims,
            Read::Payload(payload) => parse(payload)?,
            Read::Later => parse(decode_payload(payload_b64)?)?,
        };
        validate_claims(issuer, &claims, now, i.leeway_secs)?;
        i.index
            .check(&claims.identity())
            .map_err(TokenError::Revoked)?;
        Ok(claims)
    }

    /// Asks the remote JWKS of `token`'s issuer (if that is its key source) to refetch because
    /// the token named an unknown `kid`; no other issuer's JWKS is asked. `None` when there is
    /// nothing to wait for.
    ///
    /// The issuer is found again from the token, as [`verify`](Self::verify) found it: this path
    /// is taken only after an unknown `kid`, so the common path carries nothing for it.
    pub(crate) fn refetch_keys(&self, token: &str) -> Option<OwnedNotified> {
        let (_, payload_b64, _) = split_jws(token).ok()?;
        let (issuer, _) = self.inner.issuers.judging(payload_b64).ok()?;
        issuer.remote.as_ref()?.refetch()
    }
}

/// The three parts of a compact JWS, with the header and signature within their bounds (the
/// payload is bounded by the token's length, checked before).
fn split_jws(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header_b64.len() > MAX_HEADER_LEN || signature_b64.len() > MAX_SIGNATURE_LEN {
        return Err(TokenError::Malformed);
    }
    Ok((header_b64, payload_b64, signature_b64))
}

/// The payload's JSON bytes.
fn decode_payload(payload_b64: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)
}

/// The claims checks of `issuer` and the shared leeway, after the signature has verified.
fn validate_claims(
    issuer: &TrustedIssuer,
    claims: &Claims,
    now: i64,
    leeway_secs: i64,
) -> Result<(), TokenError> {
    // A token without an id would be accepted until it expires whatever is revoked by id
    // (RFC 7009 at its issuer, `tollgate revoke --jti`): refused like one without `jti`.
    if claims.jti.is_empty() {
        return Err(TokenError::MissingTokenId);
    }
    // With several issuers this was chosen by `iss` already; with one, it is checked here.
    if claims.iss != issuer.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !issuer.accepts_audience(&claims.aud) {
        return Err(TokenError::WrongAudience);
    }
    if now >= claims.exp.saturating_add(leeway_secs) {
        return Err(TokenError::Expired);
    }
    // A tenant that is not a canonical path could slip past a cutoff on its parent.
    if claims
        .tenant
        .as_deref()
        .is_some_and(|t| !TenantPath::is_valid(t))
    {
        return Err(TokenError::InvalidClaims);
    }
    let latest_start = now.saturating_add(leeway_secs);
    if claims.nbf.is_some_and(|nbf| nbf > latest_start) || claims.iat > latest_start {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// Why claims that do not deserialize are refused: a missing (or `null`) `jti` is named, as an
/// empty one is, so that both read the same to the client; anything else is
/// [`TokenError::InvalidClaims`]. Only on the way to a refusal: accepted tokens are read once.
fn unreadable_claims(payload: &[u8]) -> TokenError {
    #[derive(Deserialize)]
    struct TokenId {
        #[serde(default)]
        jti: Option<IgnoredAny>,
    }
    match serde_json::from_slice::<TokenId>(payload) {
        Ok(TokenId { jti: None }) => TokenError::MissingTokenId,
        _ => TokenError::InvalidClaims,
    }
}

/// RFC 9068 §4: `typ` is `at+jwt` or `application/at+jwt`, compared case-insensitively as media
/// types are.
fn is_at_jwt(typ: &str) -> bool {
    // Compared as bytes: slicing the str at 12 could split a multi-byte character.
    let typ = typ.as_bytes();
    let typ = match typ.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"application/") => rest,
        _ => typ,
    };
    typ.eq_ignore_ascii_case(b"at+jwt")
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Present,
}

/// Whether a header member was there at all, whatever its value (`"crit": null` included).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_jwt_type_matching() {
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(is_at_jwt(ok), "{ok}");
        }
        for bad in [
            "JWT",
            "at+jwt ",
            "application/jwt",
            "application/",
            "xapplication/at+jwt",
        ] {
            assert!(!is_at_jwt(bad), "{bad}");
        }
    }

    #[test]
    fn builder_requires_the_essentials() {
        let index = Arc::new(RevocationIndex::new());
        let keys = KeySet::new();
        assert!(Verifier::builder().build().is_err());
        assert!(
            Verifier::builder()
                .issuer("i")
                .keys(keys.clone())
                .revocation_index(index.clone())
                .build()
                .is_err(),
            "no audience"
        );
        assert!(
            Verifier::builder()
                .issuer("i")
                .audience("a")
                .revocation_index(index.clone())
                .build()
                .is_err(),
            "no keys"
        );
        assert!(
            Verifier::builder()
                .issuer("i")
                .audience("a")
                .keys(keys)
                .revocation_index(index)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn several_issuers_are_checked_one_by_one() {
        let index = Arc::new(RevocationIndex::new());
        let keys = KeySet::new();
        let issuer = |iss: &str| Issuer::new(iss).audience("a").keys(keys.clone());
        let build = |builder: VerifierBuilder| {
            builder
                .revocation_index(index.clone())
                .build()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let refused = |builder: VerifierBuilder, reason: &str| {
            let error = build(builder).expect_err(reason);
            assert!(error.contains(reason), "{error}");
        };
        assert_eq!(
            build(
                Verifier::builder()
                    .add_issuer(issuer("https://a"))
                    .add_issuer(issuer("https://b"))
            ),
            Ok(())
        );
        assert_eq!(
            build(
                Verifier::builder()
                    .issuer("https://a")
                    .audience("a")
                    .keys(keys.clone())
                    .add_issuer(issuer("https://b"))
            ),
            Ok(()),
            "the builder's own issuer beside an added one"
        );
        refused(
            Verifier::builder()
                .add_issuer(issuer("https://a"))
                .add_issuer(issuer("https://a")),
            "issuer \"https://a\" is configured twice",
        );
        refused(
            Verifier::builder()
                .issuer("https://a")
                .audience("a")
                .keys(keys.clone())
                .add_issuer(issuer("https://a")),
            "issuer \"https://a\" is configured twice",
        );
        refused(
            Verifier::builder()
                .add_issuer(issuer("https://a"))
                .add_issuer(Issuer::new("https://b").audience("a")),
            "issuer \"https://b\": a key source (keys or remote_jwks) is required",
        );
        refused(
            Verifier::builder().add_issuer(Issuer::new("https://b").keys(keys.clone())),
            "issuer \"https://b\": at least one audience is required",
        );
        refused(
            Verifier::builder().add_issuer(issuer("https://b").algorithms([])),
            "issuer \"https://b\": at least one algorithm must be allowed",
        );
        refused(
            Verifier::builder().add_issuer(issuer("")),
            "an issuer must not be empty",
        );
        refused(
            Verifier::builder()
                .require_at_jwt(false)
                .add_issuer(issuer("https://a")),
            "without issuer()",
        );
        refused(
            Verifier::builder().revocation_index(index.clone()),
            "an issuer is required",
        );
    }
}
