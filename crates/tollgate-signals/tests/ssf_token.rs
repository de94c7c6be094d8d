//! The Shared Signals receiver authenticating with OAuth 2.0 client credentials, against the test
//! transmitter's token endpoint, whose tokens expire within seconds: events keep flowing across
//! expiries, a wrong secret is a clear error that does not show it, and a token revoked early is
//! replaced after the one `401`. The secret may also go in the form (`client_secret_post`), or
//! the client sign an assertion with its key instead (`private_key_jwt`, RFC 7523).

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{KeySet, RevocationIndex, SigningAlgorithm, TokenIdentity, UnixMillis};
use tollgate_signals::ssf::event_types::RISC_ACCOUNT_DISABLED;
use tollgate_signals::testing::{Transmitter, now};
use tollgate_signals::{ClientAuthentication, SsfReceiver, SsfReceiverBuilder, SsfTask};

const AUDIENCE: &str = "https://api.example.com";
const CLIENT_ID: &str = "tollgate-receiver";
const CLIENT_SECRET: &str = "s3cret:with spaces&symbols";

struct Harness {
    tx: Transmitter,
    receiver: SsfReceiver,
    index: Arc<RevocationIndex>,
    _task: SsfTask,
}

/// A receiver polling a transmitter whose tokens live `lifetime`, with `secret`.
async fn harness(lifetime: Duration, secret: &str) -> Harness {
    let tx =
        Transmitter::start_with_token_endpoint(AUDIENCE, CLIENT_ID, CLIENT_SECRET, lifetime).await;
    let builder = builder(&tx, secret);
    started(tx, builder)
}

/// The receiver `builder` makes, publishing to an index of its own, started against `tx`.
fn started(tx: Transmitter, builder: SsfReceiverBuilder) -> Harness {
    let index = Arc::new(RevocationIndex::new());
    let receiver = builder.publisher(index.clone()).build().unwrap();
    let task = receiver.start().unwrap();
    Harness {
        tx,
        receiver,
        index,
        _task: task,
    }
}

