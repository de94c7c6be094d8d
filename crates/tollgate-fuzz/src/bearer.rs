//! Target `bearer`: `Authorization` header bytes through the Layer, tokens through the verifier.

use crate::fixture;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode};
use std::convert::Infallible;
use tollgate_layer::{TokenError, ValidateBearerLayer, VerifiedClaims};
use tower::{Layer, ServiceExt, service_fn};

/// The input, split on `\n`, is up to three `Authorization` header values (none for an empty
/// input) sent through a [`ValidateBearer`](tollgate_layer::ValidateBearer) service; each value,
/// with or without its `Bearer ` prefix, also goes through [`Verifier::verify`] directly.
///
/// Panics if the Layer answers anything but 200, 400 or 401; if it lets a request through without
/// claims or a token the verifier refuses; if a verified token is not the canonical encoding of
/// what was signed, fails a claim check, or is revoked; or if the cached and the uncached verifier
/// disagree.
///
/// [`Verifier::verify`]: tollgate_layer::Verifier::verify
pub fn bearer(data: &[u8]) {
    let index = fixture::index();
    let plain = fixture::verifier(index.clone(), false);
    let cached = fixture::verifier(index, true);

    let values: Vec<&[u8]> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == b'\n').take(3).collect()
    };
    for value in &values {
        if let Ok(text) = std::str::from_utf8(value) {
            let token = strip_scheme(text);
            let verdict = check_verify(&plain, token);
            // Twice through the cache: the second call may be answered from it.
            for _ in 0..2 {
                let again = check_verify(&cached, token);
                assert_eq!(
                    verdict.is_ok(),
                    again.is_ok(),
                    "cached and uncached verifiers disagree on {token:?}: {verdict:?} vs {again:?}"
                );
            }
        }
    }

    let mut request = Request::new(());
    for value in &values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request
                .headers_mut()
                .append(http::header::AUTHORIZATION, value);
        }
    }
    let sent: Vec<Vec<u8>> = request
        .headers()
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let inner = service_fn(|request: Request<()>| async move {
        let mut response = Response::new(());
        if let Some(claims) = request.extensions().get::<VerifiedClaims>() {
            response.extensions_mut().insert(claims.clone());
        }
        Ok::<_, Infallible>(response)
    });
    let service = ValidateBearerLayer::new(plain.clone()).layer(inner);
    let Ok(response) = fixture::runtime().block_on(service.oneshot(request));
    let status = response.status();
    if status == StatusCode::OK {
        let claims = response
            .extensions()
            .get::<VerifiedClaims>()
            .expect("the Layer let a request through without claims");
        assert_eq!(
            sent.len(),
            1,
            "accepted with {} Authorization headers",
            sent.len()
        );
        let token = std::str::from_utf8(&sent[0])
            .map(strip_scheme)
            .expect("an accepted header is UTF-8");
        let direct = plain
            .verify(token)
            .expect("the Layer accepted what verify refuses");
        assert_eq!(*direct, **claims);
    } else {
        assert!(
            matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED),
            "Layer answered {status}"
        );
        assert!(
            response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE),
            "rejection without WWW-Authenticate"
        );
    }
}

/// `Bearer <token>` → `<token>`, anything else unchanged.
fn strip_scheme(value: &str) -> &str {
    match value.split_at_checked(7) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer ") => rest,
        _ => value,
    }
}

/// Verifies `token` and, when it is accepted, checks what acceptance promises.
pub(crate) fn check_verify(
    verifier: &tollgate_layer::Verifier,
    token: &str,
) -> Result<VerifiedClaims, TokenError> {
    let verdict = verifier.verify(token);
    if let Ok(claims) = &verdict {
        assert_canonical(token);
        crate::signed_claims::assert_acceptable(claims, verifier);
    }
    verdict
}

/// An accepted token is the one canonical encoding of its bytes: no other spelling of the same
/// header, claims and signature may verify (the verified-token cache and logs key on the string).
fn assert_canonical(token: &str) {
    for part in token.split('.') {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .expect("an accepted token part is base64url");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(bytes),
            part,
            "an accepted token part is not canonical base64url"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_token_passes_and_its_bit_flips_do_not_crash() {
        let header = format!("Bearer {}", fixture::user_token());
        bearer(header.as_bytes());
        let verifier = fixture::verifier(fixture::index(), false);
        assert!(check_verify(&verifier, &fixture::user_token()).is_ok());
        let mut bytes = header.into_bytes();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            bearer(&bytes);
            bytes[i] ^= 1;
        }
    }

    #[test]
    fn revoked_token_is_refused() {
        let verifier = fixture::verifier(fixture::index(), false);
        let mut claims: serde_json::Value =
            serde_json::from_str(&fixture::claims_json("s", "c", "/", &[], "")).unwrap();
        claims["jti"] = fixture::REVOKED_JTI.into();
        let token = fixture::sign_raw(
            fixture::default_header().as_bytes(),
            claims.to_string().as_bytes(),
        );
        assert!(matches!(
            check_verify(&verifier, &token),
            Err(TokenError::Revoked(_))
        ));
    }
}
