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
//! The messages and the server glue are what `tonic-build` would generate from
//!
//! ```proto
//! package helloworld;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! written by hand so that the example builds on a machine without `protoc`.

use http::uri::PathAndQuery;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tollgate::core::jws;
use tollgate::core::{
    Audience, Claims, KeySet, RevocationEvent, RevocationIndex, SigningAlgorithm, SigningKey,
    UnixMillis,
};
use tollgate::layer::{RequireScopeLayer, ValidateBearerLayer, VerifiedClaims, Verifier};
use tonic::Status;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::{Channel, Server};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder};

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "greeter";
/// Every call to this server needs this scope.
const REQUIRED_SCOPE: &str = "greeter:hello";
const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);
const DEFAULT_ADDR: &str = "127.0.0.1:50051";
const SAY_HELLO_PATH: &str = "/helloworld.Greeter/SayHello";

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| DEFAULT_ADDR.to_owned())
        .parse()
        .expect("ADDR is a socket address such as 127.0.0.1:50051");
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("server") => {
            serve(addr).await;
            ExitCode::SUCCESS
        }
        Some("client") => call_say_hello(addr, args.next(), args.next()).await,
        Some(other) => {
            eprintln!("unknown mode {other:?}: expected `server` or `client [token] [name]`");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr) {
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
        .unwrap_or_else(|e| panic!("cannot serve on {addr}: {e}"));
}

/// The server half of `helloworld.Greeter`: routes by path to one `Grpc` handler per method.
#[derive(Clone, Copy, Debug)]
struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = "helloworld.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl Service<http::Request<Body>> for GreeterServer {
    type Response = http::Response<Body>;
    // A gRPC failure is a response carrying a status, never a transport error.
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            SAY_HELLO_PATH => Box::pin(async move {
                // Encodes replies, decodes requests.
                let codec = ProstCodec::<HelloReply, HelloRequest>::default();
                Ok(Grpc::new(codec).unary(SayHello, request).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

/// The `SayHello` method.
struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = Ready<Result<tonic::Response<HelloReply>, Status>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        // tonic keeps the HTTP request's extensions, so the layer's claims are here.
        let Some(claims) = request.extensions().get::<VerifiedClaims>() else {
            // Only reachable if the layer were removed from the server.
            return ready(Err(Status::unauthenticated("no verified token")));
        };
        let name = match request.get_ref().name.as_str() {
            "" => "stranger",
            name => name,
        };
        let message = format!("Hello, {name}! (token subject: {})", claims.sub);
        ready(Ok(tonic::Response::new(HelloReply { message })))
    }
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
    let mut client = tonic::client::Grpc::new(channel);
    let mut request = tonic::Request::new(HelloRequest {
        name: name.unwrap_or_else(|| "tollgate".to_owned()),
    });
    if let Some(token) = token {
        match format!("Bearer {token}").parse() {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(e) => {
                eprintln!("the token cannot be sent as metadata: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = client.ready().await {
        eprintln!("the connection to {addr} is not ready: {e}");
        return ExitCode::FAILURE;
    }
    // Encodes requests, decodes replies: the mirror image of the server's codec.
    let codec = ProstCodec::<HelloRequest, HelloReply>::default();
    let path = PathAndQuery::from_static(SAY_HELLO_PATH);
    match client.unary(request, path, codec).await {
        Ok(reply) => {
            println!("OK: {}", reply.get_ref().message);
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
    // Unique per token and per run, so revoking one demo token never hits another.
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let jti = format!(
        "demo-{}-{}-{}",
        std::process::id(),
        now.0,
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let claims = Claims {
        iss: ISSUER.to_owned(),
        sub: subject.to_owned(),
        aud: Audience::One(AUDIENCE.to_owned()),
        exp: now.saturating_add(TOKEN_LIFETIME).as_secs(),
        iat: now.as_secs(),
        nbf: None,
        jti: jti.clone(),
        client_id: "demo-client".to_owned(),
        scope: scope.to_owned(),
        tenant: None,
        roles: Vec::new(),
        grant_id: None,
        // The millisecond issue instant lets revocation cutoffs be judged precisely.
        issued_at_ms: Some(now.0),
        extra: serde_json::Map::new(),
    };
    let token = jws::encode(key, jws::ACCESS_TOKEN_TYP, &claims).expect("sign a demo token");
    DemoToken { jti, token }
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
