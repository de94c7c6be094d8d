//! Client authentication (RFC 6749 §2.3.1): `client_secret_basic` or `client_secret_post`, never
//! both, with constant-time secret comparison; or mutual TLS (RFC 8705 §2: `tls_client_auth`,
//! `self_signed_tls_client_auth`), the client sending only `client_id`. Each client uses the
//! one method it is registered with, and every kind of failure gets one answer.

use super::throttle::{POLICY, Throttle};
use crate::directory::{Client, Clients};
use crate::protocol::MAX_IDENTIFIER_LEN;
use crate::protocol::form::Form;
use crate::protocol::response::{ErrorCode, Failure};
use crate::secret::Hasher;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::StatusCode;
use http::header::AUTHORIZATION;
use http::request::Parts;
use percent_encoding::percent_decode_str;
use std::sync::Arc;
use tollgate_core::{ClientCertificate, Clock, UnixMillis};

/// Credentials as presented.
struct Presented {
    id: String,
    /// `None`: only `client_id` in the form, as a mutual-TLS client sends it.
    secret: Option<String>,
    basic: bool,
}

// Moved to core so that the Layer's trusted-proxy check reads the same extension.
pub use tollgate_core::PeerAddr;

/// Authenticates clients against the registered [`Clients`], throttling failures (RFC 6749
/// §2.3.1: the endpoint must be protected against brute force).
#[derive(Debug)]
pub(crate) struct ClientAuthenticator {
    clients: Arc<dyn Clients>,
    hasher: Hasher,
    throttle: Throttle,
    clock: Arc<dyn Clock>,
}

impl ClientAuthenticator {
    pub(crate) fn new(clients: Arc<dyn Clients>, hasher: Hasher, clock: Arc<dyn Clock>) -> Self {
        ClientAuthenticator {
            clients,
            hasher,
            throttle: Throttle::for_clients(),
            clock,
        }
    }

    /// Forgets throttle records that have been quiet long enough.
    pub(crate) fn forget_quiet(&self, now: UnixMillis) {
        self.throttle.forget_quiet(now);
    }

    /// Every scope some client may be granted.
    pub(crate) fn scopes_supported(&self) -> Vec<String> {
        self.clients.scopes_supported()
    }

    /// Authenticates the client of a form request.
    pub(crate) async fn authenticate(
        &self,
        request: &Parts,
        form: &Form,
    ) -> Result<Arc<Client>, Failure> {
        let presented = presented(&request.headers, form)?;
        if presented.id.len() > MAX_IDENTIFIER_LEN {
            // No client has such an id: answered like an unknown one, and never kept.
            return Err(unauthorized(presented.basic));
        }
        // Unknown ids are throttled like known ones: the throttle reveals nothing.
        let key = match request.extensions.get::<PeerAddr>() {
            Some(PeerAddr(ip)) => format!("{ip} {}", presented.id),
            None => presented.id.clone(),
        };
        let attempt = self
            .throttle
            .begin(&key, self.clock.now(), POLICY)
            .map_err(|wait| Failure {
                retry_after: Some(wait),
                basic_challenge: presented.basic,
                ..Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::InvalidClient,
                    "too many failed client authentications; retry later",
                )
            })?;
        let failure = || unauthorized(presented.basic);
        let client = self.clients.client(&presented.id).await.map_err(|e| {
            tracing::error!(error = %e, "client directory lookup failed");
            Failure::unavailable()
        })?;
        let certificate = request.extensions.get::<ClientCertificate>();
        let matched = match (client.as_deref(), &presented.secret) {
            // A registered method only: a secret never stands in for a certificate, nor the
            // other way round.
            (Some(c), None) => super::mtls::authenticates(&c.authentication, certificate),
            (Some(c), Some(_)) if c.authentication.is_mutual_tls() => false,
            // Unknown ids cost a digest and a comparison too.
            (c, Some(secret)) => {
                let verified = self
                    .hasher
                    .verify_client_secret(c.map(|c| &c.secret), secret)
                    .await;
                // RFC 8705 §3: the tokens of such a client are bound to the certificate of
                // the request, so a request without one cannot be served.
                verified
                    && c.is_some_and(|c| {
                        !c.certificate_bound_access_tokens || certificate.is_some()
                    })
            }
            (None, None) => false,
        };
        match client {
            Some(client) if matched => {
                attempt.succeeded();
                Ok(client)
            }
            Some(client) => {
                attempt.failed(self.clock.now());
                tracing::info!(client_id = %client.id, "client authentication failed");
                Err(failure())
            }
            // Not logged by id: a caller that swapped id and secret would put its secret in the log.
            None => {
                attempt.failed(self.clock.now());
                tracing::info!("client authentication failed: unknown client id");
                Err(failure())
            }
        }
    }
}

/// The `x5t#S256` the access tokens issued on `request` to `client` are bound to (RFC 8705 §3),
/// if its tokens are bound: the thumbprint of the certificate it authenticated with (client
/// authentication made sure there is one).
pub(crate) fn binding(client: &Client, request: &Parts) -> Result<Option<String>, Failure> {
    if !client.binds_tokens() {
        return Ok(None);
    }
    // Never an unbound token for a client whose tokens are bound.
    match request.extensions.get::<ClientCertificate>() {
        Some(certificate) => Ok(Some(certificate.x5t_s256())),
        None => Err(unauthorized(false)),
    }
}

/// `401 invalid_client`, with a Basic challenge when the credentials came in the header: one
/// answer for every kind of failure.
fn unauthorized(basic: bool) -> Failure {
    Failure {
        basic_challenge: basic,
        ..Failure::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidClient,
            "client authentication failed",
        )
    }
}

fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, Failure> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let header = authorization.next();
    if authorization.next().is_some() {
        return Err(Failure::invalid_request(
            "more than one Authorization header",
        ));
    }
    let Some(header) = header else {
        return match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), secret) => Ok(Presented {
                id: id.to_owned(),
                secret: secret.map(str::to_owned),
                basic: false,
            }),
            (None, _) => Err(unauthorized(false)),
        };
    };
    if form.get("client_secret").is_some() {
        return Err(Failure::invalid_request(
            "use one client authentication method, not both",
        ));
    }
    let (id, secret) = parse_basic(header.as_bytes()).ok_or_else(|| unauthorized(true))?;
    if form.get("client_id").is_some_and(|body_id| body_id != id) {
        return Err(Failure::invalid_request(
            "client_id does not match the Authorization header",
        ));
    }
    Ok(Presented {
        id,
        secret: Some(secret),
        basic: true,
    })
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, credentials) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let (id, secret) = (decode(id)?, decode(secret)?);
    (!id.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::parse_basic;

    #[test]
    fn basic_credentials_are_form_urlencoded_before_base64() {
        // id "my client", secret "p:ss%" encoded as RFC 6749 §2.3.1 requires.
        let header = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "my+client:p%3Ass%25"
            )
        );
        assert_eq!(
            parse_basic(header.as_bytes()),
            Some(("my client".into(), "p:ss%".into()))
        );
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Bearer abc"), None);
        let no_colon = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "nocolon")
        );
        assert_eq!(parse_basic(no_colon.as_bytes()), None);
    }
}
