//! From a parsed configuration to a running [`TokenService`]: keys (configured, or generated once
//! in the data directory), the store, clients and users.

use crate::config::{Config, ConfigError, StoreKind};
use crate::metrics::Metrics;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{KeySet, SigningAlgorithm, SigningKey, VerifyingKey};
use tollgate_issuer::TokenService;
use tollgate_sqlite::SqliteStore;
use tollgate_store::{MemoryStore, Store};

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

/// Reads the configured key files: the last check before anything is written.
pub(crate) fn read_keys(config: &Config) -> Result<Option<KeySet>, ConfigError> {
    if config.keys.is_empty() {
        return Ok(None);
    }
    let source = &config.source;
    let set = KeySet::new();
    for k in &config.keys {
        let der = std::fs::read(&k.path).map_err(|e| {
            source.error(
                &k.file,
                &k.key,
                format_args!("cannot read {}: {e}", k.path.display()),
            )
        })?;
        let signing_key = SigningKey::from_der(k.algorithm, &k.kid, &der)
            .map_err(|e| source.error(&k.file, &k.key, e))?;
        if k.signing {
            set.set_signing_key(signing_key);
        } else {
            let public = signing_key
                .verifying_key()
                .to_jwk()
                .ok_or_else(|| source.error(&k.file, &k.key, "no public key"))
                .and_then(|jwk| {
                    VerifyingKey::from_jwk(jwk).map_err(|e| source.error(&k.file, &k.key, e))
                })?;
            set.add_verifying_key(public)
                .map_err(|e| source.error(&k.file, &k.key, e))?;
        }
    }
    Ok(Some(set))
}

/// From a validated configuration and its keys to the token service: creates (and, for SQLite,
/// locks) the data directory, generates a signing key there if none is configured, opens the
/// store (measured by `metrics`, if given) and loads its state.
pub(crate) async fn build(
    config: Config,
    keys: Option<KeySet>,
    metrics: Option<&Metrics>,
) -> Result<TokenService, ConfigError> {
    let source = &config.source;
    let data_dir = &config.data_dir;
    let store: Arc<dyn Store> = match config.store {
        StoreKind::Sqlite => {
            create_private_dir(data_dir).map_err(|e| {
                source.error_at(
                    None,
                    format_args!("data_dir: cannot create {}: {e}", data_dir.display()),
                )
            })?;
            // Opening locks the directory: the generated key below is only ever written by the
            // process that holds it.
            Arc::new(
                SqliteStore::open(data_dir)
                    .map_err(|e| source.error_at(None, format_args!("data_dir: {e}")))?,
            )
        }
        StoreKind::Memory => {
            tracing::warn!("store = \"memory\": nothing survives a restart");
            Arc::new(MemoryStore::new())
        }
        StoreKind::Postgres => {
            let postgres = config.postgres.as_ref().ok_or_else(|| {
                source.error_at(None, "store: \"postgres\" needs a [postgres] table")
            })?;
            // Unreachable at start is fatal, with the reason in one line: a replica that cannot
            // reach the fleet's database has nothing to serve, and its supervisor restarts it.
            let store = tollgate_postgres::PostgresStore::connect(
                postgres.target.clone(),
                postgres.options(),
            )
            .await
            .map_err(|e| source.error_at(None, format_args!("postgres: {e}")))?;
            tracing::info!(database = %store.target(), pool_size = postgres.pool_size, "store: PostgreSQL");
            if keys.is_none() {
                tracing::warn!(
                    "store = \"postgres\" with no [[keys]]: the signing key generated in data_dir \
                     is this replica's alone; replicas must share configured keys"
                );
            }
            if config.replication().is_none() {
                tracing::warn!(
                    "store = \"postgres\" with no [replication]: revocations made at other \
                     replicas reach this one's index only on restart; give every replica one \
                     Redis"
                );
            }
            Arc::new(store)
        }
    };
    let store = match metrics {
        Some(metrics) => metrics.store(store),
        None => store,
    };
    let keys = match keys {
        Some(keys) => keys,
        None => {
            if config.store != StoreKind::Sqlite {
                create_private_dir(data_dir).map_err(|e| {
                    source.error_at(
                        None,
                        format_args!("data_dir: cannot create {}: {e}", data_dir.display()),
                    )
                })?;
            }
            let set = KeySet::new();
            set.set_signing_key(
                generated_key(data_dir)
                    .map_err(|e| source.error_at(None, format_args!("data_dir: {e}")))?,
            );
            set
        }
    };
    let mut builder = TokenService::builder()
        .issuer(config.issuer)
        .keys(keys)
        .store(store)
        .clients(config.directory.clone())
        .users(config.directory)
        .admin_role(config.admin_role)
        .tenants(config.tenants)
        .sign_in_throttle(config.sign_in_throttle)
        .access_token_lifetime(Duration::from_secs(config.tokens.access_token_lifetime))
        .max_access_token_lifetime(Duration::from_secs(config.tokens.max_access_token_lifetime))
        .refresh_token_lifetime(Duration::from_secs(config.tokens.refresh_token_lifetime));
    for audience in config.audience {
        builder = builder.audience(audience);
    }
    builder.build().await.map_err(|e| source.error_at(None, e))
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
    // The rename itself must survive a crash. A bare file name's parent is "": the current
    // directory.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
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
