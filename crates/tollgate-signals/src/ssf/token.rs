//! OAuth 2.0 client credentials (RFC 6749 §4.4): the access tokens the receiver sends the
//! transmitter's API, fetched from the provider's token endpoint and renewed before they expire,
//! since providers' SSF APIs (Okta, Keycloak) take tokens that live minutes to an hour.

use super::client::{Answer, HttpClient, bearer_header, parse_url, without_query};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::Value;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The life assumed for a token whose answer has no `expires_in` (RFC 6749 makes it optional):
/// short, since a token renewed too late costs a refused request.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);
/// A token is renewed this long before it expires, or at 80% of its life if that is later.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// A token source for the receiver's own requests: one client's credentials at one token
/// endpoint, and the token last issued.
pub(crate) struct ClientCredentials {
    endpoint: Uri,
    client_id: String,
    /// `Basic base64(id:secret)`, each form-urlencoded first (RFC 6749 §2.3.1), sensitive.
    basic: HeaderValue,
    scope: Option<String>,
    cached: Mutex<Option<Cached>>,
    /// Held while a token is fetched, so that requests waiting for one do not each fetch one.
    fetching: tokio::sync::Mutex<()>,
}

struct Cached {
    authorization: HeaderValue,
    renew_at: Instant,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &without_query(&self.endpoint))
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Checks the values; nothing is fetched before the first request.
    pub(crate) fn new(
        endpoint: &str,
        client_id: String,
        client_secret: &str,
        scope: Option<String>,
    ) -> Result<Self, String> {
        let endpoint = parse_url("the token endpoint", endpoint)?;
        if client_id.is_empty() || client_secret.is_empty() {
            return Err("client credentials need a client_id and a client_secret".into());
        }
        if scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("the client credentials' scope must not be empty when set".into());
        }
        Ok(ClientCredentials {
            endpoint,
            basic: basic_header(&client_id, client_secret),
            client_id,
            scope,
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// `Bearer <token>`: the token in hand while it is not due for renewal, else a new one.
    pub(crate) async fn authorization(&self, http: &HttpClient) -> Result<HeaderValue, String> {
        if let Some(value) = self.current() {
            return Ok(value);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched one while this one waited.
        if let Some(value) = self.current() {
            return Ok(value);
        }
        let (authorization, renew_at) = self.fetch(http).await?;
        *self.cache() = Some(Cached {
            authorization: authorization.clone(),
            renew_at,
        });
        Ok(authorization)
    }

    /// The transmitter refused the token (`401`): revoked or expired early; the next request
    /// fetches a new one.
    pub(crate) fn refused(&self) {
        *self.cache() = None;
    }

    fn current(&self) -> Option<HeaderValue> {
        self.cache()
            .as_ref()
            .filter(|c| Instant::now() < c.renew_at)
            .map(|c| c.authorization.clone())
    }

    fn cache(&self) -> MutexGuard<'_, Option<Cached>> {
        // Nothing panics while holding it; a poisoned cache is still a valid one.
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// POSTs the grant; the token as a header value and when to renew it.
    async fn fetch(&self, http: &HttpClient) -> Result<(HeaderValue, Instant), String> {
        let place = without_query(&self.endpoint);
        let context = |e: String| format!("cannot get an access token from {place}: {e}");
        let asked = Instant::now();
        let answer = http
            .exchange(self.grant_request()?)
            .await
            .map_err(context)?;
        if !answer.status.is_success() {
            return Err(context(self.refusal(&answer)));
        }
        let (token, lifetime) = parse_token(&answer).map_err(context)?;
        let authorization = bearer_header(&token)
            .ok_or_else(|| context("the access_token is not a valid header value".into()))?;
        tracing::debug!(
            token_endpoint = %place,
            client_id = %self.client_id,
            expires_in = lifetime.as_secs(),
            "access token for the shared signals transmitter obtained"
        );
        // Counted from the request, not the answer: the provider's clock started before.
        Ok((authorization, asked + renew_after(lifetime)))
    }

    fn grant_request(&self) -> Result<Request<Full<Bytes>>, String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.append_pair("scope", scope);
        }
        Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(AUTHORIZATION, self.basic.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::from(form.finish()))
            .map_err(|e| format!("cannot make the token request: {e}"))
    }

    /// A refusal: the status and RFC 6749 §5.2's `error` code (not its description, which is
    /// the provider's free text).
    fn refusal(&self, answer: &Answer) -> String {
        let code = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|body| body.get("error")?.as_str().map(str::to_owned))
            .filter(|code| code.len() <= 64 && code.bytes().all(|b| b.is_ascii_graphic()));
        match code {
            Some(code) => format!(
                "it answered {} ({code}) for client_id {}",
                answer.status, self.client_id
            ),
            None => format!(
                "it answered {} for client_id {}",
                answer.status, self.client_id
            ),
        }
    }
}

