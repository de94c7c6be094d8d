//! From a parsed configuration to a running [`TokenService`]: keys (configured, or generated once
//! in the data directory), the store, clients and users.

use crate::config::{Config, ConfigError, Source, StoreKind};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{KeySet, SigningAlgorithm, SigningKey, TenantPath, VerifyingKey};
use tollgate_issuer::{
    Client, ClientSecret, GrantType, MemoryStore, PasswordHash, SqliteStore, StaticDirectory,
    Store, TokenService, User,
};

/// The file a generated signing key is kept in, inside the data directory.
const GENERATED_KEY_FILE: &str = "signing-key.json";

/// A generated signing key as kept on disk (owner-only permissions).
#[derive(Serialize, Deserialize)]
struct GeneratedKey {
    kid: String,
    algorithm: String,
    /// PKCS#8 DER, base64.
    pkcs8: String,
}

/// What `serve` needs beyond the service itself.
pub(crate) struct Setup {
    pub(crate) service: TokenService,
    pub(crate) listen: std::net::SocketAddr,
}

pub(crate) async fn build(config: Config, source: &Source) -> Result<Setup, ConfigError> {
    let data_dir = resolve(source.base_dir(), &config.data_dir);
    create_private_dir(&data_dir).map_err(|e| {
        source.error_at(
            None,
            format_args!("data_dir: cannot create {}: {e}", data_dir.display()),
        )
    })?;
    let keys = keys(&config, source, &data_dir)?;
    let tenants = config
        .tenants
        .iter()
        .map(|t| tenant(source, t, "tenants"))
        .collect::<Result<Vec<_>, _>>()?;
    let known_tenant =
        |path: &TenantPath| tenants.is_empty() || tenants.iter().any(|t| t.covers(path.as_str()));
    let mut clients = Vec::new();
    for (i, c) in config.clients.into_iter().enumerate() {
        let key = |field: &str| format!("clients[{i}].{field}");
        let secret = match (&c.secret_hash, &c.secret_env) {
            (Some(hash), None) => ClientSecret::argon2(
                PasswordHash::parse(hash.get_ref())
                    .map_err(|e| source.error(hash, &key("secret_hash"), e))?,
            ),
            (None, Some(var)) => {
                let value = std::env::var(var.get_ref()).map_err(|_| {
                    source.error(
                        var,
                        &key("secret_env"),
                        format_args!("environment variable `{}` is not set", var.get_ref()),
                    )
                })?;
                if value.is_empty() {
                    return Err(source.error(var, &key("secret_env"), "the secret is empty"));
                }
                ClientSecret::from_plaintext(&value)
            }
            _ => {
                return Err(source.error_at(
                    None,
                    format_args!(
                        "{}: set exactly one of secret_hash and secret_env (client `{}`)",
                        key("secret_hash"),
                        c.id
                    ),
                ));
            }
        };
        let grants = c
            .grants
            .iter()
            .map(|g| {
                GrantType::parse(g.get_ref()).ok_or_else(|| {
                    source.error(
                        g,
                        &key("grants"),
                        format_args!(
                            "unknown grant `{}` (password, client_credentials, refresh_token)",
                            g.get_ref()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client_tenants =
            tenant_list(source, c.tenants.as_deref(), &key("tenants"), &known_tenant)?;
        let mut client = Client::new(c.id, secret)
            .with_grants(grants)
            .with_scopes(c.scopes)
            .with_audience(c.audience)
            .with_roles(c.roles)
            .with_tenants(client_tenants)
            .with_introspect_any(c.introspect_any);
        if let Some(seconds) = c.max_access_token_lifetime {
            client = client.with_max_access_token_lifetime(Duration::from_secs(seconds));
        }
        clients.push(client);
    }
    let mut users = Vec::new();
    for (i, u) in config.users.into_iter().enumerate() {
        let key = |field: &str| format!("users[{i}].{field}");
        let password = PasswordHash::parse(u.password_hash.get_ref())
            .map_err(|e| source.error(&u.password_hash, &key("password_hash"), e))?;
        let user_tenants =
            tenant_list(source, u.tenants.as_deref(), &key("tenants"), &known_tenant)?;
        let profile: serde_json::Map<_, _> = u
            .profile
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect();
        let subject = u.subject.unwrap_or_else(|| u.username.clone());
        let mut user = User::new(u.username, subject, password)
            .with_enabled(u.enabled)
            .with_tenants(user_tenants)
            .with_roles(u.roles)
            .with_profile(profile);
        if let Some(scopes) = u.scopes {
            user = user.with_scopes(scopes);
        }
        users.push(user);
    }
    let directory =
        Arc::new(StaticDirectory::new(clients, users).map_err(|e| source.error_at(None, e))?);
    let store: Arc<dyn Store> = match config.store {
        StoreKind::Sqlite => Arc::new(
            SqliteStore::open(&data_dir)
                .map_err(|e| source.error_at(None, format_args!("data_dir: {e}")))?,
        ),
        StoreKind::Memory => {
            tracing::warn!("store = \"memory\": nothing survives a restart");
            Arc::new(MemoryStore::new())
        }
    };
    let mut builder = TokenService::builder()
        .issuer(config.issuer)
        .keys(keys)
        .store(store)
        .clients(directory.clone())
        .users(directory)
        .admin_role(config.admin_role)
        .access_token_lifetime(Duration::from_secs(config.tokens.access_token_lifetime))
        .max_access_token_lifetime(Duration::from_secs(config.tokens.max_access_token_lifetime))
        .refresh_token_lifetime(Duration::from_secs(config.tokens.refresh_token_lifetime));
    for audience in config.audience {
        builder = builder.audience(audience);
    }
    let service = builder
        .build()
        .await
        .map_err(|e| source.error_at(None, e))?;
    Ok(Setup {
        service,
        listen: config.listen,
    })
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn tenant(
    source: &Source,
    value: &toml::Spanned<String>,
    key: &str,
) -> Result<TenantPath, ConfigError> {
    TenantPath::parse(value.get_ref()).map_err(|e| source.error(value, key, e))
}

fn tenant_list(
    source: &Source,
    values: Option<&[toml::Spanned<String>]>,
    key: &str,
    known: &dyn Fn(&TenantPath) -> bool,
) -> Result<Vec<TenantPath>, ConfigError> {
    let Some(values) = values else {
        return Ok(vec![TenantPath::root()]);
    };
    values
        .iter()
        .map(|v| {
            let path = tenant(source, v, key)?;
            if known(&path) {
                Ok(path)
            } else {
                Err(source.error(
                    v,
                    key,
                    format_args!("tenant `{}` is not declared in `tenants`", v.get_ref()),
                ))
            }
        })
        .collect()
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// The configured keys, or the key generated in the data directory (created on first start).
fn keys(config: &Config, source: &Source, data_dir: &Path) -> Result<KeySet, ConfigError> {
    let set = KeySet::new();
    if config.keys.is_empty() {
        set.set_signing_key(
            generated_key(data_dir)
                .map_err(|e| source.error_at(None, format_args!("data_dir: {e}")))?,
        );
        return Ok(set);
    }
    let mut signing = None;
    for (i, k) in config.keys.iter().enumerate() {
        let key = |field: &str| format!("keys[{i}].{field}");
        let algorithm: SigningAlgorithm = k
            .algorithm
            .get_ref()
            .parse()
            .ok()
            .filter(|a: &SigningAlgorithm| !a.is_symmetric())
            .ok_or_else(|| {
                source.error(
                    &k.algorithm,
                    &key("algorithm"),
                    "must be EdDSA, ES256 or RS256",
                )
            })?;
        let path = resolve(source.base_dir(), k.file.get_ref());
        let der = std::fs::read(&path).map_err(|e| {
            source.error(
                &k.file,
                &key("file"),
                format_args!("cannot read {}: {e}", path.display()),
            )
        })?;
        let signing_key = SigningKey::from_der(algorithm, &k.kid, &der)
            .map_err(|e| source.error(&k.file, &key("file"), e))?;
        if k.signing {
            if signing.is_some() {
                return Err(source.error(&k.file, &key("signing"), "only one key may sign"));
            }
            signing = Some(signing_key);
        } else {
            let public = signing_key
                .verifying_key()
                .to_jwk()
                .ok_or_else(|| source.error(&k.file, &key("file"), "no public key"))
                .and_then(|jwk| {
                    VerifyingKey::from_jwk(jwk).map_err(|e| source.error(&k.file, &key("file"), e))
                })?;
            set.add_verifying_key(public)
                .map_err(|e| source.error(&k.file, &key("file"), e))?;
        }
    }
    let signing =
        signing.ok_or_else(|| source.error_at(None, "keys: one key must have `signing = true`"))?;
    set.set_signing_key(signing);
    Ok(set)
}

fn generated_key(data_dir: &Path) -> Result<SigningKey, String> {
    let path = data_dir.join(GENERATED_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: GeneratedKey =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let algorithm: SigningAlgorithm = stored
                .algorithm
                .parse()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let der = STANDARD
                .decode(&stored.pkcs8)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let key = SigningKey::from_der(algorithm, stored.kid, &der)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!(kid = %key.kid(), "signing key loaded from the data directory");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kid = format!(
                "k-{}",
                tollgate_core::UnixMillis::from(std::time::SystemTime::now()).as_secs()
            );
            let key =
                SigningKey::generate(SigningAlgorithm::EdDSA, kid).map_err(|e| e.to_string())?;
            let stored = GeneratedKey {
                kid: key.kid().to_owned(),
                algorithm: key.algorithm().as_str().to_owned(),
                pkcs8: STANDARD.encode(key.to_der()),
            };
            let json = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?;
            write_private(&path, &json)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tracing::info!(kid = %key.kid(), path = %path.display(), "generated a signing key");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a secret file readable by its owner only, atomically (temp file, fsync, rename).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    // A stale (or planted) temporary file must not lend its permissions or be followed.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself must survive a crash.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) readable by its owner only: it holds a signing key and the
/// store.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
