//! A gateway trusting two issuers (`[[issuers]]`), each with its keys served by its own JWKS
//! endpoint on a local socket: each issuer's tokens pass, a third issuer's do not, a route that
//! names one issuer refuses the other's tokens (proxied and through forward-auth), and an
//! issuer's cutoff leaves the same subject at the other issuer alone. Plus the configuration
//! errors of the two forms.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use support::*;
use tokio::net::TcpListener;
use tollgate_core::{
    Audience, Claims, CutoffScope, KeySet, RevocationEvent, SigningAlgorithm, SigningKey,
    UnixMillis, jws,
};

const ISSUER_A: &str = "https://a.id.test";
const ISSUER_B: &str = "https://b.id.test";

/// A JWKS endpoint on 127.0.0.1 serving `keys`' public keys; stops with the test's runtime.
async fn jwks_endpoint(keys: &KeySet) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(serde_json::to_vec(&keys.to_jwks()).unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A token of `iss` for `alice` of client `app`, signed by `key`.
fn token(key: &SigningKey, iss: &str) -> String {
    let claims = Claims::new(
        iss,
        "alice",
        Audience::One(AUDIENCE.into()),
        "app",
        UnixMillis::from(SystemTime::now()),
        Duration::from_secs(3600),
    );
    jws::encode(key, jws::ACCESS_TOKEN_TYP, &claims).unwrap()
}

fn key_set() -> KeySet {
    // Both issuers name their key `k1`: only the issuer a token claims may verify it.
    KeySet::generate(SigningAlgorithm::EdDSA, "k1").unwrap()
}

/// The `error_description` of a 401's challenge.
fn refusal(answer: &Answer) -> &str {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    let challenge = answer.header("www-authenticate").unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    challenge
        .split("error_description=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
}

async fn ready(ops: SocketAddr) {
    let start = Instant::now();
    while send(ops, "GET", "/readyz", &[]).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "both issuers' keys fetched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_issuers_each_with_its_jwks_and_a_route_for_one() {
    let (a_keys, b_keys) = (key_set(), key_set());
    let (a_jwks, b_jwks) = (jwks_endpoint(&a_keys).await, jwks_endpoint(&b_keys).await);
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\n\
         [ops]\nlisten = \"127.0.0.1:0\"\n\
         [forward_auth]\npath = \"/auth\"\nproxy = \"traefik\"\n\
         [[issuers]]\nissuer = \"{ISSUER_A}\"\naudience = [\"{AUDIENCE}\"]\n\
         jwks_url = \"http://{a_jwks}/jwks.json\"\nalgorithms = [\"EdDSA\"]\n\
         [[issuers]]\nissuer = \"{ISSUER_B}\"\naudience = [\"{AUDIENCE}\"]\n\
         jwks_url = \"http://{b_jwks}/jwks.json\"\n\
         [[upstreams]]\nname = \"app\"\nurl = \"http://{}\"\n\
         [[routes]]\nprefix = \"/api\"\n\
         [[routes]]\nprefix = \"/a-only\"\nissuers = [\"{ISSUER_A}\"]\n",
        up.addr
    );
    let config = tollgate_gateway::config::parse(&text, &dir.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let gw = tollgate_gateway::start(config).await.unwrap();
    let (addr, ops) = (gw.local_addr(), gw.ops_addr());
    ready(ops).await;

    let from_a = bearer(&token(&a_keys.signing_key().unwrap(), ISSUER_A));
    let from_b = bearer(&token(&b_keys.signing_key().unwrap(), ISSUER_B));
    let get = |path: &'static str, auth: String| async move {
        send(addr, "GET", path, &[("authorization", &auth)]).await
    };

    for auth in [&from_a, &from_b] {
        let a = get("/api/x", auth.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.echoed()["headers"]["x-auth-subject"], "alice");
    }
    let third = bearer(&token(&a_keys.signing_key().unwrap(), "https://c.id.test"));
    assert_eq!(refusal(&get("/api/x", third).await), "wrong issuer");
    let forged = bearer(&token(&a_keys.signing_key().unwrap(), ISSUER_B));
    assert_eq!(
        refusal(&get("/api/x", forged).await),
        "invalid signature",
        "A's k1 never verifies a token claiming B"
    );

    // The route for A alone: B's valid token is refused as a token of an unknown issuer is,
    // proxied and through forward-auth.
    assert_eq!(
        get("/a-only/x", from_a.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        refusal(&get("/a-only/x", from_b.clone()).await),
        "wrong issuer"
    );
    let ask = |auth: String| async move {
        send(
            addr,
            "GET",
            "/auth",
            &[
                ("authorization", &auth),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/a-only/x"),
            ],
        )
        .await
    };
    let allowed = ask(from_a.clone()).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.header("x-auth-subject"), Some("alice"));
    assert_eq!(refusal(&ask(from_b.clone()).await), "wrong issuer");

    // B ends alice's sessions: alice at A is another person, untouched.
    gw.revocation_index().apply(&RevocationEvent::IssuerCutoff {
        issuer: ISSUER_B.into(),
        scope: CutoffScope::Subject("alice".into()),
        issued_before: UnixMillis::from(SystemTime::now() + Duration::from_secs(1)),
    });
    assert_eq!(
        refusal(&get("/api/x", from_b).await),
        "token revoked (issued before a revocation cutoff)"
    );
    assert_eq!(get("/api/x", from_a).await.status, StatusCode::OK);

    let metrics = send(ops, "GET", "/metrics", &[]).await.body;
    for sample in [
        // The third issuer, the forged token, B on /a-only twice.
        "tollgate_gateway_rejections_total{reason=\"invalid_token\"} 4",
        "tollgate_gateway_rejections_total{reason=\"revoked\"} 1",
        "tollgate_gateway_jwks_fetches_total 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "{sample} missing:\n{metrics}"
        );
    }
    gw.shutdown().await;
}

