//! The configuration file: its TOML schema, and turning it into a validated [`Config`] with
//! errors that name the file, the line and the key.
//!
//! [`parse`] checks everything that can be checked without touching the disk (syntax, types,
//! unknown keys, grants, tenants, password hashes, key algorithms, duplicate clients and users);
//! `tollgate serve` reads the key files next and only then creates the data directory.
//! The reference for every key is `docs/configuration.md`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{SigningAlgorithm, TenantPath};
use tollgate_issuer::{
    Client, ClientSecret, GrantType, PasswordHash, SignInThrottle, StaticDirectory, User,
};
use tollgate_redis::RedisTarget;
use tollgate_redis::wire::Keys;
use toml::Spanned;

pub use tollgate_program::config::{ConfigError, MAX_FILE_SIZE};
pub(crate) use tollgate_program::config::{Source, check_key_prefix, resolve};

/// A validated configuration, ready for `tollgate serve`.
///
/// Made by [`parse`] or [`load`]; nothing in it has touched the disk yet except reading the
/// configuration file itself.
#[derive(Debug)]
pub struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) issuer: String,
    pub(crate) audience: Vec<String>,
    /// Resolved against the configuration file's directory.
    pub(crate) data_dir: PathBuf,
    pub(crate) store: StoreKind,
    /// `Some` exactly when `store = "postgres"`.
    pub(crate) postgres: Option<PostgresConfig>,
    pub(crate) admin_role: String,
    pub(crate) tokens: Lifetimes,
    pub(crate) server: ServerLimits,
    pub(crate) keys: Vec<KeySpec>,
    pub(crate) directory: Arc<StaticDirectory>,
    /// `tenants`: the tenants below the root that tokens may be issued for (empty: any).
    pub(crate) tenants: Vec<TenantPath>,
    /// `[sign_in] throttle`.
    pub(crate) sign_in_throttle: SignInThrottle,
    pub(crate) replication: Option<Replication>,
    /// `[metrics] listen`: where `/metrics` is served; `None` without a `[metrics]` table.
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) source: Source,
}

impl Config {
    /// The address `tollgate serve` listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The data directory, resolved against the configuration file's directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// How long a connection may take to send a complete request head.
    pub fn header_read_timeout(&self) -> Duration {
        self.server.header_read_timeout
    }

    /// How many connections are served at once.
    pub fn max_connections(&self) -> usize {
        self.server.max_connections
    }

    /// The `[replication]` table, if the file has one.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.as_ref()
    }

    /// The address of the metrics listener (`[metrics] listen`); `None` without `[metrics]`.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Replicates through the Redis at `url` (`tollgate serve --redis URL`): the file's
    /// `[replication]` table with its `redis_url` replaced, or one with every other key at its
    /// default. The URL's password, if any, never shows in logs.
    pub fn replicate_through(&mut self, url: &str) -> Result<(), String> {
        let target = RedisTarget::new(url).map_err(|e| format!("--redis: {e}"))?;
        match &mut self.replication {
            Some(replication) => {
                replication.target = target;
                replication.password_env = false;
            }
            None => {
                self.replication = Some(Replication {
                    target,
                    password_env: false,
                    key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
                    snapshot_every: DEFAULT_SNAPSHOT_EVERY,
                });
            }
        }
        Ok(())
    }
}

/// Default of `[replication] key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "tollgate";
/// Default of `[replication] snapshot_every`.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

/// The validated `[replication]` table: where the Redis of the revocation stream is, under which
/// keys, and how often this server writes a snapshot.
#[derive(Debug, Clone)]
pub struct Replication {
    /// With the password of `password_env` put in, if set; it never shows in `Display`/`Debug`.
    target: RedisTarget,
    /// Whether the password came from `password_env`.
    password_env: bool,
    key_prefix: String,
    snapshot_every: u64,
}

impl Replication {
    /// The Redis server (its `Display` hides the password).
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// Whether the password was taken from the environment variable `password_env` names.
    pub fn has_password_env(&self) -> bool {
        self.password_env
    }

    /// The prefix of the Redis keys (`{prefix}:revocations`, ...).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The Redis keys under [`key_prefix`](Self::key_prefix).
    pub fn keys(&self) -> Keys {
        Keys::new(&self.key_prefix)
    }

