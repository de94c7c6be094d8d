//! What the receivers' HTTP endpoints share: the media type of a request, reading its body within
//! bounds, and answers no cache keeps.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use std::time::Duration;

/// The error type request bodies may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a request body may take to arrive: a body trickled in a byte at a time must not hold
/// a task forever.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// It did not arrive within [`BODY_TIMEOUT`].
    Slow,
    /// It is longer than allowed (never buffered past the limit).
    TooLarge,
    /// The connection failed while it was read.
    Unreadable,
}

/// Whether the request says its body is `media_type` (one `Content-Type`, parameters such as
/// `charset` allowed, compared case-insensitively).
pub(crate) fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
}

/// Reads at most `max` bytes of `body` within [`BODY_TIMEOUT`].
pub(crate) async fn read_bounded<B>(body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect());
    match read.await {
        Err(_) => Err(BodyError::Slow),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Unreadable),
    }
}

/// `response` with `status` and `Cache-Control: no-store` (every receiver answer is about one
/// signal, never to be cached).
pub(crate) fn with_no_store(
    mut response: Response<Full<Bytes>>,
    status: StatusCode,
) -> Response<Full<Bytes>> {
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A NumericDate (RFC 7519 §2): integer or fractional seconds, fractions dropped; `None` for
/// anything else.
pub(crate) fn numeric_date(value: &serde_json::Value) -> Option<i64> {
    let number = value.as_number()?;
    number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    })
}

/// Whether `json` is JSON text a strict parser takes: valid UTF-8, no lone surrogate escapes,
/// anywhere, members the receivers ignore included. A derived `Deserialize` skips ignored
/// members without checking their strings, so a signal another parser would refuse could pass;
/// signals are rare, so reading them twice costs nothing that matters.
pub(crate) fn is_strict_json(json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(json).is_ok()
}
