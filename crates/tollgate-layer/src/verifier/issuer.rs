//! The issuers a [`Verifier`](super::Verifier) trusts, each with its own keys, audiences and
//! algorithms; and the choice of one by a token's `iss`, before its signature is checked.

use super::{BuildError, TokenError, decode_payload};
use crate::remote_jwks::RemoteJwks;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use tollgate_core::{Audience, Claims, KeySet, SigningAlgorithm};

/// One issuer whose tokens a [`Verifier`](super::Verifier) accepts: its `iss`, the audiences its
/// tokens must name, the algorithms it may sign with and where its keys come from. Given to
/// [`VerifierBuilder::add_issuer`](super::VerifierBuilder::add_issuer), for a verifier that
/// accepts tokens of several issuers.
///
/// A token is judged by the issuer its `iss` names, exactly, with that issuer's keys only: a key
/// of one issuer never verifies a token that claims another, even when both publish the same
/// `kid`.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm};
/// use tollgate_layer::{Issuer, Verifier};
///
/// // In practice the partner's keys come from its JWKS: `.remote_jwks(RemoteJwks::...)`.
/// let ours = KeySet::generate(SigningAlgorithm::EdDSA, "k1")?;
/// let partner = KeySet::generate(SigningAlgorithm::ES256, "k1")?;
/// let verifier = Verifier::builder()
///     .add_issuer(Issuer::new("https://id.example.com").audience("orders-api").keys(ours))
///     .add_issuer(
///         Issuer::new("https://login.partner.example")
///             .audience("orders-api")
///             .algorithms([SigningAlgorithm::ES256])
///             .keys(partner),
///     )
///     .revocation_index(Arc::new(RevocationIndex::new()))
///     .build()?;
///
/// let (keys, remote) = verifier.issuer_keys("https://login.partner.example").unwrap();
/// assert_eq!(keys.kids(), ["k1"]);
/// assert!(remote.is_none());
/// assert!(verifier.issuer_keys("https://elsewhere.example").is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    any_audience: bool,
    algorithms: Vec<SigningAlgorithm>,
    require_at_jwt: bool,
    keys: Option<KeySet>,
    remote: Option<RemoteJwks>,
}

