//! The receiver's HTTP client for the transmitter's endpoints: JSON in, JSON out, a bearer token
//! on every request but discovery (fixed, or from OAuth 2.0 client credentials), bounded in time
//! and size.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use super::token::ClientCredentials;

/// A poll answer holds at most `maxEvents` SETs of at most 16 KiB; discovery and stream documents
/// are a few KiB.
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// An answer: its status and (bounded) body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The body as JSON of type `T`, or why not (never quoting the body).
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("{what} is not valid: {e}"))
    }
}

/// How the receiver authenticates to the transmitter's API. No `Debug`: it holds the token.
pub(crate) enum Credentials {
    /// One token for ever (`SsfReceiverBuilder::bearer_token`).
    Bearer(String),
    /// Tokens from the OAuth 2.0 client credentials grant, renewed before they expire.
    ClientCredentials(Arc<ClientCredentials>),
}

/// The `Authorization` header of a request: fixed, or asked of the token source each time.
#[derive(Debug, Clone)]
enum Authorization {
    /// `Bearer <token>`, marked sensitive so that no header dump shows it.
    Fixed(HeaderValue),
    Renewed(Arc<ClientCredentials>),
}

#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    authorization: Authorization,
    timeout: Duration,
}

impl HttpClient {
    pub(crate) fn new(credentials: Credentials, timeout: Duration) -> Result<Self, String> {
        let authorization = match credentials {
            Credentials::Bearer(token) => Authorization::Fixed(
                bearer_header(&token)
                    .ok_or_else(|| "the bearer token is not a valid header value".to_owned())?,
            ),
            Credentials::ClientCredentials(source) => Authorization::Renewed(source),
        };
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .build(connector()?),
            authorization,
            timeout,
        })
    }

    /// `GET uri`, with the bearer token when `authorized`.
    pub(crate) async fn get(&self, uri: &Uri, authorized: bool) -> Result<Answer, String> {
        self.send(Method::GET, uri, None, authorized).await
    }

    /// `POST uri` with a JSON body and the bearer token.
    pub(crate) async fn post(&self, uri: &Uri, body: &serde_json::Value) -> Result<Answer, String> {
        self.send(Method::POST, uri, Some(body.to_string()), true)
            .await
    }

    /// Sends the request; with renewed tokens, a `401` means the token was revoked or expired
    /// early, so a fresh one is fetched at once and the request sent once more.
    async fn send(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<String>,
        authorized: bool,
    ) -> Result<Answer, String> {
        let answer = self
            .send_once(method.clone(), uri, body.clone(), authorized)
            .await?;
        match &self.authorization {
            Authorization::Renewed(source)
                if authorized && answer.status == StatusCode::UNAUTHORIZED =>
            {
                source.refused();
                self.send_once(method, uri, body, authorized).await
            }
            _ => Ok(answer),
        }
    }

    async fn send_once(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<String>,
        authorized: bool,
    ) -> Result<Answer, String> {
        let is_json = body.is_some();
        let mut request = Request::new(Full::from(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if is_json {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if authorized {
            let authorization = match &self.authorization {
                Authorization::Fixed(value) => value.clone(),
                Authorization::Renewed(source) => source.authorization(self).await?,
            };
            request.headers_mut().insert(AUTHORIZATION, authorization);
        }
        self.exchange(request).await
    }

    /// Sends a request as it is (with tollgate's `User-Agent`), within the timeout, and reads its
    /// answer, bounded.
    pub(crate) async fn exchange(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Answer, String> {
        request.headers_mut().insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        let uri = request.uri().clone();
        let uri = &uri;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                // hyper-util's own message is only the error kind; the cause is in the chain.
                let mut message = format!("request to {} failed: {e}", without_query(uri));
                let mut source = e.source();
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                message
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer of {} failed: {e}", without_query(uri)))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                format!(
                    "{} did not answer within {:?}",
                    without_query(uri),
                    self.timeout
                )
            })?
    }
}

/// `Bearer <token>` as a sensitive header value, or `None` when the token cannot be one.
pub(crate) fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A URI for messages: without its query, which may carry identifiers the logs need not keep.
pub(crate) fn without_query(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

/// The provider is named explicitly, as `tollgate_layer::RemoteJwks` does: `with_webpki_roots()`
/// would panic if the final binary enabled both of rustls's crypto backends and installed no
/// default.
#[cfg(feature = "rustls")]
fn connector() -> Result<Connector, String> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("cannot set up TLS for the transmitter: {e}"))?;
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build())
}

#[cfg(not(feature = "rustls"))]
fn connector() -> Result<Connector, String> {
    Ok(HttpConnector::new())
}

/// Checks that `url` can be reached: absolute, `http` or `https` (`https` with the `rustls`
/// feature), with a host.
pub(crate) fn parse_url(what: &str, url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{what} {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s) if s.eq_ignore_ascii_case("https") => {
            if cfg!(not(feature = "rustls")) {
                return Err(format!(
                    "{what} {url:?} is https, which needs the rustls feature of tollgate-signals"
                ));
            }
        }
        _ => return Err(format!("{what} {url:?} is not an http or https URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{what} {url:?} has no host"));
    }
    Ok(uri)
}
