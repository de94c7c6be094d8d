//! A reverse proxy on plain hyper 1 that forwards only requests with a valid, unrevoked bearer
//! token, and tells the upstream who the caller is in `x-authenticated-subject`.
//!
//! Run it with `cargo run --example hyper_gateway`; it prints demo tokens and the curl commands
//! to try. Environment:
//!
//! * `ADDR`: where the gateway listens (default `127.0.0.1:3002`).
//! * `UPSTREAM`: the base URL requests are forwarded to (default `http://127.0.0.1:3003`); a path
//!   in it is a prefix (`http://host/api` forwards `/orders` to `/api/orders`).
//! * `DEMO_UPSTREAM`: `1` (default) also starts, in this process, an echo server on the
//!   upstream's address that answers with the request it received; `0` to proxy to your own.
//! * `HEADER_READ_TIMEOUT`: seconds a connection has to send a complete request head (default
//!   10); a connection that sends nothing is closed then too.
//! * `MAX_CONNECTIONS`: connections served at once (default 512); more wait in the backlog.
//!
//! The upstream must accept traffic from the gateway only: it trusts `x-authenticated-subject`
//! because nobody else can reach it.

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use hyper_util::service::TowerToHyperService;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tollgate::core::jws;
use tollgate::core::{
    Audience, Claims, KeySet, RevocationEvent, RevocationIndex, SigningAlgorithm, SigningKey,
    UnixMillis,
};
use tollgate::layer::{ValidateBearerLayer, VerifiedClaims, Verifier};
use tower::ServiceBuilder;

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "gateway";
const TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// How long the upstream may take to answer with its response head; the body then streams.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The subject of the verified token, set by the gateway for the upstream.
static AUTHENTICATED_SUBJECT: HeaderName = HeaderName::from_static("x-authenticated-subject");
static FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1): a proxy must not
/// forward them. `keep-alive` has no constant in `http`.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Every response body the gateway sends: the upstream's, streamed through, or its own short
/// ones. `BoxBody` implements `Default`, which the layer needs for its rejection responses.
type GatewayBody = BoxBody<Bytes, hyper::Error>;

#[path = "support/connections.rs"]
mod connections;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hyper_gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A whole number from the environment, or its default.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name} must be a positive whole number, not {value:?}")),
        Err(_) => Ok(default),
    }
}

