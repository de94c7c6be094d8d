//! The back-channel logout receiver, driven as a tower Service: what it accepts, what each
//! refusal looks like, and what the index refuses afterwards.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::sync::Arc;
use tollgate_core::{
    Clock, KeySet, ManualClock, RevocationIndex, SigningAlgorithm, TokenIdentity, UnixMillis, jws,
};
use tollgate_signals::{
    BackChannelLogout, LOGOUT_EVENT, LogoutIssuer, MemoryReplayGuard, RevokeOnLogout,
};
use tower::ServiceExt;

const ISSUER: &str = "https://id.example.com/realms/shop";
const OTHER_ISSUER: &str = "https://login.other.example";
const CLIENT: &str = "orders-api";
/// The test's "now": 2026-12-07T00:00:00Z.
const NOW: i64 = 1_796_601_600;

struct Provider {
    keys: KeySet,
}

impl Provider {
    fn new() -> Self {
        Provider {
            keys: KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap(),
        }
    }

    fn sign(&self, typ: &str, claims: &Value) -> String {
        jws::encode(&self.keys.signing_key().unwrap(), typ, claims).unwrap()
    }
}

/// A valid logout token's claims, for `sid` `s-1` of `alice`.
fn claims(jti: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": NOW - 5,
        "exp": NOW + 115,
        "jti": jti,
        "sub": "alice",
        "sid": "s-1",
        "events": { LOGOUT_EVENT: {} },
    })
}

struct Receiver {
    service: BackChannelLogout,
    index: Arc<RevocationIndex>,
    clock: Arc<ManualClock>,
}

fn receiver(provider: &Provider, revoke: RevokeOnLogout) -> Receiver {
    let index = Arc::new(RevocationIndex::new());
    let clock = Arc::new(ManualClock::new(UnixMillis::from_secs(NOW)));
    let service = BackChannelLogout::builder()
        .issuer(LogoutIssuer::new(ISSUER, CLIENT, provider.keys.clone()).revoke(revoke))
        .issuer(LogoutIssuer::new(
            OTHER_ISSUER,
            CLIENT,
            KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap(),
        ))
        .publisher(index.clone())
        .replay_guard(MemoryReplayGuard::new())
        .clock(clock.clone() as Arc<dyn Clock>)
        .build()
        .unwrap();
    Receiver {
        service,
        index,
        clock,
    }
}

fn form(token: &str) -> Request<Full<Bytes>> {
    let body = format!("logout_token={token}");
    Request::post("/backchannel-logout")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(body))
        .unwrap()
}

async fn send(
    receiver: &Receiver,
    request: Request<Full<Bytes>>,
) -> (StatusCode, Response<()>, Value) {
    let response = receiver.service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (parts.status, Response::from_parts(parts, ()), json)
}

/// An access token of `issuer` for `alice` in session `sid`, issued a minute before the logout.
fn access_token<'a>(issuer: &'a str, sid: Option<&'a str>) -> TokenIdentity<'a> {
    TokenIdentity {
        jti: "at-1",
        grant_id: None,
        tenant: "/",
        subject: "alice",
        client_id: "web",
        issuer,
        session: sid,
        issued_at: UnixMillis::from_secs(NOW - 60),
    }
}

