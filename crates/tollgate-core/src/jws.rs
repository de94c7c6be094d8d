//! Compact JWS serialization of signed tokens (RFC 7515 §7.1): signing, and taking apart and
//! verifying the signed tokens other parties send (logout tokens, security event tokens).

use crate::{KeyError, KeySet, SigningAlgorithm, SigningKey, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `typ` of RFC 9068 access tokens.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Whether `token` has the shape of a compact JWS (three dot-separated parts): a cheap test that
/// tells a JWT from an opaque token (a refresh token) before anything is decoded. It says nothing
/// about validity.
pub fn is_compact(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// Signs `claims` with `key` into a compact JWS whose header carries `alg`, `typ` and `kid`.
///
/// ```
/// use tollgate_core::{jws, SigningAlgorithm, SigningKey};
///
/// let key = SigningKey::generate(SigningAlgorithm::EdDSA, "k1")?;
/// let token = jws::encode(&key, jws::ACCESS_TOKEN_TYP, &serde_json::json!({"sub": "alice"}))?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok::<(), tollgate_core::KeyError>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(
    key: &SigningKey,
    typ: &str,
    claims: &T,
) -> Result<String, KeyError> {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: &'a str,
        typ: &'a str,
        kid: &'a str,
    }
    let header = serde_json::to_vec(&Header {
        alg: key.algorithm().as_str(),
        typ,
        kid: key.kid(),
    })
    .map_err(|e| KeyError::new(Some(key.kid()), format!("cannot encode header: {e}")))?;
    let payload = serde_json::to_vec(claims)
        .map_err(|e| KeyError::new(Some(key.kid()), format!("cannot encode claims: {e}")))?;
    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// Why a compact JWS was not accepted by [`Compact::parse`] or [`Compact::verify`].
///
/// Non-exhaustive: more reasons may be told apart later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwsError {
    /// Not three base64url parts, a header that is not a JSON object with a string `alg`, or
    /// longer than allowed.
    Malformed,
    /// `alg` is not one tollgate implements (`none` included) or not one the caller allows.
    AlgorithmNotAllowed,
    /// The header has `crit`: it asks for extensions no one here implements (RFC 7515 §4.1.11).
    CriticalHeader,
    /// No key has the header's `kid` (or it has none and the set holds several keys).
    UnknownKey,
    /// The key named by `kid` is for another algorithm than the header's `alg`.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
}

impl fmt::Display for JwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwsError::Malformed => "malformed compact JWS",
            JwsError::AlgorithmNotAllowed => "signing algorithm not allowed",
            JwsError::CriticalHeader => "unsupported critical header",
            JwsError::UnknownKey => "unknown signing key",
            JwsError::AlgorithmMismatch => "signing algorithm does not match the key",
            JwsError::BadSignature => "invalid signature",
        })
    }
}

impl std::error::Error for JwsError {}

/// The protected header members this crate reads; every other member is ignored, and `jku`,
/// `x5u` and `jwk` in particular never choose a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`, parsed: `none` and unknown names are refused when parsing.
    pub alg: SigningAlgorithm,
    /// `kid`.
    pub kid: Option<String>,
    /// `typ`, as sent.
    pub typ: Option<String>,
}

/// A compact JWS taken apart but **not verified**: its payload may be read to learn who claims to
/// have signed it (to pick that issuer's keys), and must be trusted only after
/// [`verify`](Self::verify).
///
/// ```
/// use tollgate_core::{jws, KeySet, SigningAlgorithm};
///
/// let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1")?;
/// let key = keys.signing_key().expect("generated with one");
/// let token = jws::encode(&key, "logout+jwt", &serde_json::json!({"iss": "https://id"}))?;
/// let compact = jws::Compact::parse(&token, 8192).expect("a compact JWS");
/// assert_eq!(compact.header().typ.as_deref(), Some("logout+jwt"));
/// compact.verify(&keys, &[SigningAlgorithm::EdDSA]).expect("signed by k1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Compact<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> Compact<'a> {
    /// Takes `token` apart: three base64url parts, a header with a known `alg` and no `crit`.
    /// Tokens over `max_len` bytes are refused before anything is decoded.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, JwsError> {
        if token.len() > max_len {
            return Err(JwsError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwsError::Malformed)
        };
        #[derive(Deserialize)]
        struct RawHeader {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
            #[serde(default)]
            typ: Option<String>,
            #[serde(default)]
            crit: Present,
        }
        let header = decode(header_b64)?;
        if !is_object(&header) {
            return Err(JwsError::Malformed);
        }
        let raw: RawHeader = serde_json::from_slice(&header).map_err(|_| JwsError::Malformed)?;
        // `"crit": null` asks for nothing, but no honest signer sends it: refused all the same.
        if raw.crit.0 {
            return Err(JwsError::CriticalHeader);
        }
        let alg = raw.alg.parse().map_err(|_| JwsError::AlgorithmNotAllowed)?;
        Ok(Compact {
            header: Header {
                alg,
                kid: raw.kid,
                typ: raw.typ,
            },
            signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
            payload: decode(payload_b64)?,
            signature: decode(signature_b64)?,
        })
    }

    /// The protected header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload, decoded but **unverified** until [`verify`](Self::verify) has passed.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks the signature with the key of `keys` that the header's `kid` names; `alg` must be
    /// one of `allowed` and the key's own.
    pub fn verify(&self, keys: &KeySet, allowed: &[SigningAlgorithm]) -> Result<(), JwsError> {
        if !allowed.contains(&self.header.alg) {
            return Err(JwsError::AlgorithmNotAllowed);
        }
        keys.verify(
            self.header.kid.as_deref(),
            self.header.alg,
            self.signing_input.as_bytes(),
            &self.signature,
        )
        .map_err(|e| match e {
            VerifyError::UnknownKey => JwsError::UnknownKey,
            VerifyError::AlgorithmMismatch => JwsError::AlgorithmMismatch,
            // `BadSignature`, and any reason `KeySet::verify` learns later: not verified.
            _ => JwsError::BadSignature,
        })
    }
}

