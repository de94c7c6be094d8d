//! An axum API whose routes are protected by `ValidateBearerLayer`, with a scope-gated route and
//! revocation that takes effect on the very next request.
//!
//! Run it with `cargo run --example axum_api --features axum`; it prints two demo tokens and the
//! curl commands to try. `ADDR` overrides the listen address (default `127.0.0.1:3001`).
//!
//! Routes:
//!
//! * `GET /health`: unprotected.
//! * `GET /me`: any valid token; answers with the token's subject and scopes.
//! * `GET /orders`: a valid token carrying the `orders:read` scope (403 otherwise).
//! * `POST /demo/revoke/{jti}`: **demo only, unprotected**: revokes a token by its `jti`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tollgate::core::jws;
use tollgate::core::{
    Audience, Claims, KeySet, RevocationEvent, RevocationIndex, SigningAlgorithm, SigningKey,
    UnixMillis,
};
use tollgate::layer::{RequireScopeLayer, ValidateBearerLayer, VerifiedClaims, Verifier};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "orders-api";
/// How long the demo tokens live. Revocations of demo tokens are kept this long too: after that
/// the token has expired anyway, so the index can forget it.
const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // In production the keys belong to the issuer (`tollgate serve`, or `TokenService` mounted in
    // an app as in `examples/issuer_in_axum.rs`) and the API only holds its public half (a
    // `RemoteJwks`); to run on its own, this example plays both parts.
    let keys =
        KeySet::generate(SigningAlgorithm::EdDSA, "demo-key-1").expect("generate an Ed25519 key");
    // One index shared by the verifier and whoever revokes: here the demo route, in a real
    // deployment an in-process issuer or a replication feed.
    let index = Arc::new(RevocationIndex::new());
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys.clone())
        .revocation_index(index.clone())
        .build()
        .expect("the verifier configuration is complete");
    // Revocations of expired tokens are dead weight: forget them in the background.
    tollgate::layer::spawn_index_purge(&index, verifier.clock().clone(), Duration::from_secs(60));

    let signing_key = keys.signing_key().expect("the key set has a signing key");
    let now = verifier.clock().now();
    let reader = mint_token(&signing_key, now, "alice", "profile orders:read");
    let viewer = mint_token(&signing_key, now, "bob", "profile");

    let app = app(verifier, index);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("axum_api: cannot listen on {addr}: {e} (set ADDR to listen elsewhere)");
            return std::process::ExitCode::FAILURE;
        }
    };
    print_instructions(&addr, &reader, &viewer);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("axum_api: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// The application: protected routes behind the layer, open routes beside them.
fn app(verifier: Verifier, index: Arc<RevocationIndex>) -> Router {
    // `route_layer`, not `layer`: the layers then run only for routes that match, so an unknown
    // path answers 404 instead of asking for a token. `RequireScopeLayer` sits *inside*
    // `ValidateBearerLayer` because it reads the claims the latter puts in the extensions.
    let protected = Router::new()
        .route("/me", get(me))
        .route(
            "/orders",
            get(orders).route_layer(RequireScopeLayer::new("orders:read")),
        )
        .route_layer(ValidateBearerLayer::new(verifier));

    Router::new()
        .route("/health", get(|| async { "ok" }))
        // DEMO ONLY: anyone can revoke any token here. A real deployment revokes through the
        // issuer's authenticated revocation endpoint (RFC 7009) and feeds the index from it.
        .route("/demo/revoke/{jti}", post(revoke))
        .with_state(index)
        .merge(protected)
}

/// Who the caller is, as the verified token says.
async fn me(claims: VerifiedClaims) -> Json<Value> {
    Json(json!({
        "sub": claims.sub,
        "client_id": claims.client_id,
        "scopes": claims.scopes().collect::<Vec<_>>(),
        "jti": claims.jti,
    }))
}

/// Reaching this handler means the token carried `orders:read`: no scope check here.
async fn orders(claims: VerifiedClaims) -> Json<Value> {
    Json(json!({
        "owner": claims.sub,
        "orders": [
            { "id": 1001, "item": "espresso beans", "quantity": 2 },
            { "id": 1002, "item": "grinder", "quantity": 1 },
        ],
    }))
}

async fn revoke(State(index): State<Arc<RevocationIndex>>, Path(jti): Path<String>) -> Json<Value> {
    // The route knows only the `jti`, not the token's `exp`; every demo token expires within
    // TOKEN_LIFETIME from now, so keeping the entry that long is enough.
    let expires_at = UnixMillis::from(std::time::SystemTime::now()).saturating_add(TOKEN_LIFETIME);
    // Not `apply`'s answer: re-applying with a later expiry counts as a change.
    let already_revoked = index.is_token_revoked(&jti);
    index.apply(&RevocationEvent::Token {
        jti: jti.clone(),
        expires_at,
    });
    Json(json!({ "revoked": jti, "already_revoked": already_revoked }))
}

/// A signed RFC 9068 access token, as an issuer would mint it.
fn mint_token(key: &SigningKey, now: UnixMillis, subject: &str, scope: &str) -> DemoToken {
    let mut claims = Claims::new(
        ISSUER,
        subject,
        Audience::One(AUDIENCE.to_owned()),
        "demo-client",
        now,
        TOKEN_LIFETIME,
    );
    claims.scope = scope.to_owned();
    let token = jws::encode(key, jws::ACCESS_TOKEN_TYP, &claims).expect("sign a demo token");
    DemoToken {
        jti: claims.jti,
        token,
    }
}

struct DemoToken {
    jti: String,
    token: String,
}

fn print_instructions(addr: &str, reader: &DemoToken, viewer: &DemoToken) {
    let minutes = TOKEN_LIFETIME.as_secs() / 60;
    println!("axum_api listening on http://{addr}");
    println!();
    println!("Demo tokens, valid for {minutes} minutes (paste the export lines into your shell):");
    println!(
        "# alice, scopes \"profile orders:read\", jti {}",
        reader.jti
    );
    println!("export READER={}", reader.token);
    println!("# bob, scope \"profile\", jti {}", viewer.jti);
    println!("export VIEWER={}", viewer.token);
    println!();
    println!("Try:");
    let bearer = |who: &str| format!("-H \"Authorization: Bearer ${who}\" ");
    let tries = [
        (
            format!("curl -i http://{addr}/health"),
            "200, no token needed",
        ),
        (format!("curl -i http://{addr}/me"), "401, no token"),
        (
            format!("curl -i {}http://{addr}/me", bearer("READER")),
            "200, alice",
        ),
        (
            format!("curl -i {}http://{addr}/orders", bearer("READER")),
            "200, alice has orders:read",
        ),
        (
            format!("curl -i {}http://{addr}/orders", bearer("VIEWER")),
            "403 insufficient_scope",
        ),
        (
            format!("curl -i -X POST http://{addr}/demo/revoke/{}", reader.jti),
            "revokes alice's token",
        ),
        (
            format!("curl -i {}http://{addr}/me", bearer("READER")),
            "401 token revoked",
        ),
    ];
    for (command, expect) in tries {
        println!("  {command:<72} # {expect}");
    }
}
