//! The receiver's answers (§2.8): `200` with `Cache-Control: no-store`, `400` with an OAuth
//! error object.

use crate::http::with_no_store;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The logout was published.
pub(crate) fn ok() -> Response<Full<Bytes>> {
    with_no_store(Response::new(Full::default()), StatusCode::OK)
}

/// A refusal: `400` (or another status) with `{"error": code, "error_description": ...}`.
pub(crate) fn error(
    status: StatusCode,
    code: &'static str,
    description: &str,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": code, "error_description": description });
    let mut response = with_no_store(Response::new(Full::from(body.to_string())), status);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `405` for anything but `POST`.
pub(crate) fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "logout tokens are sent with POST",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    response
}
