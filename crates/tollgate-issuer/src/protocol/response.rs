//! Response builders: OAuth errors (RFC 6749 §5.2), the seed APIs' error shapes, JSON bodies,
//! with `Cache-Control: no-store` on everything that carries a token or an error.

use crate::ledger::{LedgerError, RevokeError};
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use std::time::Duration;

/// The body of every response the token service sends.
pub type ResponseBody = Full<Bytes>;

/// An OAuth error code (RFC 6749 §5.2, RFC 7009 §2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// A refused request, before it is shaped for the endpoint that refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) description: &'static str,
    /// Add `WWW-Authenticate: Basic realm="tollgate"` (client authentication failed through the
    /// Authorization header).
    pub(crate) basic_challenge: bool,
    /// How long until a retry may succeed (storage outage, throttling): `Retry-After`, in whole
    /// seconds rounded up, so that an obedient client is not refused again.
    pub(crate) retry_after: Option<Duration>,
    /// Only for 405.
    pub(crate) allow: Option<&'static str>,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, description: &'static str) -> Self {
        Failure {
            status,
            code,
            description,
            basic_challenge: false,
            retry_after: None,
            allow: None,
        }
    }

    pub(crate) fn bad_request(code: ErrorCode, description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub(crate) fn invalid_request(description: &'static str) -> Self {
        Self::bad_request(ErrorCode::InvalidRequest, description)
    }

    /// Storage is unavailable: nothing was changed, and the caller should retry.
    pub(crate) fn unavailable() -> Self {
        Failure {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TemporarilyUnavailable,
                "storage is unavailable; nothing was changed, retry later",
            )
        }
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServerError,
            "internal error",
        )
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        Failure {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::InvalidRequest,
                "method not allowed",
            )
        }
    }

    pub(crate) fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            "request body too large",
        )
    }

    /// In the endpoint's own error shape.
    pub(crate) fn into_response(self, shape: ErrorShape) -> Response<ResponseBody> {
        match shape {
            ErrorShape::OAuth => self.into_oauth(),
            ErrorShape::Camel => self.error_pair("errorDescription"),
            ErrorShape::PluginError => self.into_plugin_error(),
        }
    }

    /// As an RFC 6749 error: `{"error", "error_description"}`.
    pub(crate) fn into_oauth(self) -> Response<ResponseBody> {
        self.error_pair("error_description")
    }

    /// `{"error": code, <description_field>: description}`: RFC 6749's shape, or the Revoke Auth
    /// Token API's (`errorDescription`), which differs only in that field's name.
    fn error_pair(self, description_field: &str) -> Response<ResponseBody> {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code.as_str().into());
        body.insert(description_field.into(), self.description.into());
        self.respond(&body)
    }

    /// As the Identity API's `ServerPluginError`.
    pub(crate) fn into_plugin_error(self) -> Response<ResponseBody> {
        self.respond(&ServerPluginError::new(
            self.code.as_str(),
            self.description,
        ))
    }

    fn respond<T: Serialize>(&self, body: &T) -> Response<ResponseBody> {
        let mut response = json(self.status, body);
        let headers = response.headers_mut();
        if self.basic_challenge {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tollgate\""),
            );
        }
        if let Some(wait) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(wait)));
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    millis.div_ceil(1000).max(1)
}

/// The error body an endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorShape {
    /// RFC 6749 §5.2: `{"error", "error_description"}`.
    OAuth,
    /// The Revoke Auth Token API: `{"error", "errorDescription"}`.
    Camel,
    /// The Identity API's `ServerPluginError`.
    PluginError,
}

impl From<LedgerError> for Failure {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Unavailable => Failure::unavailable(),
            LedgerError::Internal => Failure::internal(),
        }
    }
}

impl From<RevokeError> for Failure {
    fn from(error: RevokeError) -> Self {
        match error {
            RevokeError::OtherClient => Failure::bad_request(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            ),
            RevokeError::Ledger(e) => e.into(),
        }
    }
}

/// The Identity API's error body: `{code, message, context, innerError, extensions}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerPluginError {
    code: &'static str,
    message: &'static str,
    context: Option<()>,
    inner_error: Option<()>,
    extensions: Option<()>,
}

impl ServerPluginError {
    pub(crate) fn new(code: &'static str, message: &'static str) -> Self {
        ServerPluginError {
            code,
            message,
            context: None,
            inner_error: None,
            extensions: None,
        }
    }
}

/// A JSON response with `Cache-Control: no-store` and `Pragma: no-cache`.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<ResponseBody> {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_no_store(status, Some("application/json"), Bytes::from(bytes)),
        Err(_) => with_no_store(StatusCode::INTERNAL_SERVER_ERROR, None, Bytes::new()),
    }
}

/// An empty `200` with `Cache-Control: no-store`.
pub(crate) fn empty_ok() -> Response<ResponseBody> {
    with_no_store(StatusCode::OK, None, Bytes::new())
}

/// A JSON document that may be cached (discovery, JWKS).
pub(crate) fn public_json<T: Serialize + ?Sized>(body: &T) -> Response<ResponseBody> {
    match serde_json::to_vec(body) {
        Ok(bytes) => public_json_bytes(Bytes::from(bytes)),
        Err(_) => with_no_store(StatusCode::INTERNAL_SERVER_ERROR, None, Bytes::new()),
    }
}

/// A JSON document already encoded, that may be cached.
pub(crate) fn public_json_bytes(body: Bytes) -> Response<ResponseBody> {
    let mut response = with_no_store(StatusCode::OK, Some("application/json"), body);
    let headers = response.headers_mut();
    headers.remove(PRAGMA);
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// A `404` for paths the service does not serve.
pub(crate) fn not_found() -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

fn with_no_store(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let header = |wait: Duration| {
            let failure = Failure {
                retry_after: Some(wait),
                ..Failure::unavailable()
            };
            failure.into_oauth().headers()[RETRY_AFTER].clone()
        };
        assert_eq!(header(Duration::from_millis(1_900)), "2");
        assert_eq!(header(Duration::from_millis(2_000)), "2");
        assert_eq!(header(Duration::from_millis(2_001)), "3");
        assert_eq!(header(Duration::ZERO), "1");
    }
}
