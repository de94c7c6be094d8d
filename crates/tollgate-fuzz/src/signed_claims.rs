//! Target `signed_claims`: fuzzed header and claims JSON, signed with the fixture key, so that
//! the verifier's claim checks (not only its signature check) see hostile input.

use crate::fixture;
use tollgate_core::Claims;
use tollgate_layer::{TokenError, Verifier};

/// The input is the claims JSON, or `header NUL claims` to fuzz the JWS header too (the default
/// header is `{"alg":"EdDSA","typ":"at+jwt","kid":"fuzz-k1"}`). Both are signed with the fixture
/// key and verified.
///
/// Panics if an accepted token breaks a documented check (see [`assert_acceptable`]), or if its
/// claims differ from what the payload deserializes to.
pub fn signed_claims(data: &[u8]) {
    let default_header = fixture::default_header();
    let (header, payload) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (default_header.as_bytes(), data),
    };
    let token = fixture::sign_raw(header, payload);
    let verifier = fixture::verifier(fixture::index(), false);
    match verifier.verify(&token) {
        Ok(claims) => {
            assert_acceptable(&claims, &verifier);
            let parsed: Claims =
                serde_json::from_slice(payload).expect("accepted claims deserialize");
            assert_eq!(*claims, parsed);
            // Re-encoding the claims and signing them again must give an equally acceptable token:
            // what the issuer would sign from these claims is what was accepted.
            let again = serde_json::to_vec(&*claims).expect("claims serialize");
            let resigned = fixture::sign_raw(fixture::default_header().as_bytes(), &again);
            let reverified = verifier
                .verify(&resigned)
                .expect("re-signed accepted claims are accepted");
            assert_eq!(
                *reverified, *claims,
                "claims change across a JSON round trip"
            );
        }
        Err(TokenError::TooLarge) => {
            assert!(token.len() > tollgate_layer::verifier::DEFAULT_MAX_TOKEN_LEN)
        }
        Err(_) => {}
    }
}

/// What [`Verifier::verify`] promises of the claims it accepts, checked independently of its code
/// (fixture issuer, audience, clock and revocations).
///
/// # Panics
///
/// When any promise is broken.
pub fn assert_acceptable(claims: &Claims, verifier: &Verifier) {
    let now = fixture::NOW.as_secs();
    assert_eq!(claims.iss, fixture::ISSUER, "accepted a foreign issuer");
    assert!(
        claims.aud.contains(fixture::AUDIENCE) || claims.aud.contains(fixture::ISSUER),
        "accepted a foreign audience: {:?}",
        claims.aud
    );
    assert!(
        now < claims.exp.saturating_add(fixture::LEEWAY_SECS),
        "accepted an expired token: exp {}",
        claims.exp
    );
    assert!(
        claims.iat <= now + fixture::LEEWAY_SECS,
        "accepted a token issued in the future: iat {}",
        claims.iat
    );
    if let Some(nbf) = claims.nbf {
        assert!(
            nbf <= now + fixture::LEEWAY_SECS,
            "accepted before nbf {nbf}"
        );
    }
    assert!(
        tollgate_core::TenantPath::is_valid(claims.tenant()),
        "accepted a malformed tenant {:?}",
        claims.tenant()
    );
    assert_ne!(claims.jti, fixture::REVOKED_JTI, "accepted a revoked token");
    assert_ne!(
        claims.grant_id.as_deref(),
        Some(fixture::REVOKED_GRANT),
        "accepted a token of a revoked grant"
    );
    let cut = tollgate_core::TenantPath::parse(fixture::CUT_TENANT).expect("valid");
    if cut.covers(claims.tenant()) {
        assert!(
            claims.issued_at().0 >= fixture::NOW.0 - 3_600_000,
            "accepted a token of a cut-off tenant issued before the cutoff"
        );
    }
    assert!(verifier.index().check(&claims.identity()).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_claims_are_accepted_and_checked() {
        let claims = fixture::claims_json("alice", "web", "/Acme", &["customer"], "openid");
        let token = fixture::sign_raw(fixture::default_header().as_bytes(), claims.as_bytes());
        let verifier = fixture::verifier(fixture::index(), false);
        assert!(verifier.verify(&token).is_ok());
        signed_claims(claims.as_bytes());
    }

    #[test]
    fn cut_off_tenant_is_refused() {
        let verifier = fixture::verifier(fixture::index(), false);
        let mut claims: serde_json::Value =
            serde_json::from_str(&fixture::claims_json("alice", "web", "/Cut/Sub", &[], ""))
                .unwrap();
        // Issued after the cutoff (an hour before NOW): accepted.
        let token = fixture::sign_raw(
            fixture::default_header().as_bytes(),
            claims.to_string().as_bytes(),
        );
        assert!(verifier.verify(&token).is_ok());
        // Issued two hours before NOW: refused.
        let iat_ms = fixture::NOW.0 - 7_200_000;
        claims["iat"] = (iat_ms / 1000).into();
        claims["iat_ms"] = iat_ms.into();
        let token = fixture::sign_raw(
            fixture::default_header().as_bytes(),
            claims.to_string().as_bytes(),
        );
        assert!(matches!(
            verifier.verify(&token),
            Err(TokenError::Revoked(_))
        ));
        signed_claims(claims.to_string().as_bytes());
    }
}
