//! RFC 8935 push delivery: the endpoint the transmitter POSTs each SET to, as a tower `Service`.

use super::receiver::{Outcome, Refusal, SsfReceiver, sha256};
use super::set::MAX_SET_LEN;
use super::status::Contact;
use crate::publish::BoxFuture;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde_json::json;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// How long the body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// What a `503` asks the transmitter to wait before it sends the SET again, in seconds.
const RETRY_AFTER_SECS: &str = "5";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        if let Err((reason, response)) = self.admit(&request) {
            self.receiver.refused_request(reason);
            return response;
        }
        let set = match read_set(request.into_body()).await {
            Ok(set) => set,
            Err((reason, response)) => {
                self.receiver.refused_request(reason);
                return response;
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
    fn admit<B>(&self, request: &Request<B>) -> Result<(), (&'static str, Response<Full<Bytes>>)> {
        if request.method() != Method::POST {
            let mut response = refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "SETs are pushed with POST",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return Err(("method", response));
        }
        if !self.authenticated(request.headers()) {
            return Err((
                "authentication",
                refusal(
                    StatusCode::UNAUTHORIZED,
                    "authentication_failed",
                    "the Authorization header is missing or wrong",
                ),
            ));
        }
        if !is_secevent(request.headers()) {
            return Err((
                "content_type",
                refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the content type must be application/secevent+jwt",
                ),
            ));
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

fn is_secevent(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/secevent+jwt")
        })
}

/// The body: one compact SET, at most 16 KiB, within 10 s.
async fn read_set<B>(body: B) -> Result<String, (&'static str, Response<Full<Bytes>>)>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_SET_LEN).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Err(_) => {
            return Err((
                "body",
                refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    "the request body did not arrive in time",
                ),
            ));
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return Err((
                "body",
                refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "the SET is too large",
                ),
            ));
        }
        Ok(Err(_)) => {
            return Err((
                "body",
                refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read",
                ),
            ));
        }
    };
    match std::str::from_utf8(&body) {
        Ok(set) => Ok(set.trim().to_owned()),
        Err(_) => Err((
            "malformed",
            refusal(StatusCode::BAD_REQUEST, "invalid_request", "malformed SET"),
        )),
    }
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

fn with_no_store(mut response: Response<Full<Bytes>>, status: StatusCode) -> Response<Full<Bytes>> {
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
