//! The configuration file: its TOML schema, and loading it with errors that name the key and line.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub(crate) listen: SocketAddr,
    /// The issuer URL (`iss`); also the default audience.
    pub(crate) issuer: String,
    /// Default audiences of access tokens; `[issuer]` when empty.
    #[serde(default)]
    pub(crate) audience: Vec<String>,
    /// Where the store and a generated signing key live; relative paths are resolved from the
    /// configuration file's directory.
    #[serde(default = "default_data_dir")]
    pub(crate) data_dir: PathBuf,
    /// `sqlite` (durable, the default) or `memory` (nothing survives a restart).
    #[serde(default)]
    pub(crate) store: StoreKind,
    /// The role the batch-revocation API requires.
    #[serde(default = "default_admin_role")]
    pub(crate) admin_role: String,
    /// Token lifetimes.
    #[serde(default)]
    pub(crate) tokens: Lifetimes,
    /// Signing keys; the first with `signing = true` signs, the others only verify (rotation).
    #[serde(default)]
    pub(crate) keys: Vec<KeyConfig>,
    /// Tenants that exist; clients and users may only name these (and their sub-tenants).
    #[serde(default)]
    pub(crate) tenants: Vec<Spanned<String>>,
    /// Registered clients.
    #[serde(default)]
    pub(crate) clients: Vec<ClientConfig>,
    /// Users of the password grant.
    #[serde(default)]
    pub(crate) users: Vec<UserConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_admin_role() -> String {
    "admin".into()
}

/// Which store.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreKind {
    /// SQLite in `data_dir`.
    #[default]
    Sqlite,
    /// In memory: for demos and tests only.
    Memory,
}

/// Token lifetimes, in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Lifetimes {
    pub(crate) access_token_lifetime: u64,
    pub(crate) max_access_token_lifetime: u64,
    pub(crate) refresh_token_lifetime: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            access_token_lifetime: 300,
            max_access_token_lifetime: 3600,
            refresh_token_lifetime: 14 * 24 * 3600,
        }
    }
}

/// A signing or verification key, as a PKCS#8 DER file (see `tollgate keygen`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyConfig {
    pub(crate) kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub(crate) algorithm: Spanned<String>,
    /// The PKCS#8 DER file (relative to the configuration file).
    pub(crate) file: Spanned<PathBuf>,
    /// Whether this key signs new tokens; exactly one key must.
    #[serde(default)]
    pub(crate) signing: bool,
}

/// A client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientConfig {
    pub(crate) id: String,
    /// argon2id PHC hash of the secret (`tollgate hash-password`).
    pub(crate) secret_hash: Option<Spanned<String>>,
    /// Or: the name of an environment variable holding the secret.
    pub(crate) secret_env: Option<Spanned<String>>,
    /// `password`, `client_credentials`, `refresh_token`.
    pub(crate) grants: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default)]
    pub(crate) audience: Vec<String>,
    /// Seconds.
    pub(crate) max_access_token_lifetime: Option<u64>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    /// Tenants it may act in with `client_credentials`; `["/"]` when absent.
    pub(crate) tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) introspect_any: bool,
}

/// A user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserConfig {
    pub(crate) username: String,
    /// `sub` of the user's tokens; the username when absent.
    pub(crate) subject: Option<String>,
    /// argon2id PHC hash (`tollgate hash-password`).
    pub(crate) password_hash: Spanned<String>,
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    /// `["/"]` when absent.
    pub(crate) tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    pub(crate) scopes: Option<Vec<String>>,
    /// Extra claims for `/connect/userinfo`.
    #[serde(default)]
    pub(crate) profile: toml::Table,
}

fn yes() -> bool {
    true
}

/// A configuration error: one line naming the file, the line and the key.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where a value sits in the file, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// `file:line:column: message`.
    pub(crate) fn error_at(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        match span {
            Some(span) => {
                let before = &self.text[..span.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                ConfigError(format!(
                    "{}:{line}:{column}: {message}",
                    self.path.display()
                ))
            }
            None => ConfigError(format!("{}: {message}", self.path.display())),
        }
    }

    /// The error for a spanned value.
    pub(crate) fn error<T>(
        &self,
        value: &Spanned<T>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> ConfigError {
        self.error_at(Some(value.span()), format_args!("{key}: {message}"))
    }

    /// The directory relative paths are resolved from.
    pub(crate) fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// Reads and parses the configuration file.
pub(crate) fn load(path: &Path) -> Result<(Config, Source), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    let source = Source {
        path: path.to_owned(),
        text,
    };
    let config = parse(&source)?;
    Ok((config, source))
}

fn parse(source: &Source) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::parse(&source.text)
        .map_err(|e| source.error_at(e.span(), e.message()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = if key == "." || key.is_empty() {
            inner.message().to_owned()
        } else {
            format!("{key}: {}", inner.message())
        };
        source.error_at(inner.span(), message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            path: PathBuf::from("t.toml"),
            text: text.to_owned(),
        }
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let text = "issuer = \"http://x\"\n\n[[clients]]\nid = \"a\"\ngrants = \"password\"\n";
        let err = parse(&source(text)).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:5:"), "{err}");
        assert!(err.contains("clients[0].grants"), "{err}");

        let err = parse(&source("issuer = \"x\"\nlisten = \"nowhere\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:2:"), "{err}");
        assert!(err.contains("listen"), "{err}");

        let err = parse(&source("issuer = \"x\"\nlsten = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml:2:") && err.contains("lsten"), "{err}");

        let err = parse(&source("issuer = \n")).unwrap_err().to_string();
        assert!(err.starts_with("t.toml:1:"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let config = parse(&source("issuer = \"http://x\"\n")).unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.store, StoreKind::Sqlite);
        assert_eq!(config.tokens.access_token_lifetime, 300);
        assert_eq!(config.admin_role, "admin");
    }
}
