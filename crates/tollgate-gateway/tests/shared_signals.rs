//! `[[shared_signals]]`: the gateway receives a Shared Signals transmitter's security events
//! (the test transmitter of `tollgate_signals::testing`, written from the specifications), polled
//! or pushed to its own listener before any route, and refuses the revoked tokens of the issuer
//! the transmitter speaks for from then on; `/readyz` fails closed while the transmitter is away.
//! Without `[revocations]` the cutoffs reach this gateway's index only; with it, every follower of
//! the Redis stream too.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use support::*;
use tollgate_core::{RevocationIndex, TokenIdentity, UnixMillis};
use tollgate_gateway::RunningGateway;
use tollgate_redis::testing::RedisServer;
use tollgate_redis::{Follower, RedisTarget};
use tollgate_signals::ssf::event_types::{CAEP_CREDENTIAL_CHANGE, CAEP_SESSION_REVOKED};
use tollgate_signals::testing::Transmitter;

/// The `aud` of the transmitter's SETs for the gateway.
const SSF_AUDIENCE: &str = "https://gateway.example.test";
/// Where pushed SETs arrive on the gateway's listener.
const PUSH_PATH: &str = "/ssf/events";
// The secrets come from environment variables every process `cargo test` starts has: a test
// cannot set one (`std::env::set_var` is unsafe, and the workspace forbids unsafe code).
/// Holds the token the gateway authenticates to the transmitter with.
const BEARER_ENV: &str = "CARGO_PKG_NAME";
/// Holds the `Authorization` value the transmitter pushes with.
const PUSH_AUTHORIZATION_ENV: &str = "CARGO_MANIFEST_DIR";

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("cargo sets {var} for the tests"))
}

async fn transmitter() -> Transmitter {
    Transmitter::start(SSF_AUDIENCE, &env(BEARER_ENV)).await
}

/// A `[[shared_signals]]` table for `tx`, polled every second, whose SETs may revoke the
/// fixture's issuer's tokens.
fn poll_table(tx: &Transmitter) -> String {
    format!(
        "[[shared_signals]]\ntransmitter = \"{}\"\naudience = \"{SSF_AUDIENCE}\"\n\
         bearer_token_env = \"{BEARER_ENV}\"\ntoken_issuers = [\"{ISSUER}\"]\npoll_interval = 1\n",
        tx.issuer()
    )
}

/// The same, pushed to the gateway listening on `listen`.
fn push_table(tx: &Transmitter, listen: SocketAddr) -> String {
    format!(
        "[[shared_signals]]\ntransmitter = \"{}\"\naudience = \"{SSF_AUDIENCE}\"\n\
         bearer_token_env = \"{BEARER_ENV}\"\ntoken_issuers = [\"{ISSUER}\"]\n\
         delivery = \"push\"\npush_path = \"{PUSH_PATH}\"\n\
         push_url = \"http://{listen}{PUSH_PATH}\"\n\
         push_authorization_env = \"{PUSH_AUTHORIZATION_ENV}\"\npoll_interval = 1\n",
        tx.issuer()
    )
}