/// `Basic` authentication of the client (RFC 6749 §2.3.1): id and secret form-urlencoded, then
/// joined by `:` and base64-encoded.
fn basic_header(client_id: &str, client_secret: &str) -> HeaderValue {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(client_id), encode(client_secret)));
    // Base64 is always a valid header value.
    let mut value = HeaderValue::try_from(format!("Basic {credentials}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// RFC 6749 §5.1: `access_token`, `token_type` Bearer, `expires_in` (a number, or the numeric
/// string some providers send). Errors never quote the answer, which holds the token.
fn parse_token(answer: &Answer) -> Result<(String, Duration), String> {
    let body: Value =
        serde_json::from_slice(&answer.body).map_err(|_| "its answer is not JSON".to_owned())?;
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "its answer has no access_token".to_owned())?;
    match body.get("token_type").and_then(Value::as_str) {
        Some(kind) if !kind.eq_ignore_ascii_case("bearer") => {
            return Err(format!(
                "its token_type is {kind:?}, not Bearer (only bearer tokens are supported)"
            ));
        }
        _ => {}
    }
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    let lifetime = match (body.get("expires_in"), expires_in) {
        (None | Some(Value::Null), _) => ASSUMED_LIFETIME,
        (Some(_), Some(secs)) => Duration::from_secs(secs),
        (Some(_), None) => return Err("its expires_in is not a number of seconds".into()),
    };
    Ok((token.to_owned(), lifetime))
}

/// When to renew a token that lives `lifetime`: `RENEW_BEFORE` before it expires, or at 80% of
/// its life if that is later (a two-minute token is renewed after 96 s, not 90 s).
fn renew_after(lifetime: Duration) -> Duration {
    lifetime
        .saturating_sub(RENEW_BEFORE)
        .max(lifetime.mul_f64(0.8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn answer(body: &str) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_token_is_renewed_30_s_before_it_expires_or_at_80_percent_of_a_short_life() {
        let secs = Duration::from_secs;
        assert_eq!(renew_after(secs(3600)), secs(3570));
        assert_eq!(renew_after(secs(300)), secs(270));
        assert_eq!(renew_after(secs(120)), secs(96));
        assert_eq!(renew_after(secs(2)), Duration::from_millis(1600));
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn basic_authentication_encodes_the_id_and_secret_as_a_form_first() {
        let value = basic_header("a b", "p:w%");
        let expected = format!("Basic {}", STANDARD.encode("a+b:p%3Aw%25"));
        assert_eq!(value.to_str().ok(), Some(expected.as_str()));
        assert!(value.is_sensitive());
    }

    #[test]
    fn a_token_answer_is_read_and_its_errors_never_quote_it() {
        let ok = parse_token(&answer(
            r#"{"access_token":"tok","token_type":"Bearer","expires_in":"60"}"#,
        ));
        assert_eq!(ok, Ok(("tok".into(), Duration::from_secs(60))));
        let no_expiry = parse_token(&answer(r#"{"access_token":"tok","token_type":"bearer"}"#));
        assert_eq!(no_expiry, Ok(("tok".into(), ASSUMED_LIFETIME)));
        for body in [
            r#"{"access_token":"secret-tok","token_type":"DPoP","expires_in":60}"#,
            r#"{"access_token":"secret-tok","expires_in":"soon"}"#,
            r#"{"token":"secret-tok"}"#,
            "secret-tok",
        ] {
            let error = parse_token(&answer(body)).unwrap_err();
            assert!(!error.contains("secret-tok"), "{error}");
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let source =
            ClientCredentials::new("https://id.example.com/token", "id".into(), "s3cr3t", None)
                .unwrap();
        let shown = format!("{source:?}");
        assert!(shown.contains("id") && !shown.contains("s3cr3t"), "{shown}");
    }
}