impl Issuer {
    /// An issuer whose tokens carry exactly this `iss`. At least one
    /// [`audience`](Self::audience) (or [`any_audience`](Self::any_audience)) and a key source
    /// ([`keys`](Self::keys) or [`remote_jwks`](Self::remote_jwks)) are required.
    pub fn new(issuer: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            audiences: Vec::new(),
            any_audience: false,
            algorithms: SigningAlgorithm::ALL.to_vec(),
            require_at_jwt: true,
            keys: None,
            remote: None,
        }
    }

    /// Adds an accepted audience: this issuer's token is accepted if its `aud` names any of them.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts any `aud` from this issuer. Only for a validator that is the sole resource server
    /// of the issuer.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Restricts the algorithms this issuer's tokens may use (default: EdDSA, ES256, RS256,
    /// HS256; each key still verifies only its own). `none` can never be allowed.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Whether this issuer's tokens must carry `typ: at+jwt` (default: yes, RFC 9068 §4). Turn
    /// off only for an issuer that does not follow RFC 9068, knowing that its ID tokens then
    /// pass as access tokens.
    pub fn require_at_jwt(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// Verifies this issuer's tokens with a local key set.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self.remote = None;
        self
    }

    /// Verifies this issuer's tokens with keys fetched from its JWKS URL (or the one its
    /// discovery document names, [`RemoteJwks::discover`]); a token with an unknown `kid`
    /// triggers a (rate-limited) refetch of this issuer's JWKS only.
    pub fn remote_jwks(mut self, remote: RemoteJwks) -> Self {
        self.keys = Some(remote.keys().clone());
        self.remote = Some(remote);
        self
    }

    /// The same settings for the issuer `issuer` (the builder's own issuer, once it is named).
    pub(super) fn named(self, issuer: String) -> Self {
        Issuer { issuer, ..self }
    }

    /// The issuer as the verifier keeps it, or why it cannot be one.
    fn check(self) -> Result<TrustedIssuer, BuildError> {
        let named = |what: &str| BuildError::new(format!("issuer {:?}: {what}", self.issuer));
        if self.issuer.is_empty() {
            return Err(BuildError::new("an issuer must not be empty"));
        }
        if self.audiences.is_empty() && !self.any_audience {
            return Err(named(
                "at least one audience is required (or call any_audience())",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(named("at least one algorithm must be allowed"));
        }
        let Some(keys) = self.keys else {
            return Err(named("a key source (keys or remote_jwks) is required"));
        };
        Ok(TrustedIssuer {
            issuer: self.issuer,
            audiences: self.audiences,
            any_audience: self.any_audience,
            algorithms: self.algorithms,
            require_at_jwt: self.require_at_jwt,
            keys,
            remote: self.remote,
        })
    }
}

/// An [`Issuer`] the build accepted: it has keys.
#[derive(Debug)]
pub(super) struct TrustedIssuer {
    pub(super) issuer: String,
    audiences: Vec<String>,
    any_audience: bool,
    pub(super) algorithms: Vec<SigningAlgorithm>,
    pub(super) require_at_jwt: bool,
    pub(super) keys: KeySet,
    pub(super) remote: Option<RemoteJwks>,
}

impl TrustedIssuer {
    /// Whether a token of this issuer with this `aud` is meant for us.
    pub(super) fn accepts_audience(&self, aud: &Audience) -> bool {
        self.any_audience || self.audiences.iter().any(|a| aud.contains(a))
    }
}

/// Every issuer a verifier trusts: never none. The first is kept apart so that the common case,
/// one issuer, reads it without an index or a search.
pub(super) struct Issuers {
    first: TrustedIssuer,
    others: Box<[TrustedIssuer]>,
}

impl Issuers {
    /// Checks each issuer, and that no `iss` is configured twice (which of the two would judge
    /// its tokens?).
    pub(super) fn new(issuers: Vec<Issuer>) -> Result<Issuers, BuildError> {
        let mut trusted: Vec<TrustedIssuer> = Vec::with_capacity(issuers.len());
        for issuer in issuers {
            let issuer = issuer.check()?;
            if trusted.iter().any(|t| t.issuer == issuer.issuer) {
                return Err(BuildError::new(format!(
                    "issuer {:?} is configured twice",
                    issuer.issuer
                )));
            }
            trusted.push(issuer);
        }
        let mut trusted = trusted.into_iter();
        let first = trusted
            .next()
            .ok_or(BuildError::new("an issuer is required"))?;
        Ok(Issuers {
            first,
            others: trusted.collect(),
        })
    }

    /// The first issuer configured: the one of [`VerifierBuilder::issuer`] when it was called.
    ///
    /// [`VerifierBuilder::issuer`]: super::VerifierBuilder::issuer
    pub(super) fn first(&self) -> &TrustedIssuer {
        &self.first
    }

    /// The issuer whose `iss` is exactly `iss`.
    pub(super) fn get(&self, iss: &str) -> Option<&TrustedIssuer> {
        self.iter().find(|i| i.issuer == iss)
    }

    fn iter(&self) -> impl Iterator<Item = &TrustedIssuer> {
        std::iter::once(&self.first).chain(self.others.iter())
    }

    /// The issuer whose keys and rules judge a token with this payload (base64url, not yet
    /// verified), and what was read of the payload to tell.
    ///
    /// With one issuer there is nothing to choose: its `iss` is compared with the other claims
    /// once the signature has verified, which spares a parse on the path most verifiers take.
    /// With several, the claims are parsed first, once, and their `iss` chooses (a token naming
    /// none of them, or no issuer, is refused before any signature work); they are trusted only
    /// after the signature verifies. Claims that do not parse are reported after the signature,
    /// as with one issuer; their `iss` alone is read to choose the keys.
    pub(super) fn judging(&self, payload_b64: &str) -> Result<(&TrustedIssuer, Read), TokenError> {
        if self.others.is_empty() {
            return Ok((&self.first, Read::Later));
        }
        let payload = decode_payload(payload_b64)?;
        if let Ok(claims) = serde_json::from_slice::<Claims>(&payload) {
            let issuer = self.get(&claims.iss).ok_or(TokenError::WrongIssuer)?;
            return Ok((issuer, Read::Claims(Box::new(claims))));
        }
        let issuer = match unverified_issuer(&payload)? {
            Some(iss) => self.get(&iss).ok_or(TokenError::WrongIssuer)?,
            None => return Err(TokenError::WrongIssuer),
        };
        Ok((issuer, Read::Payload(payload)))
    }

    /// A number that changes whenever any issuer's keys lose or replace a key: each key set's
    /// epoch only grows, so their sum moves whenever one of them does.
    pub(super) fn key_epoch(&self) -> u64 {
        self.iter()
            .fold(0, |sum, issuer| sum.wrapping_add(issuer.keys.epoch()))
    }
}

impl fmt::Debug for Issuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What [`Issuers::judging`] read of a payload before its signature was checked.
pub(super) enum Read {
    /// Nothing: one issuer, the payload is decoded once the signature verifies.
    Later,
    /// The claims, parsed (to be trusted once the signature verifies).
    Claims(Box<Claims>),
    /// The decoded payload, whose claims do not parse (reported after the signature).
    Payload(Vec<u8>),
}

/// The `iss` of a payload whose signature is not checked yet. Only that member is kept (borrowed
/// unless it has escapes); every other member is skipped without being kept, so a hostile
/// payload costs one pass over at most the token's length. A payload that is not a JSON object,
/// or whose `iss` is named twice or is not a string, is [`TokenError::InvalidClaims`], as the
/// full claims parse would find it.
fn unverified_issuer(payload: &[u8]) -> Result<Option<Cow<'_, str>>, TokenError> {
    serde_json::from_slice::<IssuerOnly<'_>>(payload)
        .map(|only| only.0)
        .map_err(|_| TokenError::InvalidClaims)
}

