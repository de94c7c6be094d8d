//! OAuth 2.0 client credentials (RFC 6749 §4.4): the access tokens the receiver sends the
//! transmitter's API, fetched from the provider's token endpoint and renewed before they expire,
//! since providers' SSF APIs (Okta, Keycloak) take tokens that live minutes to an hour. The
//! client authenticates with its secret (HTTP Basic or in the form) or with a JWT it signs
//! (`private_key_jwt`, RFC 7523 §2.2), which Okta requires of service apps.

use super::client::{Answer, HttpClient, bearer_header, parse_url, without_query};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tollgate_core::SigningKey;

/// The life assumed for a token whose answer has no `expires_in` (RFC 6749 makes it optional):
/// short, since a token renewed too late costs a refused request.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);
/// A token is renewed this long before it expires, or at 80% of its life if that is later.
const RENEW_BEFORE: Duration = Duration::from_secs(30);
/// How long a client assertion (`private_key_jwt`) is valid: one request's worth, with room for
/// clocks a little apart (Okta accepts at most an hour).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(120);
/// RFC 7523 §2.2's `client_assertion_type`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the receiver's client authenticates at the token endpoint (RFC 6749 §2.3, RFC 7523).
/// No `Debug` that shows the secret or the key.
#[derive(Clone)]
pub enum ClientAuthentication {
    /// `client_secret_basic`: the id and secret in an HTTP Basic header (RFC 6749 §2.3.1).
    ClientSecretBasic(String),
    /// `client_secret_post`: the id and secret as `client_id` and `client_secret` in the form.
    ClientSecretPost(String),
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a JWT signed with this key
    /// (its `kid` in the header; the provider holds the public key), with `iss` and `sub` the
    /// client id, `aud` the token endpoint, a fresh `jti` and a two-minute life, sent as
    /// `client_assertion`. No secret is sent.
    PrivateKeyJwt(Arc<SigningKey>),
}

impl ClientAuthentication {
    /// The method's name in OAuth metadata (`token_endpoint_auth_method`).
    pub fn method(&self) -> &'static str {
        match self {
            ClientAuthentication::ClientSecretBasic(_) => "client_secret_basic",
            ClientAuthentication::ClientSecretPost(_) => "client_secret_post",
            ClientAuthentication::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

impl fmt::Debug for ClientAuthentication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuthentication::PrivateKeyJwt(key) => f
                .debug_struct("PrivateKeyJwt")
                .field("kid", &key.kid())
                .field("alg", &key.algorithm())
                .finish_non_exhaustive(),
            other => f.write_str(other.method()),
        }
    }
}

