//! Target `logout_token`: what a back-channel logout receiver reads from anyone on the network.
//! Fuzzed logout-token claims (and header) **signed** with the fixture key, so that the claim
//! checks (not only the signature check) see hostile input; or, after a leading `0xFF`, the raw
//! request body.

use crate::fixture;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::sync::Arc;
use tollgate_core::{Clock, RevocationIndex, TokenIdentity, UnixMillis};
use tollgate_signals::{BackChannelLogout, LOGOUT_EVENT, LogoutIssuer, MemoryReplayGuard};
use tower::ServiceExt;

/// The client the fixture issuer addresses its logout tokens to.
pub const CLIENT: &str = "fuzz-web";
/// The receiver's freshness window, seconds.
const MAX_AGE: i64 = 300;

/// Panics if the receiver panics, answers anything but 200, 400 or 413, accepts a token that
/// breaks a rule of the specification, or accepts one without revoking its session or subject,
/// or accepts the same token twice.
pub fn logout_token(data: &[u8]) {
    let body = match data.split_first() {
        Some((0xFF, raw)) => Bytes::copy_from_slice(raw),
        _ => {
            let (header, claims) = match data.iter().position(|&b| b == 0) {
                Some(nul) => (&data[..nul], &data[nul + 1..]),
                None => (
                    &br#"{"alg":"EdDSA","typ":"logout+jwt","kid":"fuzz-k1"}"#[..],
                    data,
                ),
            };
            let token = fixture::sign_raw(header, claims);
            Bytes::from(format!("logout_token={token}"))
        }
    };
    let index = Arc::new(RevocationIndex::new());
    let receiver = BackChannelLogout::builder()
        .issuer(LogoutIssuer::new(fixture::ISSUER, CLIENT, fixture::keys()))
        .publisher(index.clone())
        .replay_guard(MemoryReplayGuard::new())
        .clock(fixture::clock() as Arc<dyn Clock>)
        .max_age(std::time::Duration::from_secs(MAX_AGE as u64))
        .build()
        .expect("the fixture receiver builds");
    let status = send(&receiver, body.clone());
    match status {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
            assert_eq!(
                index.stats().cutoffs,
                0,
                "a refused logout revoked something"
            );
            return;
        }
        other => panic!("unexpected status {other}"),
    }
    let claims = accepted_claims(&body);
    check_accepted(&claims, &index);
    assert_eq!(
        send(&receiver, body),
        StatusCode::BAD_REQUEST,
        "the same logout token was accepted twice"
    );
}

fn send(receiver: &BackChannelLogout, body: Bytes) -> StatusCode {
    let request = Request::post("/backchannel-logout")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(body))
        .expect("a request");
    let response = fixture::runtime()
        .block_on(receiver.clone().oneshot(request))
        .expect("the receiver is infallible");
    let status = response.status();
    let _ = fixture::runtime().block_on(response.into_body().collect());
    status
}

/// The claims of the logout token the body carried (the receiver accepted it, so it is there).
fn accepted_claims(body: &[u8]) -> Value {
    use base64::Engine;
    let token = form_urlencoded_token(body);
    let payload = token.split('.').nth(1).expect("a compact JWS");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&json).expect("claims JSON")
}

fn form_urlencoded_token(body: &[u8]) -> String {
    url_decoded_pairs(body)
        .into_iter()
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v)
        .expect("a logout_token")
}

fn url_decoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    // The receiver's own parser decides; here only the accepted, well-formed case is read back.
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace('+', " ")))
        .collect()
}

fn check_accepted(claims: &Value, index: &RevocationIndex) {
    let now = fixture::NOW.as_secs();
    assert_eq!(claims["iss"], fixture::ISSUER);
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == CLIENT,
        Value::Array(all) => all.iter().any(|a| a == CLIENT),
        _ => false,
    };
    assert!(aud_ok, "accepted for another audience: {claims}");
    assert!(claims.get("nonce").is_none(), "accepted with a nonce");
    assert!(
        claims["events"][LOGOUT_EVENT].is_object(),
        "accepted without the logout event"
    );
    let iat = claims["iat"]
        .as_f64()
        .expect("accepted without iat")
        .floor() as i64;
    assert!(
        (now - MAX_AGE..=now + fixture::LEEWAY_SECS).contains(&iat),
        "accepted an iat out of the window: {iat}"
    );
    let text = |name: &str| claims[name].as_str().filter(|s| !s.is_empty());
    let (sub, sid) = (text("sub"), text("sid"));
    assert!(
        sub.is_some() || sid.is_some(),
        "accepted with neither sub nor sid"
    );
    // A token of that session (or subject) issued before the logout is refused now.
    let token = TokenIdentity {
        jti: "fuzz-access",
        grant_id: None,
        tenant: "/",
        subject: sub.unwrap_or("someone-else"),
        client_id: "app",
        issuer: fixture::ISSUER,
        session: sid,
        issued_at: UnixMillis::from_secs(iat - 1),
    };
    assert!(
        index.check(&token).is_err(),
        "accepted without revoking: {claims}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed valid seed reaches the accepting branch (so the invariants there are
    /// exercised by the corpus replay, not only the refusals).
    #[test]
    fn the_valid_seed_is_accepted() {
        let seed = std::fs::read(crate::corpus_dir("logout_token").join("seed-valid")).unwrap();
        let token = fixture::sign_raw(
            br#"{"alg":"EdDSA","typ":"logout+jwt","kid":"fuzz-k1"}"#,
            &seed,
        );
        let receiver = BackChannelLogout::builder()
            .issuer(LogoutIssuer::new(fixture::ISSUER, CLIENT, fixture::keys()))
            .publisher(Arc::new(RevocationIndex::new()))
            .clock(fixture::clock() as Arc<dyn Clock>)
            .build()
            .unwrap();
        let body = Bytes::from(format!("logout_token={token}"));
        assert_eq!(send(&receiver, body), StatusCode::OK);
    }
}
