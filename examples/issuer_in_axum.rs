//! tollgate's token service mounted inside an axum app, beside the app's own Layer-protected
//! routes. Both share one `RevocationIndex` and one `KeySet`: a revocation answered `200` by
//! `/connect/revocation` is refused by the app's Layer on the very next request.
//!
//! Run it with `cargo run --example issuer_in_axum --features axum,issuer` and follow the curl
//! commands it prints. `ADDR` overrides the listen address (default `127.0.0.1:3004`).
//!
//! Routes: `GET /orders` (the app's, needs a token with `orders:read`); everything else falls
//! through to the `TokenService` (`/connect/token`, `/connect/revocation`, discovery, JWKS, ...).

use axum::Router;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use tollgate::core::{KeySet, RevocationIndex, SigningAlgorithm};
use tollgate::issuer::{Client, ClientSecret, GrantType, StaticDirectory, TokenService};
use tollgate::layer::{RequireScopeLayer, ValidateBearerLayer, VerifiedClaims, Verifier};
use tollgate::sqlite::SqliteStore;

const AUDIENCE: &str = "orders-api";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("issuer_in_axum: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3004".into());
    let issuer = format!("http://{addr}");
    let keys = KeySet::generate(SigningAlgorithm::EdDSA, "app-key-1")?;
    let index = Arc::new(RevocationIndex::new());

    // The app's clients; a real app would implement `Clients`/`Users` over its own database.
    let directory = Arc::new(StaticDirectory::new(
        // Demo only: in production give an argon2id hash (`ClientSecret::argon2`).
        [
            Client::new("svc", ClientSecret::from_plaintext("svc-secret"))
                .with_grants([GrantType::ClientCredentials])
                .with_scopes(["orders:read"])
                .with_audience([AUDIENCE]),
        ],
        [],
    )?);
    let tokens = TokenService::builder()
        .issuer(&issuer)
        .audience(AUDIENCE)
        .keys(keys.clone())
        .revocation_index(index.clone())
        .store(Arc::new(SqliteStore::open("target/issuer-in-axum-data")?))
        .clients(directory.clone())
        .users(directory)
        .build()
        .await?;
    let _purge = tokens.spawn_purge(std::time::Duration::from_secs(60));

    // The app's own Layer: same keys, same index.
    let verifier = Verifier::builder()
        .issuer(&issuer)
        .audience(AUDIENCE)
        .keys(keys)
        .revocation_index(index)
        .build()?;
    let app = Router::new()
        .route(
            "/orders",
            get(|claims: VerifiedClaims| async move {
                axum::Json(json!({"orders": [], "for": claims.sub}))
            }),
        )
        // `route_layer`: only the app's routes need a token, not the token endpoint.
        .route_layer(RequireScopeLayer::new("orders:read"))
        .route_layer(ValidateBearerLayer::new(verifier))
        .fallback_service(tokens);

    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (set ADDR to listen elsewhere)"))?;
    println!("listening on {issuer}\n");
    println!(
        "TOKEN=$(curl -s -u svc:svc-secret -d grant_type=client_credentials {issuer}/connect/token | jq -r .access_token)"
    );
    println!("curl -i -H \"Authorization: Bearer $TOKEN\" {issuer}/orders                 # 200");
    println!("curl -i -u svc:svc-secret -d token=$TOKEN {issuer}/connect/revocation     # 200");
    println!(
        "curl -i -H \"Authorization: Bearer $TOKEN\" {issuer}/orders                 # 401, revoked"
    );
    axum::serve(listener, app).await?;
    Ok(())
}