/// A token source for the receiver's own requests: one client's credentials at one token
/// endpoint, and the token last issued.
pub(crate) struct ClientCredentials {
    endpoint: Uri,
    client_id: String,
    authentication: ClientAuthentication,
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
            .field("authentication", &self.authentication.method())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Checks the values; nothing is fetched before the first request.
    pub(crate) fn new(
        endpoint: &str,
        client_id: String,
        authentication: ClientAuthentication,
        scope: Option<String>,
    ) -> Result<Self, String> {
        let endpoint = parse_url("the token endpoint", endpoint)?;
        if client_id.is_empty() {
            return Err("client credentials need a client_id".into());
        }
        match &authentication {
            ClientAuthentication::ClientSecretBasic(secret)
            | ClientAuthentication::ClientSecretPost(secret)
                if secret.is_empty() =>
            {
                return Err("client credentials need a client_secret".into());
            }
            ClientAuthentication::PrivateKeyJwt(key) if key.algorithm().is_symmetric() => {
                return Err(
                    "private_key_jwt needs an asymmetric key (EdDSA, ES256 or RS256)".into(),
                );
            }
            _ => {}
        }
        if scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err("the client credentials' scope must not be empty when set".into());
        }
        Ok(ClientCredentials {
            endpoint,
            authentication,
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
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match &self.authentication {
            ClientAuthentication::ClientSecretBasic(secret) => {
                request = request.header(AUTHORIZATION, basic_header(&self.client_id, secret));
            }
            ClientAuthentication::ClientSecretPost(secret) => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", secret);
            }
            ClientAuthentication::PrivateKeyJwt(key) => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_assertion_type", JWT_BEARER);
                form.append_pair("client_assertion", &self.assertion(key)?);
            }
        }
        request
            .body(Full::from(form.finish()))
            .map_err(|e| format!("cannot make the token request: {e}"))
    }

    /// A client assertion for one token request (RFC 7523 §3): signed by `key`, about and by
    /// this client, for this token endpoint, unique, short-lived.
    fn assertion(&self, key: &SigningKey) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the system clock is before 1970".to_owned())?
            .as_secs();
        let claims = serde_json::json!({
            "iss": self.client_id,
            "sub": self.client_id,
            // The endpoint as configured, which is what providers compare (Okta, Keycloak).
            "aud": self.endpoint.to_string(),
            "jti": tollgate_core::random::id(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        tollgate_core::jws::encode(key, "JWT", &claims)
            .map_err(|e| format!("cannot sign the client assertion: {e}"))
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
        for authentication in [
            ClientAuthentication::ClientSecretBasic("s3cr3t".into()),
            ClientAuthentication::ClientSecretPost("s3cr3t".into()),
        ] {
            let source = ClientCredentials::new(
                "https://id.example.com/token",
                "id".into(),
                authentication,
                None,
            )
            .unwrap();
            let shown = format!("{source:?}");
            assert!(shown.contains("id") && !shown.contains("s3cr3t"), "{shown}");
        }
    }

    /// A token request's headers and form.
    fn form_of(request: Request<Full<Bytes>>) -> (http::HeaderMap, Vec<(String, String)>) {
        let (parts, body) = request.into_parts();
        let body = ready_body(body);
        let form = form_urlencoded::parse(&body).into_owned().collect();
        (parts.headers, form)
    }

    /// A `Full` body's bytes (it is ready at once).
    fn ready_body(body: Full<Bytes>) -> Bytes {
        use http_body::Body as _;
        let mut body = std::pin::pin!(body);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match body.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        }
    }

    #[test]
    fn the_secret_goes_in_the_form_with_client_secret_post() {
        let source = ClientCredentials::new(
            "https://id.example.com/token",
            "app 1".into(),
            ClientAuthentication::ClientSecretPost("s3:cr&t".into()),
            Some("ssf.read".into()),
        )
        .unwrap();
        let (headers, form) = form_of(source.grant_request().unwrap());
        assert!(headers.get(AUTHORIZATION).is_none());
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("client_credentials"));
        assert_eq!(get("client_id"), Some("app 1"));
        assert_eq!(get("client_secret"), Some("s3:cr&t"));
        assert_eq!(get("scope"), Some("ssf.read"));
    }

    #[test]
    fn a_client_assertion_is_signed_for_the_token_endpoint() {
        use tollgate_core::{KeySet, SigningAlgorithm, jws::Compact};
        let keys = KeySet::generate(SigningAlgorithm::ES256, "rcv-1").unwrap();
        let source = ClientCredentials::new(
            "https://id.example.com/oauth2/v1/token",
            "0oa1".into(),
            ClientAuthentication::PrivateKeyJwt(keys.signing_key().unwrap()),
            None,
        )
        .unwrap();
        let (headers, form) = form_of(source.grant_request().unwrap());
        assert!(headers.get(AUTHORIZATION).is_none());
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_owned());
        assert_eq!(get("client_assertion_type").as_deref(), Some(JWT_BEARER));
        assert_eq!(get("client_id").as_deref(), Some("0oa1"));
        assert!(get("client_secret").is_none());
        let assertion = get("client_assertion").unwrap();
        let compact = Compact::parse(&assertion, 8192).unwrap();
        compact.verify(&keys, &[SigningAlgorithm::ES256]).unwrap();
        assert_eq!(compact.header().kid.as_deref(), Some("rcv-1"));
        let claims: Value = serde_json::from_slice(compact.payload()).unwrap();
        assert_eq!(claims["iss"], "0oa1");
        assert_eq!(claims["sub"], "0oa1");
        assert_eq!(claims["aud"], "https://id.example.com/oauth2/v1/token");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 120);
        // A new jti for every request: a provider refuses a replayed assertion.
        let (_, again) = form_of(source.grant_request().unwrap());
        let again = again
            .iter()
            .find(|(n, _)| n == "client_assertion")
            .unwrap()
            .1
            .clone();
        let jti = |a: &str| {
            let c = Compact::parse(a, 8192).unwrap();
            serde_json::from_slice::<Value>(c.payload()).unwrap()["jti"].clone()
        };
        assert_ne!(jti(&assertion), jti(&again));
    }
}
