//! Token verification: signature, header, registered claims, then the revocation index.

use crate::cache::VerifiedTokenCache;
use crate::claims::VerifiedClaims;
use crate::remote_jwks::RemoteJwks;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::futures::OwnedNotified;
use tollgate_core::{
    Claims, Clock, KeySet, RevocationIndex, Revoked, SigningAlgorithm, SystemClock, TenantPath,
    VerifyError,
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
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// The revocation index rejects the token.
    Revoked(Revoked),
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
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for TokenError {}

/// Why a [`VerifierBuilder`] could not build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(&'static str);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build verifier: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

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
/// In order: length; compact-JWS shape; header JSON (`alg` allowed, no `crit`, `typ`); the key
/// named by `kid`, which must be of the header's `alg`; the signature; the claims (required RFC
/// 9068 claims present, a `jti` that is not empty, `iss`, `aud`, `exp`, `nbf`, `iat` with
/// leeway); the revocation index.
/// `jku`, `x5u` and `jwk` headers are ignored: keys come only from the configured source.
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audiences: Vec<String>,
    any_audience: bool,
    algorithms: Vec<SigningAlgorithm>,
    leeway_secs: i64,
    require_at_jwt: bool,
    max_token_len: usize,
    keys: KeySet,
    remote: Option<RemoteJwks>,
    index: Arc<RevocationIndex>,
    clock: Arc<dyn Clock>,
    cache: Option<VerifiedTokenCache>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Verifier")
            .field("issuer", &i.issuer)
            .field("audiences", &i.audiences)
            .field("algorithms", &i.algorithms)
            .field("leeway_secs", &i.leeway_secs)
            .field("require_at_jwt", &i.require_at_jwt)
            .field("keys", &i.keys)
            .field("cache", &i.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`]. `issuer`, at least one `audience` (or [`any_audience`]), a key source
/// and the revocation index are required.
///
/// [`any_audience`]: VerifierBuilder::any_audience
#[derive(Debug)]
#[must_use]
pub struct VerifierBuilder {
    issuer: Option<String>,
    audiences: Vec<String>,
    any_audience: bool,
    algorithms: Vec<SigningAlgorithm>,
    leeway: Duration,
    require_at_jwt: bool,
    max_token_len: usize,
    keys: Option<KeySet>,
    remote: Option<RemoteJwks>,
    index: Option<Arc<RevocationIndex>>,
    clock: Arc<dyn Clock>,
    cache_capacity: Option<usize>,
}

impl Verifier {
    /// Starts a builder.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            issuer: None,
            audiences: Vec::new(),
            any_audience: false,
            algorithms: SigningAlgorithm::ALL.to_vec(),
            leeway: Duration::from_secs(30),
            require_at_jwt: true,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            keys: None,
            remote: None,
            index: None,
            clock: Arc::new(SystemClock),
            cache_capacity: None,
        }
    }

    /// The revocation index this verifier consults.
    pub fn index(&self) -> &Arc<RevocationIndex> {
        &self.inner.index
    }

    /// The keys this verifier uses.
    pub fn keys(&self) -> &KeySet {
        &self.inner.keys
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
        let epoch = i.keys.epoch();
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
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if header_b64.len() > MAX_HEADER_LEN || signature_b64.len() > MAX_SIGNATURE_LEN {
            return Err(TokenError::Malformed);
        }
        let mut header_buf = [0u8; MAX_HEADER_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut header_buf)
            .map_err(|_| TokenError::Malformed)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_buf[..n]).map_err(|_| TokenError::Malformed)?;
        let alg: SigningAlgorithm = header
            .alg
            .parse()
            .map_err(|_| TokenError::AlgorithmNotAllowed)?;
        if !i.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if header.crit.0 {
            return Err(TokenError::CriticalHeader);
        }
        if i.require_at_jwt && !header.typ.as_deref().is_some_and(is_at_jwt) {
            return Err(TokenError::WrongType);
        }
        let mut signature_buf = [0u8; MAX_SIGNATURE_BYTES];
        let n = URL_SAFE_NO_PAD
            .decode_slice(signature_b64, &mut signature_buf)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        i.keys
            .verify(header.kid.as_deref(), alg, signed, &signature_buf[..n])
            .map_err(|e| match e {
                VerifyError::UnknownKey if header.kid.is_none() => TokenError::MissingKeyId,
                VerifyError::UnknownKey => TokenError::UnknownKey,
                VerifyError::AlgorithmMismatch => TokenError::AlgorithmMismatch,
                VerifyError::BadSignature => TokenError::BadSignature,
                // A reason `KeySet::verify` learns later still means "not verified".
                _ => TokenError::BadSignature,
            })?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims =
            serde_json::from_slice(&payload).map_err(|_| unreadable_claims(&payload))?;
        self.validate_claims(&claims, now)?;
        i.index
            .check(&claims.identity())
            .map_err(TokenError::Revoked)?;
        Ok(claims)
    }

    fn validate_claims(&self, claims: &Claims, now: i64) -> Result<(), TokenError> {
        let i = &*self.inner;
        // A token without an id would be accepted until it expires whatever is revoked by id
        // (RFC 7009 at its issuer, `tollgate revoke --jti`): refused like one without `jti`.
        if claims.jti.is_empty() {
            return Err(TokenError::MissingTokenId);
        }
        if claims.iss != i.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !i.any_audience && !i.audiences.iter().any(|a| claims.aud.contains(a)) {
            return Err(TokenError::WrongAudience);
        }
        if now >= claims.exp.saturating_add(i.leeway_secs) {
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
        let latest_start = now.saturating_add(i.leeway_secs);
        if claims.nbf.is_some_and(|nbf| nbf > latest_start) || claims.iat > latest_start {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// Asks the remote JWKS (if that is the key source) to refetch because a token named an
    /// unknown `kid`. `None` when there is nothing to wait for.
    pub(crate) fn refetch_keys(&self) -> Option<OwnedNotified> {
        self.inner.remote.as_ref()?.refetch()
    }
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

impl VerifierBuilder {
    /// The expected `iss` (exact match). Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Adds an accepted audience: a token is accepted if its `aud` names any of them.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts any `aud`. Only for a validator that is the sole resource server of its issuer.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Restricts the accepted algorithms (default: EdDSA, ES256, RS256, HS256 — each key still
    /// verifies only its own). `none` can never be allowed.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, whole seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether `typ: at+jwt` is required (default: yes, RFC 9068 §4). Turn off only for issuers
    /// that do not follow RFC 9068, knowing that ID tokens then pass as access tokens.
    pub fn require_at_jwt(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// Longest accepted token in bytes (default 8 KiB).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Verifies with a local key set, e.g. the one an in-process issuer signs with.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self.remote = None;
        self
    }

    /// Verifies with keys fetched from an issuer's JWKS URL; an unknown `kid` triggers a
    /// (rate-limited) refetch that the request waits for.
    pub fn remote_jwks(mut self, remote: RemoteJwks) -> Self {
        self.keys = Some(remote.keys().clone());
        self.remote = Some(remote);
        self
    }

    /// The revocation index shared with the issuer or the replication feed. Required.
    pub fn revocation_index(mut self, index: Arc<RevocationIndex>) -> Self {
        self.index = Some(index);
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Remembers up to `capacity` verified tokens so that a repeated token skips signature
    /// verification until it expires. Revocation is still checked on every request; removing or
    /// replacing a key empties the cache. The cache compares whole tokens, never only a hash.
    ///
    /// `capacity` counts tokens. Each entry holds the token and its claims: about twice the
    /// token's length, at most ~2 × [`max_token_len`](Self::max_token_len). Only tokens that passed
    /// every check are cached, so clients cannot fill it with garbage.
    pub fn cache_verified_tokens(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> Result<Verifier, BuildError> {
        let issuer = self.issuer.ok_or(BuildError("an issuer is required"))?;
        if self.audiences.is_empty() && !self.any_audience {
            return Err(BuildError(
                "at least one audience is required (or call any_audience())",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(BuildError("at least one algorithm must be allowed"));
        }
        let keys = self
            .keys
            .ok_or(BuildError("a key source (keys or remote_jwks) is required"))?;
        let index = self
            .index
            .ok_or(BuildError("a revocation index is required"))?;
        // This verifier accepts tokens until `exp + leeway`: their revocations must outlive that.
        index.retain_expired_for(self.leeway);
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer,
                audiences: self.audiences,
                any_audience: self.any_audience,
                algorithms: self.algorithms,
                leeway_secs: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
                require_at_jwt: self.require_at_jwt,
                max_token_len: self.max_token_len,
                keys,
                remote: self.remote,
                index,
                clock: self.clock,
                cache: self
                    .cache_capacity
                    .filter(|c| *c > 0)
                    .map(VerifiedTokenCache::new),
            }),
        })
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
}
