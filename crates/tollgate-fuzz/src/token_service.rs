//! Target `token_service`: whole HTTP requests (form bodies, HTTP Basic credentials, the
//! batch-revocation JSON, bearer and `Reference-Token` headers) to a fresh [`TokenService`].
//!
//! [`TokenService`]: tollgate_issuer::TokenService

use crate::fixture;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::cell::RefCell;
use std::sync::Arc;
use tollgate_core::RevocationIndex;
use tollgate_issuer::TokenService;
use tower::ServiceExt;

/// The input is an HTTP/1-like request in text: a first line `METHOD PATH`, then `Name: value`
/// header lines, an empty line, and the body, e.g.
///
/// ```text
/// POST /connect/token
/// Authorization: Basic c3ZjOnN2Yy1zZWNyZXQ=
/// Content-Type: application/x-www-form-urlencoded
///
/// grant_type=client_credentials&scope=api
/// ```
///
/// A request that cannot be built (bad method or path) is skipped; bad header lines are dropped.
///
/// One service over an empty store answers [`REUSE`] inputs in a row, then a fresh one takes over:
/// building a service costs its start-up argon2 dummy hash (default cost: about 0.1 s under
/// AddressSanitizer, which held the fuzzer to 8 inputs/s with a service per input). The invariants
/// hold in any state, so carried-over state only widens what is explored; to check one input
/// against a fresh service, use [`respond`].
///
/// Panics if the service answers a status outside the endpoint's documented set (any 5xx
/// included), a body that is not the promised JSON shape, an error without `Cache-Control:
/// no-store`, or an access token that tollgate's own verifier refuses.
pub fn token_service(data: &[u8]) {
    let Some(request) = parse_request(data) else {
        return;
    };
    let (service, index) = SERVICE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let reuse = slot.as_ref().is_some_and(|(_, _, served)| *served < REUSE);
        if !reuse {
            let index = fixture::index();
            let service = fixture::runtime().block_on(fixture::token_service(index.clone()));
            *slot = Some((service, index, 0));
        }
        let (service, index, served) = slot.as_mut().expect("just filled");
        *served += 1;
        (service.clone(), index.clone())
    });
    send(service, index, request);
}

/// How many inputs one token service answers before a fresh one is built.
pub const REUSE: u32 = 64;

thread_local! {
    static SERVICE: RefCell<Option<(TokenService, Arc<RevocationIndex>, u32)>> =
        const { RefCell::new(None) };
}

/// Sends the request the input describes (see [`token_service`]) to a fresh service, checks the
/// response, and returns its status and body; `None` when the input is not a request.
pub fn respond(data: &[u8]) -> Option<(StatusCode, Bytes)> {
    let request = parse_request(data)?;
    let index = fixture::index();
    let service = fixture::runtime().block_on(fixture::token_service(index.clone()));
    Some(send(service, index, request))
}

fn send(
    service: TokenService,
    index: Arc<RevocationIndex>,
    request: Request<Full<Bytes>>,
) -> (StatusCode, Bytes) {
    let path = request.uri().path().to_owned();
    fixture::runtime().block_on(async move {
        let Ok(response) = service.oneshot(request).await;
        let (parts, body) = response.into_parts();
        let Ok(body) = body.collect().await;
        let body = body.to_bytes();
        check_response(&path, parts.status, &parts.headers, &body, index);
        (parts.status, body)
    })
}

/// Builds the request the input describes, or `None`.
pub fn parse_request(data: &[u8]) -> Option<Request<Full<Bytes>>> {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &b""[..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let space = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..space]).ok()?;
    let uri = Uri::try_from(&first[space + 1..]).ok()?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .ok()?;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    Some(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The endpoints, as the response shapes differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Token,
    Revocation,
    ApiRevoke,
    Introspect,
    Batch,
    Userinfo,
    Public,
    Unknown,
}

fn endpoint(path: &str) -> Endpoint {
    match path {
        "/connect/token" => Endpoint::Token,
        "/connect/revocation" => Endpoint::Revocation,
        "/api/id/v1/auth/token/revoke" => Endpoint::ApiRevoke,
        "/connect/introspect" => Endpoint::Introspect,
        "/api/v2/identity/token/batch-revocation" => Endpoint::Batch,
        "/connect/userinfo" => Endpoint::Userinfo,
        "/.well-known/jwks.json"
        | "/.well-known/openid-configuration"
        | "/.well-known/oauth-authorization-server" => Endpoint::Public,
        _ => Endpoint::Unknown,
    }
}

fn json(body: &[u8], what: &str) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{what}: body is not JSON ({e}): {:?}",
            body.escape_ascii().to_string()
        )
    })
}

fn string_member<'a>(value: &'a Value, name: &str, what: &str) -> &'a str {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string `{name}` in {value}"))
}

