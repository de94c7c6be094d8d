//! Which PostgreSQL to connect to, and how to name it in logs without its password.

use std::fmt;
use tokio_postgres::config::{Host, SslMode};
use tollgate_store::StoreError;

/// A PostgreSQL server and database: a `postgresql://` URL or a `key=value` connection string,
/// parsed. Its `Display` and `Debug` never show the password.
#[derive(Clone)]
pub struct PostgresTarget {
    config: tokio_postgres::Config,
    shown: String,
}

impl PostgresTarget {
    /// Parses `url` (`postgresql://user@host:port/db?options`, or `host=... user=...`).
    ///
    /// Fails (without echoing the URL, which may hold a password) if it does not parse, names no
    /// database user, or asks for TLS (`sslmode=require`), which this version does not speak.
    pub fn new(url: &str) -> Result<PostgresTarget, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::new(format!(
                "invalid PostgreSQL URL: {}",
                redact_error(&e.to_string(), url)
            ))
        })?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(StoreError::new(
                "PostgreSQL URL: sslmode=require is not supported yet (connections are plain; use \
                 sslmode=disable or prefer, over a trusted network or a tunnel)",
            ));
        }
        if config.get_user().is_none() {
            return Err(StoreError::new(
                "PostgreSQL URL: no user (write postgresql://USER@HOST/DATABASE)",
            ));
        }
        let shown = show(&config);
        Ok(PostgresTarget { config, shown })
    }

    /// The same target with `password` (if `Some`) instead of any in the URL: for a password
    /// kept in the environment rather than in a file.
    pub fn with_password(mut self, password: Option<String>) -> PostgresTarget {
        if let Some(password) = password {
            self.config.password(password);
        }
        self
    }

    /// Whether a password is set (in the URL or by [`with_password`](Self::with_password)).
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// The same target, on database `dbname`.
    pub fn with_dbname(mut self, dbname: &str) -> PostgresTarget {
        self.config.dbname(dbname);
        self.shown = show(&self.config);
        self
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// `postgresql://user@host:port/db`, never the password.
fn show(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{}/{db}", hosts.join(","))
}

/// A parse error message, with the URL's password part cut out in case the parser quoted it.
fn redact_error(message: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(password) if !password.is_empty() => message.replace(password, "***"),
            _ => message.to_owned(),
        },
        Err(_) => message.to_owned(),
    }
}

impl fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresTarget").field(&self.shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_password() {
        let target = PostgresTarget::new("postgresql://app:s3cret@db.internal:6543/tollgate")
            .unwrap()
            .with_password(Some("other-secret".into()));
        let shown = format!("{target} {target:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("other-secret"),
            "{shown}"
        );
        assert_eq!(
            target.to_string(),
            "postgresql://app@db.internal:6543/tollgate"
        );
        assert!(target.has_password());
    }

    #[test]
    fn refuses_tls_and_a_missing_user() {
        let error = PostgresTarget::new("postgresql://app@h/db?sslmode=require").unwrap_err();
        assert!(error.to_string().contains("sslmode=require"), "{error}");
        let error = PostgresTarget::new("postgresql://h/db").unwrap_err();
        assert!(error.to_string().contains("no user"), "{error}");
        let error = PostgresTarget::new("postgresql://app:pw@h/db?bogus=1").unwrap_err();
        assert!(!error.to_string().contains(":pw"), "{error}");
    }
}
