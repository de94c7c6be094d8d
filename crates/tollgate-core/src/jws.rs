//! Compact JWS serialization of signed tokens (RFC 7515 §7.1).

use crate::{KeyError, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

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