#[tokio::test]
async fn a_valid_logout_ends_that_session_of_that_issuer_only() {
    let provider = Provider::new();
    let receiver = receiver(&provider, RevokeOnLogout::Session);
    let (status, response, body) = send(
        &receiver,
        form(&provider.sign("logout+jwt", &claims("j-1"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(
        receiver
            .index
            .check(&access_token(ISSUER, Some("s-1")))
            .is_err()
    );
    // Another session of the same user, the same session id at another issuer: untouched.
    assert_eq!(
        receiver.index.check(&access_token(ISSUER, Some("s-2"))),
        Ok(())
    );
    assert_eq!(receiver.index.check(&access_token(ISSUER, None)), Ok(()));
    assert_eq!(
        receiver
            .index
            .check(&access_token(OTHER_ISSUER, Some("s-1"))),
        Ok(())
    );
    // A token of the session issued after the logout's second (a clock's later reading) passes.
    let later = TokenIdentity {
        issued_at: UnixMillis::from_secs(NOW - 3),
        ..access_token(ISSUER, Some("s-1"))
    };
    assert_eq!(receiver.index.check(&later), Ok(()));
    let stats = receiver.service.stats().snapshot();
    assert_eq!((stats.received, stats.applied), (1, 1));
}

#[tokio::test]
async fn without_sid_or_by_choice_a_logout_ends_every_token_of_the_subject() {
    let provider = Provider::new();
    // The specification: a logout token with only `sub` ends every session of the user.
    let receiver = receiver(&provider, RevokeOnLogout::Session);
    let mut only_sub = claims("j-1");
    only_sub.as_object_mut().unwrap().remove("sid");
    let (status, _, body) = send(&receiver, form(&provider.sign("logout+jwt", &only_sub))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(receiver.index.check(&access_token(ISSUER, None)).is_err());
    assert!(
        receiver
            .index
            .check(&access_token(ISSUER, Some("s-2")))
            .is_err()
    );
    assert_eq!(
        receiver.index.check(&access_token(OTHER_ISSUER, None)),
        Ok(())
    );

    // The operator's choice for providers whose access tokens carry no sid.
    let receiver = self::receiver(&provider, RevokeOnLogout::Subject);
    let (status, _, _) = send(&receiver, form(&provider.sign("JWT", &claims("j-2")))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(receiver.index.check(&access_token(ISSUER, None)).is_err());
}

#[tokio::test]
async fn every_invalid_logout_token_is_a_400_that_revokes_nothing() {
    let provider = Provider::new();
    let impostor = Provider::new(); // same kid, another key
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims("j-edit");
        f(c.as_object_mut().unwrap());
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong signature", impostor.sign("logout+jwt", &claims("j")), "invalid signature"),
        ("unknown issuer", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("iss".into(), json!("https://evil.example")))), "unknown issuer"),
        ("another configured issuer's name", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("iss".into(), json!(OTHER_ISSUER)))), "invalid signature"),
        ("wrong audience", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("aud".into(), json!(["other-client"])))), "wrong audience"),
        ("nonce present", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("nonce".into(), json!("n")))), "must not carry a nonce"),
        ("no events", provider.sign("logout+jwt", &edit(&|c| _ = c.remove("events"))), "not a logout token"),
        ("another event", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("events".into(), json!({"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}})))), "not a logout token"),
        ("stale iat", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("iat".into(), json!(NOW - 301)))), "too old"),
        ("no iat", provider.sign("logout+jwt", &edit(&|c| _ = c.remove("iat"))), "too old"),
        ("iat in the future", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("iat".into(), json!(NOW + 31)))), "in the future"),
        ("expired", provider.sign("logout+jwt", &edit(&|c| _ = c.insert("exp".into(), json!(NOW - 31)))), "expired"),
        ("neither sub nor sid", provider.sign("logout+jwt", &edit(&|c| { c.remove("sub"); c.remove("sid"); })), "neither sub nor sid"),
        ("empty sub and sid", provider.sign("logout+jwt", &edit(&|c| { c.insert("sub".into(), json!("")); c.insert("sid".into(), json!("")); })), "neither sub nor sid"),
        ("no jti", provider.sign("logout+jwt", &edit(&|c| _ = c.remove("jti"))), "no jti"),
        ("an access token", provider.sign("at+jwt", &claims("j")), "type must be logout+jwt"),
        ("a claim named twice", {
            let token = provider.sign("logout+jwt", &claims("j"));
            // Re-signed by hand so that the payload can name `sub` twice.
            let payload = br#"{"iss":"https://id.example.com/realms/shop","aud":"orders-api","iat":1796601595,"jti":"j","sub":"alice","sub":"bob","events":{"http://schemas.openid.net/event/backchannel-logout":{}}}"#;
            let header = token.split('.').next().unwrap();
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let input = format!("{header}.{}", b64.encode(payload));
            let signature = provider.keys.signing_key().unwrap().sign(input.as_bytes()).unwrap();
            format!("{input}.{}", b64.encode(signature))
        }, "malformed"),
        ("not a JWT", "garbage".into(), "malformed"),
    ];
    for (case, token, description) in cases {
        let receiver = receiver(&provider, RevokeOnLogout::Session);
        let (status, response, body) = send(&receiver, form(&token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert_eq!(body["error"], "invalid_request", "{case}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(description),
            "{case}: {body}"
        );
        assert_eq!(response.headers()["cache-control"], "no-store", "{case}");
        assert_eq!(receiver.index.stats().cutoffs, 0, "{case}: nothing revoked");
        assert_eq!(receiver.service.stats().snapshot().invalid, 1, "{case}");
    }
}

#[tokio::test]
async fn a_jti_is_accepted_once_and_the_window_moves_with_the_clock() {
    let provider = Provider::new();
    let receiver = receiver(&provider, RevokeOnLogout::Session);
    let token = provider.sign("logout+jwt", &claims("j-1"));
    assert_eq!(send(&receiver, form(&token)).await.0, StatusCode::OK);
    let (status, _, body) = send(&receiver, form(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_description"], "logout token already used");
    assert_eq!(receiver.service.stats().snapshot().replayed, 1);
    // Five minutes later the same token is too old, whatever the replay guard remembers.
    receiver.clock.advance(std::time::Duration::from_secs(301));
    let (status, _, body) = send(&receiver, form(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_description"], "logout token too old");
}

#[tokio::test]
async fn requests_that_are_not_a_logout_form_are_refused() {
    let provider = Provider::new();
    let receiver = receiver(&provider, RevokeOnLogout::Session);
    let token = provider.sign("logout+jwt", &claims("j-1"));

    let get = Request::get("/backchannel-logout")
        .body(Full::default())
        .unwrap();
    let (status, response, _) = send(&receiver, get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");

    let json = Request::post("/")
        .header("content-type", "application/json")
        .body(Full::from(format!(r#"{{"logout_token":"{token}"}}"#)))
        .unwrap();
    assert_eq!(send(&receiver, json).await.0, StatusCode::BAD_REQUEST);

    let twice = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(format!(
            "logout_token={token}&logout_token={token}"
        )))
        .unwrap();
    let (status, _, body) = send(&receiver, twice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error_description"],
        "logout_token was sent more than once"
    );

    let missing = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("token=x"))
        .unwrap();
    assert_eq!(
        send(&receiver, missing).await.2["error_description"],
        "logout_token is missing"
    );

    let huge = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from(format!("logout_token={}", "a".repeat(20_000))))
        .unwrap();
    assert_eq!(send(&receiver, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(receiver.index.stats().cutoffs, 0);
    // The token itself was never spent: it is still accepted.
    assert_eq!(send(&receiver, form(&token)).await.0, StatusCode::OK);
}

#[test]
fn the_builder_refuses_what_cannot_work() {
    let keys = KeySet::new();
    let index = Arc::new(RevocationIndex::new());
    assert!(
        BackChannelLogout::builder()
            .publisher(index.clone())
            .build()
            .is_err()
    );
    assert!(
        BackChannelLogout::builder()
            .issuer(LogoutIssuer::new(ISSUER, CLIENT, keys.clone()))
            .build()
            .is_err(),
        "no publisher"
    );
    let twice = BackChannelLogout::builder()
        .issuer(LogoutIssuer::new(ISSUER, CLIENT, keys.clone()))
        .issuer(LogoutIssuer::new(ISSUER, "other", keys.clone()))
        .publisher(index.clone())
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("configured twice"), "{twice}");
    assert!(
        BackChannelLogout::builder()
            .issuer(LogoutIssuer::new(ISSUER, "", keys))
            .publisher(index)
            .build()
            .is_err(),
        "no client id"
    );
}