/// A claims object read for its `iss` alone.
struct IssuerOnly<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for IssuerOnly<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ClaimsObject;
        impl<'de> Visitor<'de> for ClaimsObject {
            type Value = IssuerOnly<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut iss = None;
                while let Some(name) = map.next_key::<ClaimName>()? {
                    match name {
                        ClaimName::Iss if iss.is_some() => {
                            return Err(de::Error::duplicate_field("iss"));
                        }
                        ClaimName::Iss => iss = Some(map.next_value::<IssuerValue<'de>>()?.0),
                        ClaimName::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(IssuerOnly(iss))
            }
        }
        d.deserialize_map(ClaimsObject)
    }
}

/// A claim's name: `iss` or another, never kept.
enum ClaimName {
    Iss,
    Other,
}

impl<'de> Deserialize<'de> for ClaimName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = ClaimName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimName, E> {
                Ok(if v == "iss" {
                    ClaimName::Iss
                } else {
                    ClaimName::Other
                })
            }
        }
        d.deserialize_identifier(Name)
    }
}

/// `iss`'s value: a string, borrowed from the payload unless it has escapes (serde's own `Cow`
/// always copies).
struct IssuerValue<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for IssuerValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = IssuerValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(IssuerValue(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IssuerValue(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_read_alone_and_exactly() {
        let read = |json: &str| unverified_issuer(json.as_bytes()).map(|i| i.map(Cow::into_owned));
        assert_eq!(
            read(r#"{"sub":"a","iss":"https://a","aud":["x",{"deep":[1]}]}"#),
            Ok(Some("https://a".to_owned()))
        );
        assert_eq!(
            read(r#"{"iss":"https:\/\/a"}"#),
            Ok(Some("https://a".to_owned()))
        );
        assert_eq!(read(r#"{"sub":"a"}"#), Ok(None));
        for bad in [
            r#"{"iss":"a","iss":"b"}"#,
            r#"{"iss":7}"#,
            r#"{"iss":null}"#,
            r#"["https://a"]"#,
            r#"{"iss":"a"} trailing"#,
            "not json",
        ] {
            assert_eq!(read(bad), Err(TokenError::InvalidClaims), "{bad}");
        }
    }
}
