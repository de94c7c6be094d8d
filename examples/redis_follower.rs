//! An axum API whose Layer follows a remote token service through Redis: a token revoked at
//! `tollgate serve` (or published with `tollgate revoke`) is refused here within milliseconds.
//!
//! The token service runs with a `[replication]` table; this process only needs the same Redis,
//! the issuer's URL (its keys come from its JWKS) and the audience:
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/ ISSUER=http://127.0.0.1:8080 \
//!     cargo run --example redis_follower --features axum
//! ```
//!
//! Environment: `REDIS_URL` (required; `TOLLGATE_REDIS_PASSWORD` overrides its password),
//! `ISSUER` (required: the tokens' `iss`), `JWKS_URL` (default `$ISSUER/.well-known/jwks.json`),
//! `AUDIENCE` (default `$ISSUER`, tollgate's default audience), `ADDR` (default
//! `127.0.0.1:3002`). Route: `GET /hello`, answering the token's subject.

use axum::Router;
use axum::routing::get;
use std::process::ExitCode;
use std::sync::Arc;
use tollgate::core::RevocationIndex;
use tollgate::layer::{RemoteJwks, ValidateBearerLayer, VerifiedClaims, Verifier};
use tollgate_redis::{Follower, HealthPolicy, RedisTarget};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis_follower: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
    let issuer = env("ISSUER")?;
    let jwks_url = env("JWKS_URL")
        .unwrap_or_else(|_| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
    let audience = env("AUDIENCE").unwrap_or_else(|_| issuer.clone());
    let addr = env("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    // The target's Display never shows the password, so it is safe in messages.
    let mut target = RedisTarget::new(&env("REDIS_URL")?).map_err(|e| e.to_string())?;
    if let Ok(password) = std::env::var("TOLLGATE_REDIS_PASSWORD") {
        target = target.with_password(&password).map_err(|e| e.to_string())?;
    }

    // The index the Layer consults, fed by the stream: revocations made anywhere land here.
    let index = Arc::new(RevocationIndex::new());
    let feed = Follower::new(target, index.clone())
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let jwks_uri = jwks_url.parse().map_err(|e| format!("JWKS_URL: {e}"))?;
    let jwks = RemoteJwks::builder(jwks_uri)
        .build()
        .map_err(|e| e.to_string())?;
    let verifier = Verifier::builder()
        .issuer(issuer)
        .audience(audience)
        .remote_jwks(jwks)
        .revocation_index(index)
        .build()
        .map_err(|e| e.to_string())?;
    // Until the feed has synced (and if Redis stays silent too long) the Layer answers 503
    // rather than accept a token that may have been revoked: the default policy fails closed.
    let layer = ValidateBearerLayer::new(verifier)
        .readiness(Arc::new(feed.health(HealthPolicy::default())));

    let app = Router::new().route("/hello", get(hello)).route_layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// Reaching this handler means the token verified and is not revoked anywhere.
async fn hello(claims: VerifiedClaims) -> String {
    format!("hello, {}\n", claims.sub)
}
