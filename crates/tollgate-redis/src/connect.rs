//! Where Redis is and how to reach it: the URL (`redis://` or `rediss://`), an optional password
//! kept out of logs, and connections with bounded waits.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError};
use std::fmt;
use std::time::Duration;

/// How long connecting may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A Redis server to connect to. Its `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct RedisTarget {
    url: url::Url,
    /// PEM root certificates to trust for `rediss://` instead of the system's.
    ca: Option<std::sync::Arc<Vec<u8>>>,
}

/// Why a Redis target or connection failed; the message names the server without its password.
#[derive(Debug)]
pub struct ConnectError {
    message: String,
    /// The server answered and refused: a wrong password or user, not a network problem.
    refused: bool,
}

impl ConnectError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            refused: false,
        }
    }

    /// Whether Redis refused the credentials (retrying will not help) rather than being out of
    /// reach (retrying will).
    pub fn is_refused(&self) -> bool {
        self.refused
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

impl RedisTarget {
    /// Parses a `redis://` or `rediss://` URL (`redis://[user:password@]host[:port][/db]`).
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            // The URL may hold a password: never echo it.
            ConnectError::new(format!("invalid Redis URL: {e}"))
        })?;
        match parsed.scheme() {
            "redis" | "rediss" => {}
            other => {
                return Err(ConnectError::new(format!(
                    "invalid Redis URL: scheme {other:?}, expected redis:// or rediss://"
                )));
            }
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConnectError::new("invalid Redis URL: no host"));
        }
        let target = RedisTarget {
            url: parsed,
            ca: None,
        };
        // The redis crate's own checks (database number, TLS support).
        Client::open(target.url.as_str()).map_err(|e| {
            ConnectError::new(format!("invalid Redis URL {target}: {}", e.category()))
        })?;
        Ok(target)
    }

    /// Uses `password` (from the environment, say) instead of any in the URL.
    pub fn with_password(mut self, password: &str) -> Result<Self, ConnectError> {
        self.url
            .set_password(Some(password))
            .map_err(|()| ConnectError::new(format!("cannot set a password on {self}")))?;
        Ok(self)
    }

    /// Trusts these PEM root certificates (a private CA) for `rediss://`, instead of the
    /// system's trust store.
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Result<Self, ConnectError> {
        if !self.is_tls() {
            return Err(ConnectError::new(format!(
                "a CA certificate is only for rediss:// URLs, not {self}"
            )));
        }
        self.ca = Some(std::sync::Arc::new(pem));
        self.client()?;
        Ok(self)
    }

    fn client(&self) -> Result<Client, ConnectError> {
        let client = match &self.ca {
            None => Client::open(self.url.as_str()),
            Some(pem) => Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
        };
        client
            .map_err(|e| ConnectError::new(format!("cannot use Redis at {self}: {}", e.category())))
    }

    /// Whether connections use TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "rediss"
    }

    /// Opens a connection and checks that Redis answers (`PING`, after authenticating). Waits
    /// for a reply at most `response_timeout`.
    pub async fn connect(
        &self,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let client = self.client()?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(&e))?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(connection)
    }

    /// An error that names this server (without its password) and says whether Redis refused us.
    pub(crate) fn error(&self, e: &RedisError) -> ConnectError {
        let refused = e.kind() == ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        let what = if refused {
            "refused the credentials (check the password)".to_owned()
        } else {
            // The error's own text may quote the URL; its kind and code never do.
            match e.code() {
                Some(code) => format!("answered {code}"),
                None if e.is_timeout() => "did not answer in time".to_owned(),
                None if e.is_connection_refusal() => "refused the connection".to_owned(),
                None => format!("failed: {}", e.category()),
            }
        };
        ConnectError {
            message: format!("Redis at {self} {what}"),
            refused,
        }
    }
}

impl fmt::Display for RedisTarget {
    /// `redis://host:port/db`, with any user name but never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisTarget")
            .field(&format_args!("{self}"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let target = RedisTarget::new("redis://:s3cret@127.0.0.1:6390/2").unwrap();
        assert_eq!(target.to_string(), "redis://:***@127.0.0.1:6390/2");
        assert!(!format!("{target:?}").contains("s3cret"));
        let target = RedisTarget::new("rediss://cache.internal:6380")
            .unwrap()
            .with_password("fromenv")
            .unwrap();
        assert!(target.is_tls());
        assert!(!target.to_string().contains("fromenv"));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "http://x",
            "redis://",
            "not a url :secret@",
            "redis://h/notadb",
        ] {
            let error = RedisTarget::new(url).unwrap_err().to_string();
            assert!(error.starts_with("invalid Redis URL"), "{url}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