/// Whether `json` starts a JSON object. A derived `Deserialize` also takes a struct from a JSON
/// array (`["EdDSA"]` as `{"alg": "EdDSA"}`); a JOSE header must be an object (RFC 7515 §4), so
/// parsers of headers check this first.
pub fn is_object(json: &[u8]) -> bool {
    json.trim_ascii_start().first() == Some(&b'{')
}

/// Whether a JSON member was there at all, whatever its value (`null` included): for members
/// whose mere presence is the refusal (`crit` in a header, `nonce` in a logout token). Use it
/// with `#[serde(default)]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// Whether a `typ` header names the media type `expected` (`logout+jwt`, `secevent+jwt`): with or
/// without the `application/` prefix, compared case-insensitively, as RFC 7515 §4.1.9 says.
pub fn typ_is(typ: &str, expected: &str) -> bool {
    let typ = typ.as_bytes();
    let typ = match typ.split_at_checked(12) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"application/") => rest,
        _ => typ,
    };
    typ.eq_ignore_ascii_case(expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(typ: &str) -> (KeySet, String) {
        let keys = KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap();
        let key = keys.signing_key().unwrap();
        let token = encode(&key, typ, &serde_json::json!({"iss": "i"})).unwrap();
        (keys, token)
    }

    #[test]
    fn a_signed_token_verifies_and_a_changed_one_does_not() {
        let (keys, token) = signed("logout+jwt");
        let compact = Compact::parse(&token, 8192).unwrap();
        assert_eq!(compact.verify(&keys, &[SigningAlgorithm::EdDSA]), Ok(()));
        assert_eq!(
            compact.verify(&keys, &[SigningAlgorithm::ES256]),
            Err(JwsError::AlgorithmNotAllowed)
        );
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other_payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"j"}"#);
        let forged = format!("{header}.{other_payload}.{signature}");
        let compact = Compact::parse(&forged, 8192).unwrap();
        assert_eq!(
            compact.verify(&keys, &[SigningAlgorithm::EdDSA]),
            Err(JwsError::BadSignature)
        );
        let (other_keys, _) = signed("logout+jwt");
        let compact = Compact::parse(&token, 8192).unwrap();
        assert_eq!(
            compact.verify(&other_keys, &[SigningAlgorithm::EdDSA]),
            Err(JwsError::BadSignature),
            "another key with the same kid"
        );
    }

    #[test]
    fn what_is_not_a_signed_token_is_refused_before_any_key_is_used() {
        let header = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let body = URL_SAFE_NO_PAD.encode("{}");
        for (token, want) in [
            ("a.b".to_owned(), JwsError::Malformed),
            ("a.b.c.d".to_owned(), JwsError::Malformed),
            (
                format!("{}.{body}.", header(r#"{"alg":"none"}"#)),
                JwsError::AlgorithmNotAllowed,
            ),
            (
                format!("{}.{body}.", header(r#"{"alg":"EdDSA","crit":["x"]}"#)),
                JwsError::CriticalHeader,
            ),
            (
                format!("{}.{body}.", header(r#"{"alg":"EdDSA","crit":null}"#)),
                JwsError::CriticalHeader,
            ),
            (
                format!("{}.{body}.", header(r#"["EdDSA"]"#)),
                JwsError::Malformed,
            ),
            (
                format!("{}.{body}.!!", header(r#"{"alg":"EdDSA"}"#)),
                JwsError::Malformed,
            ),
        ] {
            assert_eq!(Compact::parse(&token, 8192).err(), Some(want), "{token}");
        }
        let (_, token) = signed("logout+jwt");
        assert_eq!(
            Compact::parse(&token, token.len() - 1).err(),
            Some(JwsError::Malformed)
        );
    }

    #[test]
    fn typ_names_a_media_type() {
        for ok in ["logout+jwt", "LOGOUT+JWT", "application/logout+jwt"] {
            assert!(typ_is(ok, "logout+jwt"), "{ok}");
        }
        for bad in [
            "JWT",
            "logout+jwt ",
            "application/jwt",
            "xapplication/logout+jwt",
        ] {
            assert!(!typ_is(bad, "logout+jwt"), "{bad}");
        }
    }
}