    /// Events applied between two snapshots written by this server (`0`: never).
    pub fn snapshot_every(&self) -> u64 {
        self.snapshot_every
    }
}

/// A configured key, checked but not read yet.
#[derive(Debug)]
pub(crate) struct KeySpec {
    pub(crate) kid: String,
    pub(crate) algorithm: SigningAlgorithm,
    /// Resolved against the configuration file's directory.
    pub(crate) path: PathBuf,
    pub(crate) signing: bool,
    /// For error messages: the `file` value and its key.
    pub(crate) file: Spanned<PathBuf>,
    pub(crate) key: String,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    issuer: Spanned<String>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    store: StoreKind,
    #[serde(default = "default_admin_role")]
    admin_role: String,
    #[serde(default)]
    tokens: Lifetimes,
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    sign_in: SignInFile,
    #[serde(default)]
    keys: Vec<KeyFile>,
    #[serde(default)]
    tenants: Vec<Spanned<String>>,
    #[serde(default)]
    clients: Vec<ClientFile>,
    #[serde(default)]
    users: Vec<UserFile>,
    replication: Option<ReplicationFile>,
    metrics: Option<MetricsFile>,
    postgres: Option<PostgresFile>,
}

/// `[postgres]`: the database of `store = "postgres"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresFile {
    url: Spanned<String>,
    /// The name of an environment variable holding the password, so that it stays out of the
    /// file.
    password_env: Option<Spanned<String>>,
    pool_size: Option<Spanned<usize>>,
    /// See `PostgresOptions::durable_access_tokens`.
    #[serde(default)]
    durable_access_tokens: bool,
}

/// Default of `[postgres] pool_size`.
pub const DEFAULT_POSTGRES_POOL_SIZE: usize = 8;

/// The validated `[postgres]` table.
#[derive(Debug, Clone)]
pub(crate) struct PostgresConfig {
    /// With the password of `password_env` put in, if set; it never shows in `Display`/`Debug`.
    pub(crate) target: tollgate_postgres::PostgresTarget,
    pub(crate) pool_size: usize,
    pub(crate) durable_access_tokens: bool,
}

impl PostgresConfig {
    /// The store's options: the pool size, the default time limits.
    pub(crate) fn options(&self) -> tollgate_postgres::PostgresOptions {
        tollgate_postgres::PostgresOptions::default()
            .pool_size(self.pool_size)
            .durable_access_tokens(self.durable_access_tokens)
    }
}

/// `[replication]`: revocations between processes through Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationFile {
    redis_url: Spanned<String>,
    /// The name of an environment variable holding the password, so that it stays out of the
    /// file.
    password_env: Option<Spanned<String>>,
    key_prefix: Option<Spanned<String>>,
    snapshot_every: Option<u64>,
    /// PEM root certificates to trust for `rediss://` (a private CA), instead of the system's.
    ca_file: Option<Spanned<PathBuf>>,
}

/// Default of `[metrics] listen`: loopback, on the port commonly used for an exporter that is
/// not registered with Prometheus (9464), so that a `[metrics]` table alone exposes nothing
/// beyond the host.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// `[metrics]`: Prometheus metrics on a listener of their own. Without the table, none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    #[serde(default = "default_metrics_listen")]
    listen: Spanned<SocketAddr>,
}

fn default_metrics_listen() -> Spanned<SocketAddr> {
    Spanned::new(0..0, DEFAULT_METRICS_LISTEN)
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
    /// PostgreSQL, as `[postgres]` says: for several replicas on one database.
    Postgres,
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

/// Default of `[server] header_read_timeout`, in seconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: u64 = 10;
/// Default of `[server] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// `[server]`: connection limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServerFile {
    /// Seconds a connection has to send a complete request head (its first one from the moment
    /// it is accepted, later ones from the end of the previous response).
    header_read_timeout: Spanned<u64>,
    /// Connections served at once; further ones wait in the listen backlog.
    max_connections: Spanned<usize>,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            header_read_timeout: Spanned::new(0..0, DEFAULT_HEADER_READ_TIMEOUT),
            max_connections: Spanned::new(0..0, DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// `[sign_in]`: the password grant's sign-ins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SignInFile {
    /// Which keys failed sign-ins are counted against: `username`, `username_and_address` or
    /// `both` (the default; see `SignInThrottle`).
    throttle: Option<Spanned<String>>,
}

/// The validated `[server]` table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// A signing or verification key, as a PKCS#8 DER file (see `tollgate keygen`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    kid: String,
    algorithm: Spanned<String>,
    file: Spanned<PathBuf>,
    #[serde(default)]
    signing: bool,
}