async fn run() -> Result<(), String> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let upstream: Uri = std::env::var("UPSTREAM")
        .unwrap_or_else(|_| "http://127.0.0.1:3003".to_owned())
        .parse()
        .map_err(|_| "UPSTREAM must be a URL such as http://127.0.0.1:3003")?;
    let upstream = Upstream::new(&upstream)?;
    let limits = connections::Limits {
        header_read_timeout: Duration::from_secs(env_number("HEADER_READ_TIMEOUT", 10u64)?),
        max_connections: env_number("MAX_CONNECTIONS", 512usize)?,
    };
    if limits.header_read_timeout.is_zero() || limits.max_connections == 0 {
        return Err("HEADER_READ_TIMEOUT and MAX_CONNECTIONS must be at least 1".into());
    }

    // Demo keys: the gateway mints its own tokens so that it runs on its own. In front of
    // tollgate's token service (`tollgate serve`) or any other issuer, verify with its published
    // keys instead:
    //
    //     let jwks = RemoteJwks::builder("https://id.example.com/.well-known/jwks.json".parse()?)
    //         .build()?;
    //     let verifier = Verifier::builder().issuer(..).audience(..).remote_jwks(jwks)...
    //
    // and feed the revocation index from the issuer (in process, or its replication feed).
    let keys =
        KeySet::generate(SigningAlgorithm::EdDSA, "demo-key-1").expect("generate an Ed25519 key");
    let index = Arc::new(RevocationIndex::new());
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(keys.clone())
        .revocation_index(index.clone())
        // A gateway sees the same token on every request of a session: skip re-verifying the
        // signature of a token it has already verified. Revocation is still checked every time.
        .cache_verified_tokens(10_000)
        .build()
        .expect("the verifier configuration is complete");
    tollgate::layer::spawn_index_purge(&index, verifier.clock().clone(), Duration::from_secs(60));

    let signing_key = keys.signing_key().expect("the key set has a signing key");
    let now = UnixMillis::from(std::time::SystemTime::now());
    let valid = mint_token(&signing_key, now, "alice");
    let revoked = mint_token(&signing_key, now, "mallory");
    // Revoked before it is ever used, to show what a revoked token gets.
    index.apply(&RevocationEvent::Token {
        jti: revoked.jti,
        expires_at: now.saturating_add(TOKEN_LIFETIME),
    });

    if demo_upstream_enabled() {
        let listener = TcpListener::bind(&upstream.bind_addr).await.map_err(|e| {
            format!(
                "cannot start the demo upstream on {}: {e} (set DEMO_UPSTREAM=0 to use your own, \
                 or UPSTREAM to move it)",
                upstream.bind_addr
            )
        })?;
        tokio::spawn(connections::serve(
            listener,
            hyper::service::service_fn(echo),
            limits,
        ));
    }

    let proxy = Proxy {
        client: Client::builder(TokioExecutor::new()).build_http(),
        upstream: Arc::new(upstream),
    };
    let gateway = ServiceBuilder::new()
        .layer(ValidateBearerLayer::new(verifier))
        .service_fn(move |request| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.forward(request).await) }
        });

    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (set ADDR to listen elsewhere)"))?;
    print_instructions(&addr, &valid.token, &revoked.token);
    // HTTP/1.1 and HTTP/2 (prior knowledge) on the same port, with the connection limits.
    connections::serve(listener, TowerToHyperService::new(gateway), limits).await;
    Ok(())
}

/// Where requests go: the parts of `UPSTREAM` a forwarded URI is built from.
struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The path of `UPSTREAM` without its trailing `/`, prepended to every forwarded path.
    prefix: String,
    /// `host:port`, for the demo upstream to listen on.
    bind_addr: String,
}

impl Upstream {
    fn new(uri: &Uri) -> Result<Self, String> {
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        // The client below speaks plain HTTP only; an https upstream needs a TLS connector
        // (hyper-rustls) in place of `HttpConnector`.
        if scheme != Scheme::HTTP {
            return Err(format!("UPSTREAM must be an http:// URL, got {uri}"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or("UPSTREAM must have a host, as in http://127.0.0.1:3003")?;
        let bind_addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(Upstream {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            bind_addr,
        })
    }

    /// The upstream URI for a request to `path_and_query` on the gateway.
    fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let path_and_query = path_and_query.map_or("/", PathAndQuery::as_str);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_and_query}", self.prefix))
            .build()
    }
}

/// The inner service: forwards an accepted request and streams the answer back.
#[derive(Clone)]
struct Proxy {
    // The request body is streamed to the upstream as it arrives, never buffered.
    client: Client<HttpConnector, Incoming>,
    upstream: Arc<Upstream>,
}

impl Proxy {
    async fn forward(&self, request: Request<Incoming>) -> Response<GatewayBody> {
        let (mut parts, body) = request.into_parts();
        // The layer only calls this service with a verified token, so the claims are there.
        let Some(claims) = parts.extensions.remove::<VerifiedClaims>() else {
            return text_response(StatusCode::UNAUTHORIZED, "no verified token");
        };
        let uri = match self.upstream.uri_for(parts.uri.path_and_query()) {
            Ok(uri) => uri,
            Err(_) => return text_response(StatusCode::BAD_REQUEST, "unforwardable request URI"),
        };

        let original_host = parts
            .headers
            .get(HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| a.as_str().parse().ok()));
        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        // The client sets `Host` to the upstream's; the name the caller used goes along apart.
        headers.remove(HOST);
        if let Some(host) = original_host {
            headers.insert(FORWARDED_HOST.clone(), host);
        }
        // Dropped, not forwarded: the gateway has verified the token and vouches for the caller
        // in `x-authenticated-subject`, so the upstream never holds a bearer credential it could
        // leak in its logs or replay. An upstream that calls other APIs on the caller's behalf
        // would need it kept (or, better, exchanged for a token of its own).
        headers.remove(AUTHORIZATION);
        // `remove` drops every value the client may have sent: only the gateway sets this one.
        headers.remove(&AUTHENTICATED_SUBJECT);
        // `from_bytes` accepts any subject except one with control characters.
        match HeaderValue::from_bytes(claims.sub.as_bytes()) {
            Ok(subject) => {
                headers.insert(AUTHENTICATED_SUBJECT.clone(), subject);
            }
            Err(_) => {
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the token's subject cannot be sent in a header",
                );
            }
        }