/// A gateway with `table`, proxying everything (`/`) to an upstream, on `listen` when given.
async fn start_gateway(
    fixture: &Fixture,
    table: &str,
    listen: Option<SocketAddr>,
) -> RunningGateway {
    let up = upstream().await;
    let text = fixture.config(&format!(
        "{table}[[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n[[routes]]\nprefix = \"/\"\n",
        up.addr
    ));
    let mut config = tollgate_gateway::config::parse(&text, &fixture.path())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    if let Some(listen) = listen {
        let ops = config.ops_listen();
        config.set_listen(listen, ops);
    }
    tollgate_gateway::start(config).await.unwrap()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn wait_until<F: Future<Output = bool>>(what: &str, within: Duration, check: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(gw: &RunningGateway) -> (StatusCode, String) {
    let answer = send(gw.ops_addr(), "GET", "/readyz", &[]).await;
    (answer.status, answer.body)
}

async fn wait_ready(gw: &RunningGateway) {
    wait_until("the gateway ready", Duration::from_secs(20), || async {
        readyz(gw).await.0 == StatusCode::OK
    })
    .await;
}

/// Waits until the transmitter has had each of `sets` acknowledged: only once published, so
/// the gateway refuses from then on.
async fn wait_acked(tx: &Transmitter, sets: &[(String, String)]) {
    wait_until(
        "every SET acknowledged",
        Duration::from_secs(15),
        || async {
            let acked = tx.acked();
            sets.iter().all(|(jti, _)| acked.contains(jti))
        },
    )
    .await;
}

/// Every token passes; the transmitter queues [`revocations`] for polling; once they are
/// acknowledged (only once published), the revoked tokens are refused and the others pass.
async fn polled_revocations_are_refused(fixture: &Fixture, tx: &Transmitter, gw: &RunningGateway) {
    let tokens = Tokens::new(fixture);
    tokens.all_pass(gw).await;
    let sets = revocations(tx);
    for (jti, set) in &sets {
        tx.enqueue(jti, set);
    }
    wait_acked(tx, &sets).await;
    tokens.revoked_ones_refused(gw).await;
}

/// What the gateway answers `GET /api` with `token`.
async fn get(gw: &RunningGateway, token: &str) -> StatusCode {
    send(
        gw.local_addr(),
        "GET",
        "/api",
        &[("authorization", &bearer(token))],
    )
    .await
    .status
}

fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": ISSUER, "sub": sub})
}

/// The two revocations: alice's session `s-1` ended, carol's password changed. Each a (jti, SET).
fn revocations(tx: &Transmitter) -> [(String, String); 2] {
    let session = json!({
        "format": "complex",
        "user": iss_sub("alice"),
        "session": {"format": "opaque", "id": "s-1"},
    });
    [
        tx.set(&tx.claims(CAEP_SESSION_REVOKED, session, json!({}))),
        tx.set(&tx.claims(
            CAEP_CREDENTIAL_CHANGE,
            iss_sub("carol"),
            json!({"credential_type": "password", "change_type": "update"}),
        )),
    ]
}

/// Tokens of the fixture's issuer: alice in sessions `s-1` and `s-2`, carol, bob.
struct Tokens {
    alice_s1: String,
    alice_s2: String,
    carol: String,
    bob: String,
}

impl Tokens {
    fn new(fixture: &Fixture) -> Tokens {
        let of = |sub: &str, sid: &str| {
            fixture.token(|c| {
                c.sub = sub.into();
                c.sid = Some(sid.into());
            })
        };
        Tokens {
            alice_s1: of("alice", "s-1"),
            alice_s2: of("alice", "s-2"),
            carol: of("carol", "s-3"),
            bob: of("bob", "s-4"),
        }
    }

    async fn all_pass(&self, gw: &RunningGateway) {
        for token in [&self.alice_s1, &self.alice_s2, &self.carol, &self.bob] {
            assert_eq!(get(gw, token).await, StatusCode::OK);
        }
    }

    /// The ended session and the changed credential are refused; alice's other session and
    /// another user pass.
    async fn revoked_ones_refused(&self, gw: &RunningGateway) {
        assert_eq!(get(gw, &self.alice_s1).await, StatusCode::UNAUTHORIZED);
        assert_eq!(get(gw, &self.carol).await, StatusCode::UNAUTHORIZED);
        assert_eq!(get(gw, &self.alice_s2).await, StatusCode::OK);
        assert_eq!(get(gw, &self.bob).await, StatusCode::OK);
    }
}

/// The value of the metric sample `name{labels}`, if exposed.
async fn sample(gw: &RunningGateway, series: &str) -> Option<f64> {
    let metrics = send(gw.ops_addr(), "GET", "/metrics", &[]).await.body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn polled_events_refuse_the_revoked_tokens_of_that_issuer() {
    let fixture = Fixture::new();
    let tx = transmitter().await;
    let gw = start_gateway(&fixture, &poll_table(&tx), None).await;
    wait_ready(&gw).await;
    polled_revocations_are_refused(&fixture, &tx, &gw).await;
    assert!(tx.set_errs().is_empty(), "{:?}", tx.set_errs());

    let of = |outcome: &str| {
        format!(
            "tollgate_gateway_shared_signals_total{{transmitter=\"{}\",outcome=\"{outcome}\"}}",
            tx.issuer()
        )
    };
    // The two revocations, and the stream's verification event.
    assert!(sample(&gw, &of("applied")).await >= Some(3.0));
    assert_eq!(sample(&gw, &of("refused")).await, Some(0.0));
    let ready = format!(
        "tollgate_gateway_shared_signals_ready{{transmitter=\"{}\"}}",
        tx.issuer()
    );
    assert_eq!(sample(&gw, &ready).await, Some(1.0));
    gw.shutdown().await;
}

#[tokio::test]
async fn pushed_events_are_answered_before_any_route_and_refuse_the_revoked_tokens() {
    let fixture = Fixture::new();
    let tx = transmitter().await;
    let listen = free_port();
    let gw = start_gateway(&fixture, &push_table(&tx, listen), Some(listen)).await;
    // Ready once the transmitter has pushed the stream's verification event to the gateway.
    wait_ready(&gw).await;
    let tokens = Tokens::new(&fixture);
    tokens.all_pass(&gw).await;

    for (jti, set) in revocations(&tx) {
        let (status, body) = tx.push(&set).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{jti}: {body}");
    }
    tokens.revoked_ones_refused(&gw).await;

    // The push path requires the Authorization value the transmitter was given.
    let unauthenticated = send(
        gw.local_addr(),
        "POST",
        PUSH_PATH,
        &[("content-type", "application/secevent+jwt")],
    )
    .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert!(
        unauthenticated.body.contains("authentication_failed"),
        "{}",
        unauthenticated.body
    );

    let series = |labels: &str| format!("tollgate_gateway_{labels}");
    let transmitter = tx.issuer();
    for (name, wanted) in [
        // The verification event and the three POSTs above, none seen by the route `/`.
        (
            series("requests_total{route=\"none\",outcome=\"shared_signals\"}"),
            4.0,
        ),
        // The GETs that passed: four before, two after.
        (
            series("requests_total{route=\"/\",outcome=\"forwarded\"}"),
            6.0,
        ),
        (
            series(&format!(
                "shared_signals_total{{transmitter=\"{transmitter}\",outcome=\"applied\"}}"
            )),
            3.0,
        ),
        (
            series(&format!(
                "shared_signals_refused_total{{transmitter=\"{transmitter}\",reason=\"authentication\"}}"
            )),
            1.0,
        ),
    ] {
        assert_eq!(sample(&gw, &name).await, Some(wanted), "{name}");
    }
    gw.shutdown().await;
}

/// Whether `index` refuses a token of the fixture's issuer for `sub` in session `sid`, issued a
/// minute ago.
fn refused_by(index: &RevocationIndex, sub: &str, sid: &str) -> bool {
    index
        .check(&TokenIdentity {
            jti: "t",
            grant_id: None,
            tenant: "/",
            subject: sub,
            client_id: "app",
            issuer: ISSUER,
            session: Some(sid),
            issued_at: UnixMillis(UnixMillis::from(SystemTime::now()).0 - 60_000),
        })
        .is_err()
}

/// With `[revocations]`: the cutoffs go through the Redis stream to every follower (here an index
/// following it, as an app's Layer or another gateway would), and the receiving gateway refuses
/// the tokens too.
#[tokio::test]
async fn with_revocations_polled_events_reach_every_follower_through_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let fixture = Fixture::new();
    let tx = transmitter().await;
    let table = format!("[revocations]\nredis_url = \"{url}\"\n{}", poll_table(&tx));
    let gw = start_gateway(&fixture, &table, None).await;
    wait_ready(&gw).await;
    let followed = Arc::new(RevocationIndex::new());
    let feed = Follower::new(RedisTarget::new(&url).unwrap(), followed.clone())
        .start()
        .await
        .unwrap();
    let tokens = Tokens::new(&fixture);
    tokens.all_pass(&gw).await;

    let sets = revocations(&tx);
    for (jti, set) in &sets {
        tx.enqueue(jti, set);
    }
    wait_acked(&tx, &sets).await;
    tokens.revoked_ones_refused(&gw).await;
    wait_until(
        "the follower refuses them",
        Duration::from_secs(15),
        || async { refused_by(&followed, "alice", "s-1") && refused_by(&followed, "carol", "s-3") },
    )
    .await;
    assert!(!refused_by(&followed, "alice", "s-2"));
    assert!(!refused_by(&followed, "bob", "s-4"));
    feed.stop();
    gw.shutdown().await;
}

#[tokio::test]
async fn readyz_names_the_transmitter_while_it_is_away_and_is_200_again_after() {
    let fixture = Fixture::new();
    let mut tx = transmitter().await;
    let gw = start_gateway(&fixture, &poll_table(&tx), None).await;
    wait_ready(&gw).await;

    tx.stop();
    // Not ready once the transmitter has been silent for three poll intervals and a request's
    // timeout (13 s).
    wait_until(
        "not ready while the transmitter is away",
        Duration::from_secs(40),
        || async { readyz(&gw).await.0 == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    let (_, body) = readyz(&gw).await;
    let named = format!("shared signals transmitter {} not ready", tx.issuer());
    assert!(body.contains(&named), "{body}");
    let ready = format!(
        "tollgate_gateway_shared_signals_ready{{transmitter=\"{}\"}}",
        tx.issuer()
    );
    assert_eq!(sample(&gw, &ready).await, Some(0.0));
    assert_eq!(sample(&gw, "tollgate_gateway_ready").await, Some(0.0));

    tx.restart().await;
    wait_ready(&gw).await;
    assert_eq!(sample(&gw, &ready).await, Some(1.0));
    gw.shutdown().await;
}

#[test]
fn shared_signals_configuration_errors_are_one_line_naming_the_key() {
    let fixture = Fixture::new();
    let error = |body: &str| {
        let text = fixture.config(body);
        let error = tollgate_gateway::config::parse(&text, &fixture.path())
            .expect_err(&text)
            .to_string();
        assert!(!error.contains('\n'), "{error}");
        error
    };
    let table = |extra: &str| {
        format!(
            "[[shared_signals]]\ntransmitter = \"https://ssf.example.test\"\n\
             audience = \"{SSF_AUDIENCE}\"\nbearer_token_env = \"{BEARER_ENV}\"\n{extra}"
        )
    };
    let ours = format!("token_issuers = [\"{ISSUER}\"]\n");
    let push = |extra: &str| {
        table(&format!(
            "{ours}delivery = \"push\"\npush_url = \"https://gw.example.test/ssf\"\n{extra}"
        ))
    };
    for (body, key, wanted) in [
        (
            table("token_issuers = [\"https://other.test\"]\n"),
            "token_issuers",
            "`https://other.test` is not a configured issuer",
        ),
        (
            table(""),
            "token_issuers",
            "not set, so it is the transmitter `https://ssf.example.test`",
        ),
        (
            table(&format!(
                "{ours}delivery = \"push\"\npush_path = \"/ssf\"\n"
            )),
            "push_url",
            "delivery = \"push\" needs push_url",
        ),
        (push(""), "push_path", "delivery = \"push\" needs push_path"),
        (
            format!(
                "[back_channel_logout]\npath = \"/bcl\"\n[[back_channel_logout.issuers]]\n\
                 issuer = \"{ISSUER}\"\nclient_id = \"web\"\n{}",
                push("push_path = \"/bcl\"\n")
            ),
            "push_path",
            "is back_channel_logout's path",
        ),
        (
            format!(
                "[forward_auth]\npath = \"/auth\"\nproxy = \"traefik\"\n{}",
                push("push_path = \"/auth\"\n")
            ),
            "push_path",
            "is forward_auth's path",
        ),
        (
            format!(
                "{}{}",
                push("push_path = \"/ssf\"\n"),
                push("push_path = \"/ssf\"\n")
                    .replace("https://ssf.example.test", "https://other-ssf.example.test")
            ),
            "shared_signals[1].push_path",
            "is shared_signals[0]'s push_path",
        ),
        (
            push("push_path = \"ssf\"\n"),
            "push_path",
            "plain absolute path",
        ),
        (
            table(&ours).replace(BEARER_ENV, "TOLLGATE_TEST_SURELY_UNSET_VARIABLE"),
            "bearer_token_env",
            "environment variable `TOLLGATE_TEST_SURELY_UNSET_VARIABLE` is not set",
        ),
        (
            push(
                "push_path = \"/ssf\"\npush_authorization_env = \"TOLLGATE_TEST_SURELY_UNSET_VARIABLE\"\n",
            ),
            "push_authorization_env",
            "environment variable `TOLLGATE_TEST_SURELY_UNSET_VARIABLE` is not set",
        ),
        (
            table(&format!("{ours}delivery = \"webhook\"\n")),
            "delivery",
            "must be \"poll\" or \"push\"",
        ),
        (
            table(&format!(
                "{ours}push_url = \"https://gw.example.test/ssf\"\n"
            )),
            "push_url",
            "is for delivery = \"push\" only",
        ),
        (
            format!("{}{}", table(&ours), table(&ours)),
            "shared_signals[1].transmitter",
            "configured twice",
        ),
        (
            table(&format!("{ours}poll_interval = 0\n")),
            "poll_interval",
            "between 1 and 3600 seconds",
        ),
        (
            table(&format!("{ours}max_age = 0\n")),
            "max_age",
            "between 1 and 604800 seconds",
        ),
        (
            table(&ours).replace("https://ssf.example.test", "ssf.example.test"),
            "transmitter",
            "http:// or https:// URL",
        ),
        (
            table(&ours).replace(SSF_AUDIENCE, " "),
            "audience",
            "must not be empty",
        ),
    ] {
        let got = error(&body);
        assert!(got.contains(wanted), "{body}\n=> {got}");
        assert!(got.contains("shared_signals["), "{got}");
        assert!(got.contains(key), "{key}: {got}");
        assert!(!got.contains(&env(BEARER_ENV)), "a secret in {got}");
    }
}

#[test]
fn the_secrets_never_show_in_the_configuration() {
    let fixture = Fixture::new();
    let tables = format!(
        "[[shared_signals]]\ntransmitter = \"https://ssf.example.test\"\n\
         audience = \"{SSF_AUDIENCE}\"\nbearer_token_env = \"{BEARER_ENV}\"\n\
         token_issuers = [\"{ISSUER}\"]\ndelivery = \"push\"\npush_path = \"/ssf\"\n\
         push_url = \"https://gw.example.test/ssf\"\n\
         push_authorization_env = \"{PUSH_AUTHORIZATION_ENV}\"\n"
    );
    let config = tollgate_gateway::config::parse(&fixture.config(&tables), &fixture.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?}");
    assert!(shown.contains("https://ssf.example.test"), "{shown}");
    for var in [BEARER_ENV, PUSH_AUTHORIZATION_ENV] {
        assert!(!shown.contains(&env(var)), "{var}'s value in {shown}");
    }
}

/// `token_auth_method = "private_key_jwt"`: the gateway reads the client's PEM key (as Okta hands
/// it out) and authenticates to the transmitter's token endpoint with signed assertions; the
/// polled events then refuse the revoked tokens.
#[tokio::test]
async fn a_gateway_with_private_key_jwt_gets_its_tokens_and_its_events() {
    use tollgate_core::{KeySet, SigningAlgorithm};
    let fixture = Fixture::new();
    let client_keys = KeySet::generate(SigningAlgorithm::ES256, "gw-key-1").unwrap();
    let der = client_keys.signing_key().unwrap().to_der().to_vec();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der)
    );
    std::fs::write(fixture.dir.path().join("ssf-client.pem"), pem).unwrap();
    let tx = Transmitter::start_with_client_keys(
        SSF_AUDIENCE,
        "gateway-client",
        client_keys,
        Duration::from_secs(60),
    )
    .await;
    let table = format!(
        "[[shared_signals]]\ntransmitter = \"{}\"\naudience = \"{SSF_AUDIENCE}\"\n\
         token_url = \"{}\"\nclient_id = \"gateway-client\"\n\
         token_auth_method = \"private_key_jwt\"\nprivate_key_file = \"ssf-client.pem\"\n\
         private_key_id = \"gw-key-1\"\nprivate_key_algorithm = \"ES256\"\n\
         token_issuers = [\"{ISSUER}\"]\npoll_interval = 1\n",
        tx.issuer(),
        tx.token_endpoint()
    );
    let gw = start_gateway(&fixture, &table, None).await;
    wait_ready(&gw).await;
    assert_eq!(tx.client_authentication(), Some("private_key_jwt"));
    polled_revocations_are_refused(&fixture, &tx, &gw).await;
    gw.shutdown().await;
}
