//! RFC 8935 push delivery: the endpoint the transmitter POSTs each SET to, as a tower `Service`.

use super::receiver::{Outcome, Refusal, SsfReceiver};
use super::set::MAX_SET_LEN;
use super::status::Contact;
use crate::http::{BodyError, BoxError, has_media_type, read_bounded, with_no_store};
use crate::publish::BoxFuture;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde_json::json;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tower_service::Service;

/// What a `503` asks the transmitter to wait before it sends the SET again, in seconds.
const RETRY_AFTER_SECS: &str = "5";

/// The push endpoint of an [`SsfReceiver`] ([`SsfReceiver::push_service`]): mount it at the
/// `endpoint_url` given to the builder's [`push`](super::SsfReceiverBuilder::push).
///
/// Answers (RFC 8935 §2.2–2.4): `202` once the SET's cutoff is published (or the SET was
/// acknowledged without one); `400` with `{"err": ..., "description": ...}` for a SET that is
/// not acceptable (the transmitter should not send it again); `401` with `authentication_failed`
/// when the configured `Authorization` value is missing or wrong; `503` with `Retry-After` when
/// the SET could not be handled now (the cutoff not published, replays not checkable, the
/// transmitter's keys not yet known): its `jti` is not spent, and the transmitter's retry is
/// accepted; `405` for another method, `413` for a body over 16 KiB.
///
/// Cheap to clone; always ready.
#[derive(Debug, Clone)]
pub struct SsfPush {
    receiver: SsfReceiver,
}

impl SsfPush {
    pub(crate) fn new(receiver: SsfReceiver) -> Self {
        SsfPush { receiver }
    }

    async fn handle<B>(self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let set = match self.admit(&request) {
            Ok(()) => read_set(request.into_body()).await,
            Err(rejected) => Err(rejected),
        };
        let set = match set {
            Ok(set) => set,
            Err(rejected) => {
                self.receiver.refused_request(rejected.reason());
                return rejected.response();
            }
        };
        match self.receiver.receive(&set, Contact::Push).await {
            Ok(Outcome::Applied | Outcome::Ignored) => accepted(),
            Err(Refusal::Invalid(error)) => {
                refusal(StatusCode::BAD_REQUEST, error.err(), error.description())
            }
            Err(Refusal::Unavailable(_)) => unavailable(),
        }
    }

    /// The request before its body: `POST`, authenticated, a SET.
    fn admit<B>(&self, request: &Request<B>) -> Result<(), Rejected> {
        if request.method() != Method::POST {
            return Err(Rejected::Method);
        }
        if !self.authenticated(request.headers()) {
            return Err(Rejected::Unauthenticated);
        }
        if !has_media_type(request.headers(), "application/secevent+jwt") {
            return Err(Rejected::ContentType);
        }
        Ok(())
    }

    /// The Authorization header equals the configured value; compared as SHA-256 digests in
    /// constant time, so that neither the value nor its length leaks through timing.
    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.receiver.inner.push_authorization else {
            return true;
        };
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        verify_slices_are_equal(&sha256(value.as_bytes()), expected).is_ok()
    }
}

/// Why a request was refused before its body was read as a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejected {
    Method,
    Unauthenticated,
    ContentType,
    Slow,
    TooLarge,
    Unreadable,
    NotUtf8,
}

impl Rejected {
    /// The reason counted in the stats.
    fn reason(self) -> &'static str {
        match self {
            Rejected::Method => "method",
            Rejected::Unauthenticated => "authentication",
            Rejected::ContentType => "content_type",
            Rejected::Slow | Rejected::TooLarge | Rejected::Unreadable => "body",
            Rejected::NotUtf8 => "malformed",
        }
    }

    fn response(self) -> Response<Full<Bytes>> {
        let invalid = |status, description| refusal(status, "invalid_request", description);
        match self {
            Rejected::Method => {
                let mut response =
                    invalid(StatusCode::METHOD_NOT_ALLOWED, "SETs are pushed with POST");
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("POST"));
                response
            }
            Rejected::Unauthenticated => refusal(
                StatusCode::UNAUTHORIZED,
                "authentication_failed",
                "the Authorization header is missing or wrong",
            ),
            Rejected::ContentType => invalid(
                StatusCode::BAD_REQUEST,
                "the content type must be application/secevent+jwt",
            ),
            Rejected::Slow => invalid(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            ),
            Rejected::TooLarge => invalid(StatusCode::PAYLOAD_TOO_LARGE, "the SET is too large"),
            Rejected::Unreadable => invalid(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ),
            Rejected::NotUtf8 => invalid(StatusCode::BAD_REQUEST, "malformed SET"),
        }
    }
}

impl<B> Service<Request<B>> for SsfPush
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

/// The body: one compact SET, at most 16 KiB, within 10 s.
async fn read_set<B>(body: B) -> Result<String, Rejected>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let body = read_bounded(body, MAX_SET_LEN).await.map_err(|e| match e {
        BodyError::Slow => Rejected::Slow,
        BodyError::TooLarge => Rejected::TooLarge,
        BodyError::Unreadable => Rejected::Unreadable,
    })?;
    std::str::from_utf8(&body)
        .map(|set| set.trim().to_owned())
        .map_err(|_| Rejected::NotUtf8)
}

fn accepted() -> Response<Full<Bytes>> {
    with_no_store(Response::new(Full::default()), StatusCode::ACCEPTED)
}

/// An RFC 8935 §2.3 error answer.
fn refusal(status: StatusCode, err: &str, description: &str) -> Response<Full<Bytes>> {
    let body = json!({ "err": err, "description": description });
    let mut response = with_no_store(Response::new(Full::from(body.to_string())), status);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The SET could not be handled now: a status transmitters retry on, and when to.
fn unavailable() -> Response<Full<Bytes>> {
    let mut response = with_no_store(
        Response::new(Full::from(
            json!({ "description": "the SET could not be recorded now; send it again" })
                .to_string(),
        )),
        StatusCode::SERVICE_UNAVAILABLE,
    );
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    response
}

/// SHA-256 of `bytes`: what the Authorization header values are compared by.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}