        parts.uri = uri;
        // The upstream connection is HTTP/1.1 whatever the caller spoke; the legacy client
        // refuses to send an HTTP/2 request over it.
        parts.version = Version::HTTP_11;
        let upstream_request = Request::from_parts(parts, body);

        match tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(upstream_request)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(e)) => {
                eprintln!("upstream request failed: {e}");
                text_response(StatusCode::BAD_GATEWAY, "upstream unavailable")
            }
            Err(_) => text_response(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
        }
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop for this message too.
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// A short plain-text answer from the gateway itself.
fn text_response(status: StatusCode, text: &'static str) -> Response<GatewayBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn demo_upstream_enabled() -> bool {
    !matches!(
        std::env::var("DEMO_UPSTREAM").as_deref(),
        Ok("0" | "false" | "off" | "no")
    )
}

/// The demo upstream: answers every request with JSON describing what it received, so one can
/// see what the gateway forwarded.
async fn echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    /// The echo reads at most this much body: it is a demo, not a sink.
    const MAX_BODY: usize = 64 * 1024;
    let (parts, body) = request.into_parts();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into())
            .collect();
        headers.insert(name.as_str().to_owned(), Value::Array(values));
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(e) => format!("<unreadable body: {e}>"),
    };
    let echo = json!({
        "upstream_saw": {
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": body,
        }
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{echo:#}\n"))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A signed RFC 9068 access token, as an issuer would mint it.
fn mint_token(key: &SigningKey, now: UnixMillis, subject: &str) -> DemoToken {
    let mut claims = Claims::new(
        ISSUER,
        subject,
        Audience::One(AUDIENCE.to_owned()),
        "demo-client",
        now,
        TOKEN_LIFETIME,
    );
    claims.scope = "profile".to_owned();
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

fn print_instructions(addr: &str, valid: &str, revoked: &str) {
    let minutes = TOKEN_LIFETIME.as_secs() / 60;
    println!("hyper_gateway listening on http://{addr}");
    println!();
    println!("Demo tokens, valid for {minutes} minutes (paste the export lines into your shell):");
    println!("# alice");
    println!("export TOKEN={valid}");
    println!("# mallory, revoked at start-up");
    println!("export REVOKED={revoked}");
    println!();
    println!("Try:");
    let bearer = |who: &str| format!("-H \"Authorization: Bearer ${who}\" ");
    let tries = [
        (
            format!("curl -i http://{addr}/orders?page=2"),
            "401, no token",
        ),
        (
            format!("curl -i {}http://{addr}/orders?page=2", bearer("TOKEN")),
            "200, the upstream saw alice and no Authorization",
        ),
        (
            format!(
                "curl -i {}-H \"x-authenticated-subject: admin\" -d hello http://{addr}/orders",
                bearer("TOKEN")
            ),
            "200, the spoofed subject is replaced",
        ),
        (
            format!("curl -i {}http://{addr}/orders", bearer("REVOKED")),
            "401 token revoked",
        ),
    ];
    for (command, expect) in tries {
        println!("  {command}");
        println!("      # {expect}");
    }
    println!(
        "With DEMO_UPSTREAM=0 and nothing on the upstream address, accepted requests get 502."
    );
}
