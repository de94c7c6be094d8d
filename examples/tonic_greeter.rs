//! A tonic gRPC service behind `ValidateBearerLayer`, written without `protoc` or a build script,
//! with a client mode so it can be tried without grpcurl.
//!
//! ```text
//! cargo run --example tonic_greeter                          # server; prints demo tokens
//! cargo run --example tonic_greeter -- client <token> [name] # calls SayHello with the token
//! cargo run --example tonic_greeter -- client                # calls SayHello without a token
//! ```
//!
//! `ADDR` sets the address the server listens on and the client connects to (default
//! `127.0.0.1:50051`).
//!
//! The protocol (`helloworld.Greeter`) is written by hand in `examples/support/greeter.rs`, so the
//! example builds on a machine without `protoc`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tollgate::core::jws;
use tollgate::core::{
    Audience, Claims, KeySet, RevocationEvent, RevocationIndex, SigningAlgorithm, SigningKey,
    UnixMillis,
};
use tollgate::layer::{RequireScopeLayer, ValidateBearerLayer, Verifier};
use tonic::transport::{Channel, Server};
use tower::ServiceBuilder;

#[path = "support/greeter.rs"]
mod greeter;
use greeter::GreeterServer;

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "greeter";
/// Every call to this server needs this scope.
const REQUIRED_SCOPE: &str = "greeter:hello";
const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);
const DEFAULT_ADDR: &str = "127.0.0.1:50051";

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!(
            "tonic_greeter: ADDR must be a socket address such as {DEFAULT_ADDR}, not {addr:?}"
        );
        return ExitCode::FAILURE;
    };
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("server") => match serve(addr).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "tonic_greeter: cannot serve on {addr}: {e} (set ADDR to listen elsewhere)"
                );
                ExitCode::FAILURE
            }
        },
        Some("client") => call_say_hello(addr, args.next(), args.next()).await,
        Some(other) => {
            eprintln!("unknown mode {other:?}: expected `server` or `client [token] [name]`");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) -> Result<(), tonic::transport::Error> {
    // The example plays the issuer too: it owns the signing key and mints demo tokens. A real
    // service would verify with the issuer's published keys (`RemoteJwks`).
    let keys =
        KeySet::generate(SigningAlgorithm::EdDSA, "demo-key-1").expect("generate an Ed25519 key");
    let index = Arc::new(RevocationIndex::new());
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys.clone())
        .revocation_index(index.clone())
        .build()
        .expect("the verifier configuration is complete");
    tollgate::layer::spawn_index_purge(&index, verifier.clock().clone(), Duration::from_secs(60));

    let signing_key = keys.signing_key().expect("the key set has a signing key");
    let now = UnixMillis::from(std::time::SystemTime::now());
    let valid = mint_token(&signing_key, now, "alice", REQUIRED_SCOPE);
    let no_scope = mint_token(&signing_key, now, "bob", "profile");
    let revoked = mint_token(&signing_key, now, "carol", REQUIRED_SCOPE);
    // Revoked before it is ever used, to show what a revoked token gets.
    index.apply(&RevocationEvent::Token {
        jti: revoked.jti,
        expires_at: now.saturating_add(TOKEN_LIFETIME),
    });

    print_instructions(addr, &valid.token, &no_scope.token, &revoked.token);

    // `Server::layer` wraps every service of the server, after tonic's routing. The scope check
    // sits inside the token check, which puts the claims it reads into the extensions. Unknown
    // methods are answered by the router (status 12) only once the token passed.
    let auth = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(verifier))
        .layer(RequireScopeLayer::new(REQUIRED_SCOPE));
    Server::builder()
        .layer(auth)
        .add_service(GreeterServer)
        .serve(addr)
        .await
}

/// Client mode: one `SayHello` call, with `authorization: Bearer <token>` when a token is given.
async fn call_say_hello(addr: SocketAddr, token: Option<String>, name: Option<String>) -> ExitCode {
    let channel = match Channel::from_shared(format!("http://{addr}")) {
        Ok(endpoint) => match endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => {
                eprintln!("cannot connect to {addr}: {e} (is the server running?)");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("bad server address {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = name.unwrap_or_else(|| "tollgate".to_owned());
    match greeter::say_hello(channel, token.as_deref(), &name).await {
        Ok(message) => {
            println!("OK: {message}");
            ExitCode::SUCCESS
        }
        Err(status) => {
            let code = status.code();
            println!(
                "refused: grpc-status {} ({code:?}): {}",
                code as i32,
                status.message()
            );
            ExitCode::FAILURE
        }
    }
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

fn print_instructions(addr: SocketAddr, valid: &str, no_scope: &str, revoked: &str) {
    let minutes = TOKEN_LIFETIME.as_secs() / 60;
    // The client must reach the same address the server listens on.
    let env = if addr.to_string() == DEFAULT_ADDR {
        String::new()
    } else {
        format!("ADDR={addr} ")
    };
    let run = format!("{env}cargo run --example tonic_greeter -- client");
    println!(
        "tonic_greeter serving helloworld.Greeter on {addr} (every call needs scope {REQUIRED_SCOPE})"
    );
    println!();
    println!("Demo tokens, valid for {minutes} minutes (paste the export lines into your shell):");
    println!("# alice, scope {REQUIRED_SCOPE}");
    println!("export VALID={valid}");
    println!("# bob, scope profile only");
    println!("export NO_SCOPE={no_scope}");
    println!("# carol, scope {REQUIRED_SCOPE}, but revoked at start-up");
    println!("export REVOKED={revoked}");
    println!();
    println!("Try, from another terminal:");
    let tries = [
        (format!("{run} \"$VALID\" Ferris"), "OK: Hello, Ferris!"),
        (run.clone(), "grpc-status 16, missing bearer token"),
        (
            format!("{run} \"$NO_SCOPE\""),
            "grpc-status 7, insufficient scope",
        ),
        (
            format!("{run} \"$REVOKED\""),
            "grpc-status 16, token revoked",
        ),
    ];
    for (command, expect) in tries {
        println!("  {command:<62} # {expect}");
    }
}
