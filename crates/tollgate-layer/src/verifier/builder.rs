//! [`VerifierBuilder`]: one issuer configured on the builder itself, more added as [`Issuer`]s,
//! and what every issuer shares (leeway, length limit, index, clock, cache).

use super::issuer::{Issuer, Issuers};
use super::{DEFAULT_MAX_TOKEN_LEN, Inner, Verifier};
use crate::cache::VerifiedTokenCache;
use crate::remote_jwks::RemoteJwks;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{Clock, KeySet, RevocationIndex, SigningAlgorithm, SystemClock};

/// Why a [`VerifierBuilder`] could not build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(Cow<'static, str>);

impl BuildError {
    pub(super) fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        BuildError(reason.into())
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build verifier: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

/// Builds a [`Verifier`]. At least one issuer, each with at least one audience (or
/// `any_audience`) and a key source, and the revocation index are required.
///
/// One issuer is configured on the builder itself: [`issuer`](Self::issuer),
/// [`audience`](Self::audience), [`any_audience`](Self::any_audience),
/// [`algorithms`](Self::algorithms), [`require_at_jwt`](Self::require_at_jwt),
/// [`keys`](Self::keys) and [`remote_jwks`](Self::remote_jwks) all describe that one. Further
/// issuers, each with its own settings, are added with [`add_issuer`](Self::add_issuer) (see
/// [`Issuer`] for an example); the issuer settings of the builder never apply to them. The
/// leeway, the length limit, the index, the clock and the verified-token cache are shared by
/// every issuer.
#[derive(Debug)]
#[must_use]
pub struct VerifierBuilder {
    /// The issuer the builder's own methods configure, and its `iss` once `issuer()` is called.
    first: Issuer,
    first_issuer: Option<String>,
    /// Whether a method of `first` other than `issuer()` was called: without `issuer()`, that
    /// setting would silently apply to nothing when the issuers are added.
    first_configured: bool,
    added: Vec<Issuer>,
    leeway: Duration,
    max_token_len: usize,
    index: Option<Arc<RevocationIndex>>,
    clock: Arc<dyn Clock>,
    cache_capacity: Option<usize>,
}

impl Verifier {
    /// Starts a builder.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            first: Issuer::new(""),
            first_issuer: None,
            first_configured: false,
            added: Vec::new(),
            leeway: Duration::from_secs(30),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            index: None,
            clock: Arc::new(SystemClock),
            cache_capacity: None,
        }
    }
}

impl VerifierBuilder {
    /// Applies `set` to the issuer the builder's own methods configure.
    fn configure_first(mut self, set: impl FnOnce(Issuer) -> Issuer) -> Self {
        self.first = set(self.first);
        self.first_configured = true;
        self
    }

    /// The expected `iss` (exact match) of the issuer configured on the builder. Required unless
    /// issuers are added with [`add_issuer`](Self::add_issuer).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.first_issuer = Some(issuer.into());
        self
    }

    /// Adds an accepted audience: a token is accepted if its `aud` names any of them.
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.configure_first(|i| i.audience(audience))
    }

    /// Accepts any `aud`. Only for a validator that is the sole resource server of its issuer.
    pub fn any_audience(self) -> Self {
        self.configure_first(Issuer::any_audience)
    }

    /// Restricts the accepted algorithms (default: EdDSA, ES256, RS256, HS256 — each key still
    /// verifies only its own). `none` can never be allowed.
    pub fn algorithms(self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.configure_first(|i| i.algorithms(algorithms))
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, whole seconds), for every
    /// issuer.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether `typ: at+jwt` is required (default: yes, RFC 9068 §4). Turn off only for issuers
    /// that do not follow RFC 9068, knowing that ID tokens then pass as access tokens.
    pub fn require_at_jwt(self, required: bool) -> Self {
        self.configure_first(|i| i.require_at_jwt(required))
    }

    /// Longest accepted token in bytes (default 8 KiB), for every issuer.
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Verifies with a local key set, e.g. the one an in-process issuer signs with.
    pub fn keys(self, keys: KeySet) -> Self {
        self.configure_first(|i| i.keys(keys))
    }

    /// Verifies with keys fetched from an issuer's JWKS URL; an unknown `kid` triggers a
    /// (rate-limited) refetch that the request waits for.
    pub fn remote_jwks(self, remote: RemoteJwks) -> Self {
        self.configure_first(|i| i.remote_jwks(remote))
    }

    /// Accepts the tokens of one more issuer, judged by its own keys, audiences and algorithms
    /// (see [`Issuer`]). A token is judged by the issuer its `iss` names exactly; one naming no
    /// configured issuer is refused ([`TokenError::WrongIssuer`](super::TokenError::WrongIssuer))
    /// before its signature is checked. Two issuers with the same `iss` fail the build.
    pub fn add_issuer(mut self, issuer: Issuer) -> Self {
        self.added.push(issuer);
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
    /// replacing a key of any issuer empties the cache. The cache compares whole tokens, never
    /// only a hash.
    ///
    /// `capacity` counts tokens. Each entry holds the token and its claims: about twice the
    /// token's length, at most ~2 × [`max_token_len`](Self::max_token_len). Only tokens that passed
    /// every check are cached, so clients cannot fill it with garbage.
    pub fn cache_verified_tokens(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// Builds the verifier.
    ///
    /// Fails without an issuer, with an issuer that has no audience (and not `any_audience`), no
    /// allowed algorithm or no key source, with an empty or twice-configured `iss`, with issuer
    /// settings on the builder but no [`issuer`](Self::issuer) beside added issuers, and without
    /// a revocation index.
    pub fn build(self) -> Result<Verifier, BuildError> {
        let issuers = issuers(
            self.first_issuer,
            self.first,
            self.first_configured,
            self.added,
        )?;
        let index = self
            .index
            .ok_or(BuildError::new("a revocation index is required"))?;
        // This verifier accepts tokens until `exp + leeway`: their revocations must outlive that.
        index.retain_expired_for(self.leeway);
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                leeway_secs: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
                max_token_len: self.max_token_len,
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

/// The builder's own issuer (if named) first, then the added ones.
fn issuers(
    first_issuer: Option<String>,
    first: Issuer,
    first_configured: bool,
    added: Vec<Issuer>,
) -> Result<Issuers, BuildError> {
    let mut issuers = Vec::with_capacity(1 + added.len());
    match first_issuer {
        Some(iss) => issuers.push(first.named(iss)),
        None if first_configured && !added.is_empty() => {
            return Err(BuildError::new(
                "audience, algorithms, require_at_jwt, keys or remote_jwks were set on the \
                 builder without issuer(): they configure that issuer only (give them to each \
                 added Issuer instead)",
            ));
        }
        None => {}
    }
    issuers.extend(added);
    Issuers::new(issuers)
}