/// A client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    id: String,
    secret_hash: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    grants: Vec<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    audience: Vec<String>,
    max_access_token_lifetime: Option<u64>,
    #[serde(default)]
    roles: Vec<String>,
    tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    introspect_any: bool,
}

/// A user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    username: String,
    subject: Option<String>,
    password_hash: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    roles: Vec<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    profile: toml::Table,
}

fn yes() -> bool {
    true
}

/// Reads the configuration file at `path` and [`parse`]s it. Relative paths inside it are
/// resolved from the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = Source::read(path)?;
    let file = source.deserialize()?;
    validate(file, source)
}

/// Reads the configuration file at `path` and returns its `[replication]` table, validated
/// (`None` if it has none). The rest of the file must be well-formed (syntax, types, unknown
/// keys) but is not validated: `tollgate revoke --config` needs neither the clients' secrets
/// nor the keys.
pub fn load_replication(path: &Path) -> Result<Option<Replication>, ConfigError> {
    let source = Source::read(path)?;
    let file: File = source.deserialize()?;
    file.replication
        .map(|r| replication(&source, r))
        .transpose()
}

/// Parses and validates configuration text as if read from `path` (which names the file in
/// errors and is the base of relative paths; it is not read).
///
/// This is the whole of the configuration's validation: TOML syntax, types and unknown keys,
/// then every value (grants, tenants, password hashes, key algorithms, limits, duplicate ids).
/// It touches no file; a client's `secret_env` is read from the environment. Errors are one line,
/// `file:line:column: key: message`, and never echo a secret.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let source = Source::new(path, text.to_owned());
    let file = source.deserialize()?;
    validate(file, source)
}

