//! A configuration file and its errors: one line, `file:line:column: key: what is wrong`.
//!
//! [`Source`] holds the file's path and text; [`Source::deserialize`] parses it into any serde
//! type, naming the key (through `serde_path_to_error`) and the line (through the TOML span) of
//! the first problem; [`Source::error`] makes the same kind of error for a value that parsed but
//! is not valid, from its `toml::Spanned` position.
//!
//! # Example
//!
//! ```
//! use serde::Deserialize;
//! use std::path::Path;
//! use tollgate_program::config::Source;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct File { listen: std::net::SocketAddr }
//!
//! let source = Source::new(Path::new("gw.toml"), "\nlisten = \"nowhere\"\n".into());
//! let error = source.deserialize::<File>().err().unwrap();
//! assert!(error.message().starts_with("gw.toml:2:10: listen: "), "{error}");
//! ```

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Longest accepted configuration file: a configuration is a few kilobytes, not megabytes.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The most replicas `min_replicas_acked` may require.
const MAX_REPLICAS_ACKED: u32 = 64;

/// A configuration error: one line, `file:line:column: key: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with this exact message (one line: line breaks become spaces).
    pub fn new(message: impl std::fmt::Display) -> Self {
        ConfigError(message.to_string().replace(['\n', '\r'], " "))
    }

    /// The one-line message (the same as `Display`).
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A configuration file's path and text: where values sit, for error messages.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// Text as if read from `path` (which names the file in errors and is the base of relative
    /// paths; it is not read).
    pub fn new(path: &Path, text: String) -> Self {
        Source {
            path: path.to_owned(),
            text,
        }
    }

    /// Reads the file at `path`, refusing one larger than [`MAX_FILE_SIZE`].
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let fail = |e: &dyn std::fmt::Display| {
            ConfigError::new(format_args!("{}: cannot read: {e}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_SIZE + 1), &mut text)
            .map_err(|e| fail(&e))?;
        if text.len() as u64 > MAX_FILE_SIZE {
            return Err(fail(&format_args!(
                "larger than {} KiB",
                MAX_FILE_SIZE / 1024
            )));
        }
        Ok(Source::new(path, text))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the text as TOML into `T`: syntax, types and unknown keys (with
    /// `deny_unknown_fields`) are reported as one line naming the line and the key.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let deserializer = toml::Deserializer::parse(&self.text)
            .map_err(|e| self.error_at(e.span(), e.message()))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // A `Spanned` value shows in the path as a private field: the key is its parent.
            let key = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let message = if key == "." || key.is_empty() {
                inner.message().to_owned()
            } else {
                format!("{key}: {}", inner.message())
            };
            self.error_at(inner.span(), message)
        })
    }

    /// `file:line:column: message`, or `file: message` without a span.
    pub fn error_at(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        match span {
            Some(span) => {
                let start = span.start.min(self.text.len());
                let before = self.text.get(..start).unwrap_or(&self.text);
                let line = before.matches('\n').count() + 1;
                let column = before.chars().count()
                    - before
                        .rfind('\n')
                        .map_or(0, |i| before[..=i].chars().count())
                    + 1;
                ConfigError::new(format_args!(
                    "{}:{line}:{column}: {message}",
                    self.path.display()
                ))
            }
            None => ConfigError::new(format_args!("{}: {message}", self.path.display())),
        }
    }

    /// The error for a spanned value: `file:line:column: key: message`.
    pub fn error<T>(
        &self,
        value: &Spanned<T>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        let span = value.span();
        // Defaults carry an empty span at 0: they have no place in the file.
        let span = (!span.is_empty()).then_some(span);
        self.error_at(span, format_args!("{key}: {message}"))
    }

    /// The secret named by `var` (a `password_env` key, at `key`): the environment variable must
    /// be set and not empty. The error names the variable, never a value.
    pub fn password_from_env(
        &self,
        var: &Spanned<String>,
        key: &str,
    ) -> Result<String, ConfigError> {
        let password = std::env::var(var.get_ref()).map_err(|_| {
            self.error(
                var,
                key,
                format_args!("environment variable `{}` is not set", var.get_ref()),
            )
        })?;
        if password.is_empty() {
            return Err(self.error(var, key, "the password is empty"));
        }
        Ok(password)
    }

    /// A Redis table's `key_prefix` (`[replication]` of `tollgate serve`, `[revocations]` of the
    /// gateway: one reading for both), checked, or `tollgate` when absent.
    pub fn redis_key_prefix(
        &self,
        table: &str,
        prefix: Option<&Spanned<String>>,
    ) -> Result<String, ConfigError> {
        match prefix {
            Some(prefix) => {
                check_key_prefix(prefix.get_ref())
                    .map_err(|e| self.error(prefix, &format!("{table}.key_prefix"), e))?;
                Ok(prefix.get_ref().clone())
            }
            None => Ok(DEFAULT_KEY_PREFIX.to_owned()),
        }
    }

    /// A Redis table's `on_unreadable` (`[replication]` of `tollgate serve`, `[revocations]` of
    /// the gateway: one reading for both): what its follower does with a stream entry it cannot
    /// read, `"refuse"` (the default when absent) or `"skip"`.
    pub fn redis_on_unreadable(
        &self,
        table: &str,
        policy: Option<&Spanned<String>>,
    ) -> Result<tollgate_redis::OnUnreadable, ConfigError> {
        match policy {
            Some(policy) => policy
                .get_ref()
                .parse()
                .map_err(|e| self.error(policy, &format!("{table}.on_unreadable"), e)),
            None => Ok(tollgate_redis::OnUnreadable::default()),
        }
    }

    /// A Redis to follow or publish to, from a table's `redis_url` (one server, `redis+sentinel://`
    /// or `redis+cluster://`), `password_env`, `ca_file` and `min_replicas_acked` keys (`table`
    /// names it in errors: `replication`, `revocations`). The URL's errors never echo it (it may
    /// hold a password).
    pub fn redis_target(
        &self,
        table: &str,
        url: &Spanned<String>,
        password_env: Option<&Spanned<String>>,
        ca_file: Option<&Spanned<PathBuf>>,
        min_replicas_acked: Option<&Spanned<u32>>,
    ) -> Result<tollgate_redis::RedisTarget, ConfigError> {
        let mut target = tollgate_redis::RedisTarget::new(url.get_ref())
            .map_err(|e| self.error(url, &format!("{table}.redis_url"), e))?;
        if let Some(var) = password_env {
            let key = format!("{table}.password_env");
            let password = self.password_from_env(var, &key)?;
            target = target
                .with_password(&password)
                .map_err(|e| self.error(var, &key, e))?;
        }
        if let Some(ca) = ca_file {
            let key = format!("{table}.ca_file");
            let path = self.resolve(ca.get_ref());
            let pem = std::fs::read(&path).map_err(|e| {
                self.error(
                    ca,
                    &key,
                    format_args!("cannot read {}: {e}", path.display()),
                )
            })?;
            target = target
                .with_ca_pem(pem)
                .map_err(|e| self.error(ca, &key, e))?;
        }
        if let Some(replicas) = min_replicas_acked {
            let count = *replicas.get_ref();
            // More than a replication group ever has: a typo that would block every write.
            if count > MAX_REPLICAS_ACKED {
                return Err(self.error(
                    replicas,
                    &format!("{table}.min_replicas_acked"),
                    format_args!("at most {MAX_REPLICAS_ACKED} (0: wait for no replica)"),
                ));
            }
            target = target.with_min_replicas_acked(count);
        }
        Ok(target)
    }

    /// A listener's connection limits from a table's `header_read_timeout` (seconds, 1 to 3600)
    /// and `max_connections` (1 to 1,000,000: tokio's semaphore holds at most `usize::MAX >> 3`
    /// permits) keys; `table` names them in errors (`server`, `limits`).
    pub fn connection_limits(
        &self,
        table: &str,
        header_read_timeout: &Spanned<u64>,
        max_connections: &Spanned<usize>,
    ) -> Result<crate::connection::Limits, ConfigError> {
        let timeout = *header_read_timeout.get_ref();
        if !(1..=3600).contains(&timeout) {
            return Err(self.error(
                header_read_timeout,
                &format!("{table}.header_read_timeout"),
                "must be between 1 and 3600 seconds",
            ));
        }
        let max = *max_connections.get_ref();
        if !(1..=1_000_000).contains(&max) {
            return Err(self.error(
                max_connections,
                &format!("{table}.max_connections"),
                "must be between 1 and 1000000",
            ));
        }
        Ok(crate::connection::Limits {
            header_read_timeout: std::time::Duration::from_secs(timeout),
            max_connections: max,
            ..crate::connection::Limits::default()
        })
    }

    /// The directory relative paths are resolved from.
    pub fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// `path`, or `path` under [`base_dir`](Self::base_dir) when it is relative.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(self.base_dir(), path)
    }
}

