//! `helloworld.Greeter`, written by hand: what `tonic-build` would generate from
//!
//! ```proto
//! package helloworld;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! so that nothing needs `protoc`. Shared by `examples/tonic_greeter.rs` and `tests/stacks.rs`.
#![allow(dead_code)]

use http::uri::PathAndQuery;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};
use tollgate::layer::VerifiedClaims;
use tonic::Status;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::Channel;
use tonic_prost::ProstCodec;
use tower::Service;

/// The method's path.
pub(crate) const SAY_HELLO_PATH: &str = "/helloworld.Greeter/SayHello";

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

/// The server half of `helloworld.Greeter`: routes by path to one `Grpc` handler per method.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GreeterServer;

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

/// Calls `SayHello` on `channel`, with `authorization: Bearer <token>` when a token is given.
pub(crate) async fn say_hello(
    channel: Channel,
    token: Option<&str>,
    name: &str,
) -> Result<String, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    let mut request = tonic::Request::new(HelloRequest {
        name: name.to_owned(),
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the token cannot be sent as metadata"))?;
        request.metadata_mut().insert("authorization", value);
    }
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
    // Encodes requests, decodes replies: the mirror image of the server's codec.
    let codec = ProstCodec::<HelloRequest, HelloReply>::default();
    let reply = client
        .unary(request, PathAndQuery::from_static(SAY_HELLO_PATH), codec)
        .await?;
    Ok(reply.into_inner().message)
}