/// The error `parse` gives for `text` as `gateway.toml` in `dir`.
fn config_error(text: &str, dir: &Path) -> String {
    let error = tollgate_gateway::config::parse(text, &dir.join("gateway.toml"))
        .expect_err(text)
        .to_string();
    assert!(!error.contains('\n'), "{error}");
    error
}

#[test]
fn configuration_errors_of_several_issuers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml").display().to_string();
    let issuer = |iss: &str| {
        format!(
            "[[issuers]]\nissuer = \"{iss}\"\naudience = [\"api\"]\njwks_url = \"http://127.0.0.1:1/jwks\"\n"
        )
    };
    let two = format!("{}{}", issuer(ISSUER_A), issuer(ISSUER_B));
    let cases: &[(String, &str)] = &[
        (
            format!("issuer = \"{ISSUER_A}\"\n{two}"),
            ":1:10: issuer: set either issuer, audience and [keys] (one issuer) or [[issuers]] \
             (several), not both",
        ),
        (
            format!("{two}[keys]\njwks_url = \"http://127.0.0.1:1/jwks\"\n"),
            ":9:1: keys: set either issuer, audience and [keys]",
        ),
        (
            format!("{}{}", issuer(ISSUER_A), issuer(ISSUER_A)),
            ":6:10: issuers[1].issuer: `https://a.id.test` is configured twice",
        ),
        (
            format!(
                "{two}[[routes]]\nprefix = \"/x\"\nissuers = [\"{ISSUER_A}\", \"https://c\"]\n"
            ),
            ":11:33: routes[0].issuers: `https://c` is not a configured issuer",
        ),
        (
            format!("{two}[[routes]]\nprefix = \"/x\"\nissuers = []\n"),
            ":11:11: routes[0].issuers: name at least one issuer",
        ),
        (
            format!(
                "{two}[[routes]]\nprefix = \"/x\"\npublic = true\nissuers = [\"{ISSUER_A}\"]\n"
            ),
            ":10:10: routes[0].public: a public route cannot also require scopes, roles, a \
             tenant or issuers",
        ),
        (
            format!("{two}[[issuers]]\nissuer = \"https://c\"\naudience = [\"api\"]\n"),
            ":9:1: issuers[2]: set exactly one of jwks_url, discovery_url, jwks_file, files",
        ),
        (
            format!(
                "{two}[[issuers]]\nissuer = \"https://c\"\naudience = [\"api\"]\njwks_file = \"none.json\"\n"
            ),
            ":12:13: issuers[2].jwks_file: cannot read",
        ),
        (
            format!(
                "{two}[[issuers]]\nissuer = \"https://c\"\naudience = []\njwks_url = \"http://c/\"\n"
            ),
            ":11:12: issuers[2].audience: name at least one audience",
        ),
        (
            format!(
                "{two}[[issuers]]\nissuer = \"https://c\"\naudience = [\"api\"]\njwks_url = \"http://c/\"\nalgorithms = [\"none\"]\n"
            ),
            ":13:15: issuers[2].algorithms: must be EdDSA, ES256, RS256 or HS256",
        ),
        (
            "listen = \"127.0.0.1:0\"\n".to_owned(),
            ": missing field `issuer` (set issuer, audience and [keys], or [[issuers]])",
        ),
    ];
    for (text, expected) in cases {
        let error = config_error(text, dir.path());
        assert!(
            error.starts_with(&format!("{file}{expected}")),
            "{text}\n got: {error}\nwant: {file}{expected}"
        );
    }
    // The one-issuer form is unchanged, and a route may name its issuer.
    let one = format!(
        "issuer = \"{ISSUER_A}\"\naudience = [\"api\"]\n[keys]\njwks_url = \"http://127.0.0.1:1/jwks\"\n\
         [[routes]]\nprefix = \"/x\"\nissuers = [\"{ISSUER_A}\"]\n"
    );
    tollgate_gateway::config::parse(&one, &dir.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_several_issuers_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway-issuers.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    tollgate_gateway::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
}
