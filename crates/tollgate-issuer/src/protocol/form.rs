//! Bounded request bodies and `application/x-www-form-urlencoded` parameters (RFC 6749 §3.2:
//! a parameter sent twice is an error; empty values count as absent).

use crate::protocol::response::{ErrorCode, Failure};
use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The error type request bodies may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest request body read, in bytes: far above any legitimate OAuth request.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// Longest time a request body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads at most [`MAX_BODY`] bytes; a longer body is refused with `413` without being buffered
/// past the limit.
pub(crate) async fn read_body<B>(body: B) -> Result<Bytes, Failure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    // A body trickled in a byte at a time must not hold a task forever.
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect());
    match read.await {
        Err(_) => Err(Failure::new(
            http::StatusCode::REQUEST_TIMEOUT,
            ErrorCode::InvalidRequest,
            "the request body did not arrive in time",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Failure::payload_too_large()),
        Ok(Err(_)) => Err(Failure::invalid_request(
            "the request body could not be read",
        )),
    }
}

/// Whether the request says its body is `media_type` (parameters such as `charset` allowed).
pub(crate) fn has_content_type(headers: &HeaderMap, media_type: &str) -> bool {
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

/// The parameters of a form body, each present at most once and never empty.
#[derive(Debug, Default)]
pub(crate) struct Form {
    params: Vec<(String, String)>,
}

impl Form {
    /// Checks the content type and parses `body`.
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, Failure> {
        if !has_content_type(headers, "application/x-www-form-urlencoded") {
            return Err(Failure::invalid_request(
                "content type must be application/x-www-form-urlencoded",
            ));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(Failure::invalid_request(
                    "a parameter was sent more than once",
                ));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(Form { params })
    }

    /// The value of `name`, if sent and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn form_headers(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn parses_decodes_and_drops_empty_values() {
        let headers = form_headers("application/x-www-form-urlencoded; charset=UTF-8");
        let form = Form::parse(&headers, b"a=x+y%21&b=&c=1").unwrap();
        assert_eq!(form.get("a"), Some("x y!"));
        assert_eq!(form.get("b"), None);
        assert_eq!(form.get("c"), Some("1"));
    }

    #[test]
    fn refuses_repeats_and_other_content_types() {
        let headers = form_headers("application/x-www-form-urlencoded");
        assert!(Form::parse(&headers, b"a=1&a=2").is_err());
        // An empty repeat counts as absent.
        assert!(Form::parse(&headers, b"a=1&a=").is_ok());
        assert!(Form::parse(&form_headers("application/json"), b"a=1").is_err());
        assert!(Form::parse(&HeaderMap::new(), b"a=1").is_err());
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let big = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_BODY + 1]));
        let err = read_body(big).await.unwrap_err();
        assert_eq!(err.status, http::StatusCode::PAYLOAD_TOO_LARGE);
        let ok = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_BODY]));
        assert_eq!(read_body(ok).await.unwrap().len(), MAX_BODY);
    }
}
