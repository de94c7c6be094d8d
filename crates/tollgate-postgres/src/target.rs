//! Which PostgreSQL to connect to, and how to name it in logs without its password.

use crate::tls::{MakeRustls, SslMode, SslOptions};
use std::fmt;
use tokio_postgres::config::Host;
use tollgate_store::StoreError;

/// A PostgreSQL server and database: a `postgresql://` URL or a `key=value` connection string,
/// parsed, with its TLS settings (`sslmode` and the files it names, read). Its `Display` and
/// `Debug` never show the password.
#[derive(Clone)]
pub struct PostgresTarget {
    config: tokio_postgres::Config,
    tls: MakeRustls,
    shown: String,
}

impl PostgresTarget {
    /// Parses `url` (`postgresql://user@host:port/db?options`, or `host=... user=...`).
    ///
    /// TLS follows libpq's options and their meanings: `sslmode` (`disable`, `prefer` (the
    /// default), `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file of CA
    /// certificates), `sslcert` and `sslkey` (a client certificate), with libpq's meanings (`docs/postgres.md` has the table).
    ///
    /// Fails (without echoing the URL, which may hold a password) if it does not parse, names no
    /// database user, or names a TLS file that cannot be read or used.
    pub fn new(url: &str) -> Result<PostgresTarget, StoreError> {
        let (rest, ssl) = split_ssl_options(url)
            .map_err(|e| StoreError::new(format!("PostgreSQL URL: {}", redact_error(&e, url))))?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e: tokio_postgres::Error| {
                StoreError::new(format!(
                    "invalid PostgreSQL URL: {}",
                    redact_error(&e.to_string(), url)
                ))
            })?;
        config.ssl_mode(ssl.mode().wire());
        if config.get_user().is_none() {
            return Err(StoreError::new(
                "PostgreSQL URL: no user (write postgresql://USER@HOST/DATABASE)",
            ));
        }
        let tls = ssl
            .connector()
            .map_err(|e| StoreError::new(format!("PostgreSQL URL: {e}")))?;
        let mut shown = show(&config);
        if ssl.mode() != SslMode::Prefer {
            shown = format!("{shown}?sslmode={}", ssl.mode().as_str());
        }
        Ok(PostgresTarget { config, tls, shown })
    }

    /// The TLS connector every connection to this target is made with.
    pub(crate) fn tls(&self) -> MakeRustls {
        self.tls.clone()
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
        let mode = self
            .shown
            .find("?sslmode=")
            .map(|i| self.shown[i..].to_owned());
        self.shown = show(&self.config) + mode.as_deref().unwrap_or("");
        self
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// `url` without its TLS options (which tokio-postgres does not know all of), and those
/// options. Both forms: a URL's query (`?sslmode=verify-full&sslrootcert=/ca.pem`), percent-
/// decoded; or `key=value` pairs, values optionally in single quotes with `\` escapes.
fn split_ssl_options(url: &str) -> Result<(String, SslOptions), String> {
    let mut ssl = SslOptions::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), ssl));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| format!("`{key}`: not UTF-8 once percent-decoded"))
            };
            if !ssl.take(&decode(key)?, &decode(value)?)? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, ssl));
    }
    let mut rest = String::new();
    for (raw, key, value) in key_values(url)? {
        if !ssl.take(&key, &value)? {
            rest.push_str(raw);
            rest.push(' ');
        }
    }
    Ok((rest.trim_end().to_owned(), ssl))
}

/// The `key = value` pairs of a libpq connection string: each as written, its key, its value
/// unquoted.
fn key_values(text: &str) -> Result<Vec<(&str, String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(pairs);
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!("`{key}` has no `=`"));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut end = text.len();
        loop {
            match chars.next() {
                None if quoted => return Err(format!("`{key}`: unterminated quoted value")),
                None => break,
                Some((_, '\\')) => match chars.next() {
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("`{key}`: ends with a lone `\\`")),
                },
                Some((i, '\'')) if quoted => {
                    end = i + 1;
                    break;
                }
                Some((i, c)) if !quoted && c.is_whitespace() => {
                    end = i;
                    break;
                }
                Some((_, c)) => value.push(c),
            }
        }
        pairs.push((&text[start..end], key, value));
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
    fn takes_libpq_tls_options_in_both_forms() {
        let (rest, ssl) = split_ssl_options(
            "postgresql://app@h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20b.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://app@h/db?application_name=x");
        assert_eq!(ssl.mode(), SslMode::VerifyFull);
        assert_eq!(
            ssl.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca b.pem"))
        );
        let (rest, ssl) = split_ssl_options(
            "host=h user=app sslmode = require sslrootcert='/etc/it\\'s ca.pem' dbname=db",
        )
        .unwrap();
        assert_eq!(rest, "host=h user=app dbname=db");
        assert_eq!(ssl.mode(), SslMode::Require);
        assert_eq!(
            ssl.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/it's ca.pem"))
        );
        let (_, ssl) = split_ssl_options("postgresql://app@h/db").unwrap();
        assert_eq!(ssl.mode(), SslMode::Prefer);
        assert!(split_ssl_options("host=h sslrootcert='/x").is_err());
    }

    #[test]
    fn tls_options_are_checked_when_parsed() {
        let e = PostgresTarget::new("postgresql://app@h/db?sslmode=verify-full").unwrap_err();
        assert!(e.to_string().contains("needs sslrootcert"), "{e}");
        let e = PostgresTarget::new("postgresql://app@h/db?sslmode=bogus").unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = PostgresTarget::new(
            "postgresql://app:pw@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(e.contains("sslrootcert: /nonexistent/ca.pem: "), "{e}");
        assert!(!e.contains(":pw") && !e.contains('\n'), "{e}");
        let e = PostgresTarget::new("postgresql://app@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.to_string().contains("sslkey"), "{e}");
        let shown = PostgresTarget::new("postgresql://app@h/db?sslmode=require")
            .unwrap()
            .to_string();
        assert_eq!(shown, "postgresql://app@h:5432/db?sslmode=require");
    }

    #[test]
    fn refuses_a_missing_user() {
        let error = PostgresTarget::new("postgresql://h/db").unwrap_err();
        assert!(error.to_string().contains("no user"), "{error}");
        let error = PostgresTarget::new("postgresql://app:pw@h/db?bogus=1").unwrap_err();
        assert!(!error.to_string().contains(":pw"), "{error}");
    }
}
