//! The gateway's own short answers (refusals, upstream failures), shaped for gRPC clients as
//! trailers-only responses the way the Layer shapes its rejections.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Every response body the gateway sends: the upstream's, streamed through, or its own short
/// ones. `BoxBody` has a `Default`, which the Layer's rejection responses need.
pub type GatewayBody = BoxBody<Bytes, hyper::Error>;

/// An answer of one of the receivers (`Full`, never failing) as the gateway's body type.
pub(crate) fn from_full(response: Response<Full<Bytes>>) -> Response<GatewayBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// An empty body.
pub(crate) fn empty() -> GatewayBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A short, fixed, generic answer: plain text for HTTP, a trailers-only response with
/// `grpc-status` for gRPC requests.
pub(crate) fn refuse(
    grpc: Option<HeaderValue>,
    status: StatusCode,
    grpc_status: u8,
    text: &'static str,
) -> Response<GatewayBody> {
    let mut response;
    if let Some(grpc) = grpc {
        response = Response::new(empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, grpc);
        headers.insert("grpc-status", HeaderValue::from(u16::from(grpc_status)));
        headers.insert("grpc-message", HeaderValue::from_static(text));
    } else {
        response = Response::new(
            Full::new(Bytes::from_static(text.as_bytes()))
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// 429 with `Retry-After` in whole seconds, rounded up (gRPC: `RESOURCE_EXHAUSTED`).
pub(crate) fn too_many(
    grpc: Option<HeaderValue>,
    wait: std::time::Duration,
) -> Response<GatewayBody> {
    let mut response = refuse(grpc, StatusCode::TOO_MANY_REQUESTS, 8, "too many requests");
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// The gRPC content type of a request, if it is one (`application/grpc`, `-web`, `-web-text`,
/// alone or with `+codec` / `;params`).
pub(crate) fn grpc_content_type(headers: &HeaderMap) -> Option<HeaderValue> {
    let ct = headers.get(CONTENT_TYPE)?.as_bytes();
    [
        "application/grpc-web-text",
        "application/grpc-web",
        "application/grpc",
    ]
    .into_iter()
    .find_map(|kind| {
        let rest = ct.strip_prefix(kind.as_bytes())?;
        matches!(rest.first(), None | Some(b'+' | b';')).then(|| HeaderValue::from_static(kind))
    })
}