/// Checks one response against what CONTRACT.md promises for `path`.
fn check_response(
    path: &str,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    index: Arc<RevocationIndex>,
) {
    let endpoint = endpoint(path);
    let what = format!("{path} answered {status}");
    let allowed: &[u16] = match endpoint {
        Endpoint::Token | Endpoint::Revocation | Endpoint::ApiRevoke | Endpoint::Introspect => {
            &[200, 400, 401, 405, 413, 429]
        }
        Endpoint::Batch => &[200, 400, 401, 403, 405, 413],
        Endpoint::Userinfo => &[200, 400, 401, 403, 405],
        Endpoint::Public => &[200, 405],
        Endpoint::Unknown => &[404],
    };
    assert!(
        allowed.contains(&status.as_u16()),
        "{what}: not a documented status"
    );
    let is_json = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let no_store = headers
        .get(CACHE_CONTROL)
        .is_some_and(|v| v.as_bytes() == b"no-store");
    match endpoint {
        Endpoint::Token | Endpoint::Revocation | Endpoint::Introspect => {
            assert!(no_store, "{what}: no Cache-Control: no-store");
            if status != StatusCode::OK {
                assert!(is_json, "{what}: error without a JSON content type");
                string_member(&json(body, &what), "error", &what);
            }
        }
        Endpoint::ApiRevoke => {
            assert!(no_store, "{what}: no Cache-Control: no-store");
            if status != StatusCode::OK {
                let error = json(body, &what);
                string_member(&error, "error", &what);
                string_member(&error, "errorDescription", &what);
            }
        }
        Endpoint::Batch => {
            let value = json(body, &what);
            if status == StatusCode::OK {
                assert!(
                    value.get("count").is_some_and(Value::is_u64),
                    "{what}: no count in {value}"
                );
            } else {
                string_member(&value, "code", &what);
                string_member(&value, "message", &what);
            }
        }
        Endpoint::Userinfo if status == StatusCode::OK => {
            string_member(&json(body, &what), "sub", &what);
        }
        Endpoint::Public if status == StatusCode::OK => {
            assert!(json(body, &what).is_object(), "{what}: not a JSON object");
        }
        _ => {}
    }
    if status != StatusCode::OK {
        return;
    }
    match endpoint {
        Endpoint::Token => {
            let value = json(body, &what);
            let token = string_member(&value, "access_token", &what);
            assert_eq!(string_member(&value, "token_type", &what), "Bearer");
            assert!(
                value
                    .get("expires_in")
                    .and_then(Value::as_u64)
                    .is_some_and(|s| s > 0),
                "{what}: expires_in is not a positive integer in {value}"
            );
            let verifier = fixture::verifier(index, false);
            let claims = crate::bearer::check_verify(&verifier, token)
                .unwrap_or_else(|e| panic!("{what}: the issued token does not verify: {e:?}"));
            assert_eq!(
                claims.scope,
                string_member(&value, "scope", &what),
                "{what}: the token's scope is not the one answered"
            );
        }
        Endpoint::Revocation | Endpoint::ApiRevoke => {
            assert!(body.is_empty(), "{what}: a revocation's 200 has a body");
        }
        Endpoint::Introspect => {
            let value = json(body, &what);
            let active = value.get("active").and_then(Value::as_bool);
            assert!(active.is_some(), "{what}: no boolean `active` in {value}");
            if active == Some(false) {
                assert_eq!(value, serde_json::json!({"active": false}));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let request = parse_request(
            b"POST /connect/token\nContent-Type: application/x-www-form-urlencoded\nbad line\n\na=b",
        )
        .unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().path(), "/connect/token");
        assert_eq!(request.headers().len(), 1);
        assert!(parse_request(b"no-space").is_none());
    }

    /// The seeds get past authentication into each endpoint's success path: a corpus that only
    /// ever meets 401 would fuzz nothing behind it.
    #[test]
    fn seeds_reach_the_success_paths() {
        for (seed, status, needle) in [
            ("cc-basic", 200, "access_token"),
            ("cc-post", 200, "\"expires_in\":60"),
            ("password-alice", 200, "access_token"),
            ("revoke-user-token", 200, ""),
            ("introspect-gateway", 200, "\"active\":true"),
            ("batch-date", 200, "count"),
            ("batch-reference-token", 200, "count"),
            ("userinfo", 200, "Alice Example"),
            ("batch-not-admin", 403, "code"),
            ("cc-bad-secret", 401, "invalid_client"),
        ] {
            let path = crate::corpus_dir("token_service").join(format!("seed-{seed}"));
            let (got, body) = respond(&std::fs::read(&path).unwrap()).unwrap();
            let body = String::from_utf8_lossy(&body);
            assert_eq!(got.as_u16(), status, "{seed}: {body}");
            assert!(body.contains(needle), "{seed}: {body}");
        }
    }

    #[test]
    fn client_credentials_issue_a_token_that_verifies() {
        token_service(
            b"POST /connect/token\nAuthorization: Basic c3ZjOnN2Yy1zZWNyZXQ=\n\
              Content-Type: application/x-www-form-urlencoded\n\ngrant_type=client_credentials",
        );
    }

    #[test]
    #[should_panic(expected = "not a documented status")]
    fn an_undocumented_status_is_caught() {
        check_response(
            "/connect/token",
            StatusCode::INTERNAL_SERVER_ERROR,
            &http::HeaderMap::new(),
            b"",
            fixture::index(),
        );
    }
}