/// `path`, or `base/path` when it is relative.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// The key prefix of a Redis table that names none.
pub const DEFAULT_KEY_PREFIX: &str = "tollgate";

/// Checks a prefix of Redis keys: it becomes a Redis Cluster hash tag, `{prefix}`, which a brace
/// would end early.
pub fn check_key_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty()
        || prefix.len() > 256
        || prefix.chars().any(|c| c.is_control() || c.is_whitespace())
        || prefix.contains(['{', '}'])
    {
        return Err("must be 1 to 256 characters without spaces, braces or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_column_and_key() {
        let source = Source::new(Path::new("x.toml"), "a = 1\nb = \"é\"\n".into());
        let value = Spanned::new(10..13, 1);
        assert_eq!(
            source.error(&value, "b", "bad\nthing").message(),
            "x.toml:2:5: b: bad thing"
        );
        assert_eq!(source.error_at(None, "m").message(), "x.toml: m");
        assert_eq!(source.base_dir(), Path::new("."));
    }

    #[test]
    fn on_unreadable_is_refuse_unless_skip_is_written() {
        use tollgate_redis::OnUnreadable;
        let source = Source::new(Path::new("x.toml"), "on_unreadable = \"Skip\"\n".into());
        let read = |value: Option<Spanned<String>>| {
            source.redis_on_unreadable("revocations", value.as_ref())
        };
        assert_eq!(read(None), Ok(OnUnreadable::Refuse));
        assert_eq!(
            read(Some(Spanned::new(16..20, "skip".into()))),
            Ok(OnUnreadable::Skip)
        );
        assert_eq!(
            read(Some(Spanned::new(16..22, "refuse".into()))),
            Ok(OnUnreadable::Refuse)
        );
        assert_eq!(
            read(Some(Spanned::new(16..22, "Skip".into())))
                .unwrap_err()
                .message(),
            "x.toml:1:17: revocations.on_unreadable: must be \"refuse\" or \"skip\""
        );
    }
}