fn builder(tx: &Transmitter, secret: &str) -> SsfReceiverBuilder {
    SsfReceiver::builder(tx.issuer(), AUDIENCE)
        .client_credentials(
            tx.token_endpoint(),
            CLIENT_ID,
            secret,
            Some("ssf.read ssf.manage".into()),
        )
        .poll_interval(Duration::from_millis(50))
        .max_silence(Duration::from_secs(2))
        .retry(Duration::from_millis(50), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(2))
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the index refuses a token of the transmitter's users `sub` issued a minute ago.
fn revoked(h: &Harness, sub: &str) -> bool {
    h.index
        .check(&TokenIdentity {
            jti: "at-1",
            grant_id: None,
            tenant: "/",
            subject: sub,
            client_id: "web",
            issuer: h.tx.issuer(),
            session: None,
            issued_at: UnixMillis::from_secs(now() - 60),
        })
        .is_err()
}

/// Queues an account-disabled event about `sub`, and waits until it is acknowledged.
async fn deliver(h: &Harness, sub: &str) {
    let (jti, set) = h.tx.set(&h.tx.claims(
        RISC_ACCOUNT_DISABLED,
        json!({"format": "iss_sub", "iss": h.tx.issuer(), "sub": sub}),
        json!({}),
    ));
    h.tx.enqueue(&jti, &set);
    wait_until(&format!("{sub}'s event acknowledged"), || {
        h.tx.acked().contains(&jti)
    })
    .await;
    assert!(revoked(h, sub), "{sub}'s tokens are revoked");
}

#[tokio::test]
async fn client_credentials_keep_events_flowing_across_several_token_expiries() {
    let h = harness(Duration::from_secs(1), CLIENT_SECRET).await;
    wait_until("ready", || h.receiver.ready()).await;
    deliver(&h, "alice").await;
    assert_eq!(h.tx.client_authentication(), Some("client_secret_basic"));
    let first = h.tx.tokens_issued();
    // Three token lives, polling every 50 ms all along.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    deliver(&h, "bob").await;
    assert!(
        h.tx.tokens_issued() >= first + 3,
        "renewed as they expire: {} after {first}",
        h.tx.tokens_issued()
    );
    // Renewed before they expire, not after the transmitter refused them (one refusal allowed:
    // a request sent just before renewal may arrive late on a busy machine).
    assert!(
        h.tx.unauthorized() <= 1,
        "{} requests refused",
        h.tx.unauthorized()
    );
    assert!(h.receiver.ready(), "{:?}", h.receiver.status());
}

#[tokio::test]
async fn a_wrong_client_secret_is_not_ready_with_a_clear_error_that_does_not_show_it() {
    let wrong = "wrong-secret-4f2a";
    let h = harness(Duration::from_secs(60), wrong).await;
    wait_until("an error", || h.receiver.status().last_error.is_some()).await;
    let (_, error) = h.receiver.status().last_error.unwrap();
    assert!(error.contains(&h.tx.token_endpoint()), "{error}");
    assert!(error.contains("invalid_client"), "{error}");
    assert!(error.contains(CLIENT_ID), "{error}");
    assert!(
        !error.contains(wrong) && !error.contains(CLIENT_SECRET),
        "{error}"
    );
    assert!(!h.receiver.ready());
    assert_eq!(h.tx.tokens_issued(), 0);
    assert!(!format!("{:?}", builder(&h.tx, wrong)).contains(wrong));
}

#[tokio::test]
async fn a_token_revoked_early_is_replaced_after_one_401_and_the_request_succeeds() {
    let h = harness(Duration::from_secs(3600), CLIENT_SECRET).await;
    wait_until("ready", || h.receiver.ready()).await;
    deliver(&h, "carol").await;
    assert_eq!(h.tx.tokens_issued(), 1, "an hour's token is kept");
    assert_eq!(h.tx.unauthorized(), 0);
    h.tx.revoke_tokens();
    deliver(&h, "dave").await;
    assert_eq!(h.tx.tokens_issued(), 2, "a new token after the 401");
    assert_eq!(
        h.tx.unauthorized(),
        1,
        "one request refused, then sent again"
    );
    assert!(h.receiver.ready());
    assert_eq!(h.receiver.status().last_error, None, "the retry succeeded");
}

/// A receiver polling `tx` with `authentication` at its token endpoint.
fn harness_with(tx: Transmitter, authentication: ClientAuthentication) -> Harness {
    let builder = SsfReceiver::builder(tx.issuer(), AUDIENCE)
        .client_credentials_with(tx.token_endpoint(), CLIENT_ID, authentication, None)
        .poll_interval(Duration::from_millis(50))
        .retry(Duration::from_millis(50), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(2));
    started(tx, builder)
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_form() {
    let tx = Transmitter::start_with_token_endpoint(
        AUDIENCE,
        CLIENT_ID,
        CLIENT_SECRET,
        Duration::from_secs(60),
    )
    .await;
    let h = harness_with(
        tx,
        ClientAuthentication::ClientSecretPost(CLIENT_SECRET.into()),
    );
    wait_until("ready", || h.receiver.ready()).await;
    deliver(&h, "alice").await;
    assert_eq!(h.tx.client_authentication(), Some("client_secret_post"));
}

/// `private_key_jwt` (RFC 7523), as Okta requires of service apps: the transmitter's token
/// endpoint checks each assertion's signature, issuer, audience, expiry and jti; an assertion
/// signed with another key is refused, and the error names neither key nor assertion.
#[tokio::test]
async fn private_key_jwt_signs_a_fresh_assertion_for_each_token() {
    let client_keys = KeySet::generate(SigningAlgorithm::RS256, "receiver-1").unwrap();
    let key = client_keys.signing_key().unwrap();
    let tx = Transmitter::start_with_client_keys(
        AUDIENCE,
        CLIENT_ID,
        client_keys,
        Duration::from_secs(1),
    )
    .await;
    let h = harness_with(tx, ClientAuthentication::PrivateKeyJwt(key));
    wait_until("ready", || h.receiver.ready()).await;
    deliver(&h, "alice").await;
    assert_eq!(h.tx.client_authentication(), Some("private_key_jwt"));
    // Tokens live a second: renewals need new assertions (a replayed jti is refused).
    let first = h.tx.tokens_issued();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    deliver(&h, "bob").await;
    assert!(
        h.tx.tokens_issued() >= first + 2,
        "{}",
        h.tx.tokens_issued()
    );

    // Another key with the same kid: refused as invalid_client.
    let registered = KeySet::generate(SigningAlgorithm::ES256, "receiver-1").unwrap();
    let tx = Transmitter::start_with_client_keys(
        AUDIENCE,
        CLIENT_ID,
        registered,
        Duration::from_secs(60),
    )
    .await;
    let impostor = KeySet::generate(SigningAlgorithm::ES256, "receiver-1").unwrap();
    let h = harness_with(
        tx,
        ClientAuthentication::PrivateKeyJwt(impostor.signing_key().unwrap()),
    );
    wait_until("an error", || h.receiver.status().last_error.is_some()).await;
    let (_, error) = h.receiver.status().last_error.unwrap();
    assert!(error.contains("invalid_client"), "{error}");
    assert!(error.contains(CLIENT_ID), "{error}");
    assert!(!error.contains("eyJ"), "no assertion in the error: {error}");
    assert!(!h.receiver.ready());
    assert_eq!(h.tx.tokens_issued(), 0);
}