fn validate(file: File, source: Source) -> Result<Config, ConfigError> {
    let issuer = file.issuer.get_ref().trim();
    if issuer.is_empty() {
        return Err(source.error(&file.issuer, "issuer", "must not be empty"));
    }
    let issuer = file.issuer.get_ref().clone();
    let server = server_limits(&source, &file.server)?;
    let sign_in_throttle = match &file.sign_in.throttle {
        Some(name) => name
            .get_ref()
            .parse::<SignInThrottle>()
            .map_err(|e| source.error(name, "sign_in.throttle", e))?,
        None => SignInThrottle::default(),
    };
    let replication = file
        .replication
        .map(|r| replication(&source, r))
        .transpose()?;
    let postgres = postgres(&source, file.store, file.postgres)?;
    let metrics = file
        .metrics
        .map(|m| metrics_listen(&source, &m, file.listen))
        .transpose()?;
    let keys = key_specs(&source, file.keys)?;
    let tenants = file
        .tenants
        .iter()
        .map(|t| {
            let path = tenant(&source, t, "tenants")?;
            if path.as_str() == "/" {
                return Err(source.error(
                    t,
                    "tenants",
                    "`/` is always there: list the tenants below it \
                     (listing `/` would allow every tenant)",
                ));
            }
            Ok(path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The root (every tenant) may always be named; a tenant below it must be declared, or be
    // below a declared one, when `tenants` is not empty.
    let known_tenant = |path: &TenantPath| {
        tenants.is_empty()
            || path.as_str() == "/"
            || tenants.iter().any(|t| t.covers(path.as_str()))
    };
    let mut clients = Vec::new();
    for (i, c) in file.clients.into_iter().enumerate() {
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
        let client_tenants = tenant_list(
            &source,
            c.tenants.as_deref(),
            &key("tenants"),
            &known_tenant,
        )?;
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
    for (i, u) in file.users.into_iter().enumerate() {
        let key = |field: &str| format!("users[{i}].{field}");
        let password = PasswordHash::parse(u.password_hash.get_ref())
            .map_err(|e| source.error(&u.password_hash, &key("password_hash"), e))?;
        let user_tenants = tenant_list(
            &source,
            u.tenants.as_deref(),
            &key("tenants"),
            &known_tenant,
        )?;
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
    let t = &file.tokens;
    if t.access_token_lifetime == 0 || t.max_access_token_lifetime == 0 {
        return Err(source.error_at(None, "tokens: access token lifetimes must be positive"));
    }
    if t.refresh_token_lifetime == 0 {
        return Err(source.error_at(None, "tokens.refresh_token_lifetime: must be positive"));
    }
    Ok(Config {
        listen: file.listen,
        issuer,
        audience: file.audience,
        data_dir: resolve(source.base_dir(), &file.data_dir),
        store: file.store,
        postgres,
        admin_role: file.admin_role,
        tokens: file.tokens,
        server,
        keys,
        directory,
        tenants,
        sign_in_throttle,
        replication,
        metrics,
        source,
    })
}

/// Validates `[postgres]` against `store`: the table is required by `store = "postgres"` and
/// meaningless otherwise.
fn postgres(
    source: &Source,
    store: StoreKind,
    file: Option<PostgresFile>,
) -> Result<Option<PostgresConfig>, ConfigError> {
    let file = match (store, file) {
        (StoreKind::Postgres, Some(file)) => file,
        (StoreKind::Postgres, None) => {
            return Err(source.error_at(
                None,
                "store: \"postgres\" needs a [postgres] table with its url",
            ));
        }
        (_, Some(file)) => {
            return Err(source.error(
                &file.url,
                "postgres",
                "the table is set but `store` is not \"postgres\"",
            ));
        }
        (_, None) => return Ok(None),
    };
    // `PostgresTarget`'s errors never echo the URL, which may hold a password.
    let mut target = tollgate_postgres::PostgresTarget::new(file.url.get_ref())
        .map_err(|e| source.error(&file.url, "postgres.url", e))?;
    if let Some(var) = &file.password_env {
        let password = source.password_from_env(var, "postgres.password_env")?;
        target = target.with_password(Some(password));
    }
    let pool_size = match &file.pool_size {
        Some(size) if *size.get_ref() < 4 || *size.get_ref() > 1000 => {
            return Err(source.error(size, "postgres.pool_size", "must be 4 to 1000"));
        }
        Some(size) => *size.get_ref(),
        None => DEFAULT_POSTGRES_POOL_SIZE,
    };
    Ok(Some(PostgresConfig {
        target,
        pool_size,
        durable_access_tokens: file.durable_access_tokens,
    }))
}

/// `[metrics] listen`: never the token service's own address (a port `0` is a fresh port
/// either way).
fn metrics_listen(
    source: &Source,
    file: &MetricsFile,
    listen: SocketAddr,
) -> Result<SocketAddr, ConfigError> {
    let address = *file.listen.get_ref();
    if address.port() != 0 && address == listen {
        return Err(source.error(
            &file.listen,
            "metrics.listen",
            "must differ from `listen`: the metrics are never served on the token service's listener",
        ));
    }
    Ok(address)
}

fn replication(source: &Source, file: ReplicationFile) -> Result<Replication, ConfigError> {
    let target = source.redis_target(
        "replication",
        &file.redis_url,
        file.password_env.as_ref(),
        file.ca_file.as_ref(),
    )?;
    let key_prefix = match &file.key_prefix {
        Some(prefix) => {
            check_key_prefix(prefix.get_ref())
                .map_err(|e| source.error(prefix, "replication.key_prefix", e))?;
            prefix.get_ref().clone()
        }
        None => DEFAULT_KEY_PREFIX.to_owned(),
    };
    Ok(Replication {
        target,
        password_env: file.password_env.is_some(),
        key_prefix,
        snapshot_every: file.snapshot_every.unwrap_or(DEFAULT_SNAPSHOT_EVERY),
    })
}

fn server_limits(source: &Source, server: &ServerFile) -> Result<ServerLimits, ConfigError> {
    let limits = source.connection_limits(
        "server",
        &server.header_read_timeout,
        &server.max_connections,
    )?;
    Ok(ServerLimits {
        header_read_timeout: limits.header_read_timeout,
        max_connections: limits.max_connections,
    })
}

fn key_specs(source: &Source, keys: Vec<KeyFile>) -> Result<Vec<KeySpec>, ConfigError> {
    let mut signing = false;
    let mut specs = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
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
        if k.signing {
            if signing {
                return Err(source.error(&k.file, &key("signing"), "only one key may sign"));
            }
            signing = true;
        }
        specs.push(KeySpec {
            kid: k.kid,
            algorithm,
            path: resolve(source.base_dir(), k.file.get_ref()),
            signing: k.signing,
            file: k.file,
            key: key("file"),
        });
    }
    if !specs.is_empty() && !signing {
        return Err(source.error_at(None, "keys: one key must have `signing = true`"));
    }
    Ok(specs)
}

fn tenant(source: &Source, value: &Spanned<String>, key: &str) -> Result<TenantPath, ConfigError> {
    TenantPath::parse(value.get_ref()).map_err(|e| source.error(value, key, e))
}

fn tenant_list(
    source: &Source,
    values: Option<&[Spanned<String>]>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        super::parse(text, Path::new("t.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let text = "issuer = \"http://x\"\n\n[[clients]]\nid = \"a\"\ngrants = \"password\"\n";
        let err = error(text);
        assert!(err.starts_with("t.toml:5:"), "{err}");
        assert!(err.contains("clients[0].grants"), "{err}");

        let err = error("issuer = \"x\"\nlisten = \"nowhere\"\n");
        assert!(err.starts_with("t.toml:2:"), "{err}");
        assert!(err.contains("listen"), "{err}");

        let err = error("issuer = \"x\"\nlsten = 1\n");
        assert!(err.contains("t.toml:2:") && err.contains("lsten"), "{err}");

        let err = error("issuer = \n");
        assert!(err.starts_with("t.toml:1:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let config = parse("issuer = \"http://x\"\n").unwrap();
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.store, StoreKind::Sqlite);
        assert_eq!(config.tokens.access_token_lifetime, 300);
        assert_eq!(config.admin_role, "admin");
        assert_eq!(config.data_dir, Path::new("./data"));
        assert_eq!(
            config.header_read_timeout(),
            Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT)
        );
        assert_eq!(config.max_connections(), DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn paths_are_relative_to_the_file() {
        let config = super::parse(
            "issuer = \"http://x\"\ndata_dir = \"d\"\n[[keys]]\nkid = \"k\"\nalgorithm = \"EdDSA\"\nfile = \"k.der\"\nsigning = true\n",
            Path::new("/etc/tollgate/tollgate.toml"),
        )
        .unwrap();
        assert_eq!(config.data_dir, Path::new("/etc/tollgate/d"));
        assert_eq!(config.keys[0].path, Path::new("/etc/tollgate/k.der"));
    }

    #[test]
    fn server_limits_are_checked() {
        let config =
            parse("issuer = \"x\"\n[server]\nheader_read_timeout = 3\nmax_connections = 7\n")
                .unwrap();
        assert_eq!(config.header_read_timeout(), Duration::from_secs(3));
        assert_eq!(config.max_connections(), 7);
        let err = error("issuer = \"x\"\n[server]\nheader_read_timeout = 0\n");
        assert!(
            err.starts_with("t.toml:3:") && err.contains("server.header_read_timeout"),
            "{err}"
        );
        let err = error("issuer = \"x\"\n[server]\nmax_connections = 0\n");
        assert!(
            err.starts_with("t.toml:3:") && err.contains("server.max_connections"),
            "{err}"
        );
        let err = error("issuer = \"x\"\n[server]\nmax_connections = \"a\"\n");
        assert!(
            err.starts_with("t.toml:3:19: server.max_connections: invalid type"),
            "a spanned value is named by its key alone: {err}"
        );
        let err = error("issuer = \"x\"\n[server]\nmax_conections = 1\n");
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn the_sign_in_throttle_is_one_of_three_and_both_by_default() {
        let config = parse("issuer = \"x\"\n").unwrap();
        assert_eq!(config.sign_in_throttle, SignInThrottle::Both);
        for (name, policy) in [
            ("username", SignInThrottle::Username),
            ("username_and_address", SignInThrottle::UsernameAndAddress),
            ("both", SignInThrottle::Both),
        ] {
            let config = parse(&format!(
                "issuer = \"x\"\n[sign_in]\nthrottle = \"{name}\"\n"
            ))
            .unwrap();
            assert_eq!(config.sign_in_throttle, policy);
        }
        let err = error("issuer = \"x\"\n[sign_in]\nthrottle = \"per_ip\"\n");
        assert_eq!(
            err,
            "t.toml:3:12: sign_in.throttle: unknown sign-in throttle `per_ip` \
             (username, username_and_address, both)"
        );
        let err = error("issuer = \"x\"\n[sign_in]\nthrottle = 1\n");
        assert!(
            err.starts_with("t.toml:3:12: sign_in.throttle: invalid type"),
            "{err}"
        );
        let err = error("issuer = \"x\"\n[sign_in]\nthrotle = \"both\"\n");
        assert!(err.contains("throtle"), "{err}");
    }

    #[test]
    fn the_tenant_list_restricts() {
        let err = error("issuer = \"x\"\ntenants = [\"/\", \"/A\"]\n");
        assert!(err.starts_with("t.toml:2:") && err.contains("`/`"), "{err}");
        let users = "issuer = \"x\"\ntenants = [\"/A\"]\n[[users]]\nusername = \"u\"\n\
                     password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$0HYi9wEY6gDoEsnZPMKZdw$RwOZH9IwvdSZolfZP5A/5Bm/pAiOfdHr5en/ZMcoGSg\"\n";
        assert!(parse(&format!("{users}tenants = [\"/A/B\", \"/\"]\n")).is_ok());
        let err = error(&format!("{users}tenants = [\"/B\"]\n"));
        assert!(
            err.contains("users[0].tenants") && err.contains("`/B` is not declared"),
            "{err}"
        );
    }

    #[test]
    fn keys_are_checked_without_reading_them() {
        let key = "[[keys]]\nkid = \"k\"\nalgorithm = \"EdDSA\"\nfile = \"missing.der\"\n";
        let err = error(&format!("issuer = \"x\"\n{key}"));
        assert!(err.contains("signing = true"), "{err}");
        let err = error(&format!(
            "issuer = \"x\"\n{key}signing = true\n{key}signing = true\n"
        ));
        assert!(err.contains("keys[1].signing"), "{err}");
        let err = error(
            "issuer = \"x\"\n[[keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nfile = \"f\"\nsigning = true\n",
        );
        assert!(err.contains("keys[0].algorithm"), "{err}");
    }

    #[test]
    fn replication_is_optional_and_checked() {
        assert!(parse("issuer = \"x\"\n").unwrap().replication().is_none());
        let config =
            parse("issuer = \"x\"\n[replication]\nredis_url = \"redis://:pw@127.0.0.1:6390/\"\n")
                .unwrap();
        let replication = config.replication().unwrap();
        assert_eq!(replication.key_prefix(), "tollgate");
        assert_eq!(replication.keys().stream, "{tollgate}:revocations");
        assert_eq!(replication.snapshot_every(), DEFAULT_SNAPSHOT_EVERY);
        assert_eq!(
            replication.target().to_string(),
            "redis://:***@127.0.0.1:6390/"
        );

        let table = "issuer = \"x\"\n[replication]\n";
        let err = error(&format!("{table}redis_url = \"http://:secret@h/\"\n"));
        assert!(
            err.starts_with("t.toml:3:") && err.contains("replication.redis_url"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let err = error(&format!("{table}key_prefix = \"a\"\n"));
        assert!(err.contains("redis_url"), "{err}");
        let url = "redis_url = \"redis://h/\"\n";
        let err = error(&format!("{table}{url}key_prefix = \"a}}b\"\n"));
        assert!(
            err.starts_with("t.toml:4:") && err.contains("replication.key_prefix"),
            "{err}"
        );
        let err = error(&format!("{table}{url}redis_password = \"x\"\n"));
        assert!(err.contains("redis_password"), "{err}");
        let err = error(&format!(
            "{table}{url}password_env = \"TOLLGATE_TEST_SURELY_UNSET_VARIABLE\"\n"
        ));
        assert!(
            err.starts_with("t.toml:4:") && err.contains("replication.password_env"),
            "{err}"
        );
        let config = parse(&format!(
            "{table}{url}key_prefix = \"eu\"\nsnapshot_every = 0\n"
        ))
        .unwrap();
        let replication = config.replication().unwrap();
        assert_eq!(replication.keys().epoch, "{eu}:epoch");
        assert_eq!(replication.snapshot_every(), 0);
        let err = error(&format!("{table}{url}ca_file = \"no-such-ca.pem\"\n"));
        assert!(
            err.starts_with("t.toml:4:") && err.contains("replication.ca_file"),
            "{err}"
        );
        let err = error(&format!("{table}{url}ca_file = \"Cargo.toml\"\n"));
        assert!(
            err.contains("replication.ca_file") && err.contains("rediss://"),
            "a CA for a plain-text URL: {err}"
        );
    }

    #[test]
    fn postgres_store_is_checked() {
        let store = "issuer = \"x\"\nstore = \"postgres\"\n";
        let err = error(store);
        assert!(err.contains("[postgres]"), "{err}");
        let table = format!("{store}[postgres]\n");
        let config = parse(&format!(
            "{table}url = \"postgresql://app:inline@db:5433/tg\"\n"
        ))
        .unwrap();
        let postgres = config.postgres.unwrap();
        assert_eq!(postgres.target.to_string(), "postgresql://app@db:5433/tg");
        assert_eq!(postgres.pool_size, DEFAULT_POSTGRES_POOL_SIZE);
        assert!(!format!("{postgres:?}").contains("inline"));

        let err = error(&format!(
            "{table}url = \"postgresql://app:secret@h/db?nope=1\"\n"
        ));
        assert!(
            err.starts_with("t.toml:4:") && err.contains("postgres.url"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let url = "url = \"postgresql://app@h/db\"\n";
        let err = error(&format!(
            "{table}{url}password_env = \"TOLLGATE_TEST_SURELY_UNSET_VARIABLE\"\n"
        ));
        assert!(
            err.starts_with("t.toml:5:") && err.contains("postgres.password_env"),
            "{err}"
        );
        let err = error(&format!("{table}{url}pool_size = 3\n"));
        assert!(
            err.starts_with("t.toml:5:") && err.contains("postgres.pool_size"),
            "{err}"
        );
        let err = error(&format!("{table}{url}password = \"x\"\n"));
        assert!(err.contains("password"), "{err}");
        let err = error(&format!("issuer = \"x\"\n[postgres]\n{url}"));
        assert!(
            err.starts_with("t.toml:3:") && err.contains("store"),
            "a [postgres] table the store ignores: {err}"
        );
    }

    #[test]
    fn metrics_are_off_unless_configured() {
        assert_eq!(parse("issuer = \"x\"\n").unwrap().metrics_listen(), None);
        let config = parse("issuer = \"x\"\n[metrics]\n").unwrap();
        assert_eq!(config.metrics_listen(), Some(DEFAULT_METRICS_LISTEN));
        let config = parse("issuer = \"x\"\n[metrics]\nlisten = \"0.0.0.0:9100\"\n").unwrap();
        assert_eq!(
            config.metrics_listen(),
            Some("0.0.0.0:9100".parse().unwrap())
        );

        let err = error("issuer = \"x\"\n[metrics]\nlisten = \"localhost\"\n");
        assert!(
            err.starts_with("t.toml:3:10: metrics.listen: invalid socket address"),
            "{err}"
        );
        let err = error("issuer = \"x\"\n[metrics]\nport = 9464\n");
        assert!(
            err.starts_with("t.toml:3:") && err.contains("port"),
            "{err}"
        );
        let err = error(
            "issuer = \"x\"\nlisten = \"127.0.0.1:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
        );
        assert!(
            err.starts_with("t.toml:4:") && err.contains("metrics.listen: must differ"),
            "{err}"
        );
    }

    #[test]
    fn odd_input_is_an_error_not_a_panic() {
        for text in [
            "",
            "issuer = \"\"",
            "\u{feff}issuer = \"x\"\nlisten = 5",
            "issuer = \"é\"\n[tokens]\naccess_token_lifetime = 0\n",
            "issuer = \"x\"\n[[users]]\nusername = \"ü\"\npassword_hash = \"ü\"\n",
            "issuer = \"x\"\n[server]\nmax_connections = -1\n",
            "issuer = \"x\"\n[server]\nheader_read_timeout = 18446744073709551615\n",
        ] {
            let err = error(text);
            assert!(err.starts_with("t.toml"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
