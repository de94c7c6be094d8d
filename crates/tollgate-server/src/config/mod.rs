//! The configuration file: its TOML schema, and turning it into a validated [`Config`] with
//! errors that name the file, the line and the key.
//!
//! [`parse`] checks everything that can be checked without touching the disk (syntax, types,
//! unknown keys, grants, tenants, password hashes, key algorithms, duplicate clients and users);
//! `tollgate serve` reads the key files next and only then creates the data directory.
//! The reference for every key is `docs/configuration.md`.

mod file;

use file::{
    ClientFile, File, KeyFile, MetricsFile, PostgresFile, ReplicationFile, ServerFile, UserFile,
};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{SigningAlgorithm, TenantPath};
use tollgate_issuer::{
    CertificateName, Client, ClientAuthentication, ClientSecret, GrantType, PasswordHash,
    SignInThrottle, StaticDirectory, SubjectDn, User,
};
use tollgate_program::signals::{Rules, SharedSignalsConfig, SharedSignalsTable};
use tollgate_program::tls::ServerTls;
use tollgate_redis::wire::Keys;
use tollgate_redis::{OnUnreadable, RedisTarget};
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
    /// One Shared Signals receiver per `[[shared_signals]]` table, publishing through the store.
    pub(crate) shared_signals: Vec<SharedSignalsConfig>,
    /// `[tls]`: HTTPS on `listen`; its files are read when the server starts.
    pub(crate) tls: Option<ServerTls>,
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

    /// `[tls]`, checked (its files are not read yet); `None`: plain HTTP.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The address of the metrics listener (`[metrics] listen`); `None` without `[metrics]`.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// `[[shared_signals]]` needs `[replication]` (or `--redis`): this server judges only its own
    /// tokens, so the cutoffs its receivers commit are for the followers of its Redis stream,
    /// which the relay publishes them to. Checked once the command line has had its say.
    pub fn check_shared_signals_replicated(&self) -> Result<(), String> {
        if self.shared_signals.is_empty() || self.replication.is_some() {
            return Ok(());
        }
        Err(format!(
            "{}: shared_signals: needs [replication] (or --redis): this server judges only its \
             own tokens, and the transmitters' cutoffs are for the followers of its Redis stream",
            self.source.path().display()
        ))
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
                    on_unreadable: OnUnreadable::default(),
                });
            }
        }
        Ok(())
    }
}

/// Default of `[replication] key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = tollgate_program::config::DEFAULT_KEY_PREFIX;
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
    on_unreadable: OnUnreadable,
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

    /// What this server's follower does with a stream entry it cannot read.
    pub fn on_unreadable(&self) -> OnUnreadable {
        self.on_unreadable
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

/// Default of `[metrics] listen`: loopback, on the port commonly used for an exporter that is
/// not registered with Prometheus (9464), so that a `[metrics]` table alone exposes nothing
/// beyond the host.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

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

/// The validated `[server]` table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections: usize,
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
    let shared_signals = shared_signals(&source, &file.shared_signals, &issuer)?;
    let tls = file
        .tls
        .as_ref()
        .map(|t| tollgate_program::tls::server::tls(&source, t))
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
    let clients = clients(&source, file.clients, &known_tenant)?;
    let users = users(&source, file.users, &known_tenant)?;
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
        shared_signals,
        tls,
        source,
    })
}

/// `[[shared_signals]]`, checked as the gateway checks them, with this server's rules: a
/// transmitter may revoke any issuer's tokens but this server's own, which its own endpoints
/// revoke (a cutoff of them from outside would also slip past the exact counts of a batch
/// revocation); a push path must not be one of the token service's.
fn shared_signals(
    source: &Source,
    tables: &[Spanned<SharedSignalsTable>],
    issuer: &str,
) -> Result<Vec<SharedSignalsConfig>, ConfigError> {
    let token_issuer = |name: &str| {
        if name == issuer {
            Err(
                "is this server's own issuer (its tokens are revoked through its own \
                 endpoints)"
                    .to_owned(),
            )
        } else {
            Ok(())
        }
    };
    let path_taken = |path: &str| {
        tollgate_issuer::TokenService::route(path).map(|p| format!("the token service's {p}"))
    };
    tollgate_program::signals::shared_signals(
        source,
        tables,
        Rules {
            token_issuer: &token_issuer,
            path_taken: &path_taken,
        },
    )
}

/// Validates `[postgres]` against `store`: the table is required by `store = "postgres"` and
/// meaningless otherwise.
/// `[[clients]]`, checked: one secret each (a hash, or an environment variable), known grants,
/// declared tenants.
fn clients(
    source: &Source,
    files: Vec<ClientFile>,
    known_tenant: &dyn Fn(&TenantPath) -> bool,
) -> Result<Vec<Client>, ConfigError> {
    let mut clients = Vec::new();
    for (i, c) in files.into_iter().enumerate() {
        let key = |field: &str| format!("clients[{i}].{field}");
        let authentication = client_authentication(source, &c, &key)?;
        let secret = match (&c.secret_hash, &c.secret_env) {
            (None, None) if authentication.is_mutual_tls() => None,
            (Some(secret), _) | (_, Some(secret)) if authentication.is_mutual_tls() => {
                return Err(source.error(
                    secret,
                    &key("token_endpoint_auth_method"),
                    "a client that authenticates with its certificate has no secret",
                ));
            }
            (Some(hash), None) => Some(ClientSecret::argon2(
                PasswordHash::parse(hash.get_ref())
                    .map_err(|e| source.error(hash, &key("secret_hash"), e))?,
            )),
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
                Some(ClientSecret::from_plaintext(&value))
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
            tenant_list(source, c.tenants.as_deref(), &key("tenants"), known_tenant)?;
        let client = match secret {
            Some(secret) => Client::new(c.id, secret),
            None => Client::mutual_tls(c.id, authentication),
        };
        let mut client = client
            .with_certificate_bound_access_tokens(c.tls_client_certificate_bound_access_tokens)
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
    Ok(clients)
}

/// A client's `token_endpoint_auth_method` and, for mutual TLS (RFC 8705 §2), what its
/// certificate must be: exactly one `tls_client_auth_*` name, or `certificate_thumbprints`.
fn client_authentication(
    source: &Source,
    c: &ClientFile,
    key: &dyn Fn(&str) -> String,
) -> Result<ClientAuthentication, ConfigError> {
    let names = [
        ("tls_client_auth_subject_dn", &c.tls_client_auth_subject_dn),
        ("tls_client_auth_san_dns", &c.tls_client_auth_san_dns),
        ("tls_client_auth_san_uri", &c.tls_client_auth_san_uri),
        ("tls_client_auth_san_ip", &c.tls_client_auth_san_ip),
        ("tls_client_auth_san_email", &c.tls_client_auth_san_email),
    ];
    let mut given = names
        .iter()
        .filter_map(|(field, value)| value.as_ref().map(|v| (*field, v)));
    let method_key = key("token_endpoint_auth_method");
    let method = c
        .token_endpoint_auth_method
        .as_ref()
        .map_or("client_secret_basic", |m| m.get_ref().as_str());
    match method {
        "client_secret_basic" | "client_secret_post" => {
            if let Some((field, value)) = given.next() {
                return Err(source.error(
                    value,
                    &key(field),
                    "only for token_endpoint_auth_method = \"tls_client_auth\"",
                ));
            }
            if let Some(t) = &c.certificate_thumbprints {
                return Err(source.error(
                    t,
                    &key("certificate_thumbprints"),
                    "only for token_endpoint_auth_method = \"self_signed_tls_client_auth\"",
                ));
            }
            Ok(ClientAuthentication::Secret)
        }
        "tls_client_auth" => {
            if let Some(t) = &c.certificate_thumbprints {
                return Err(source.error(
                    t,
                    &key("certificate_thumbprints"),
                    "only for token_endpoint_auth_method = \"self_signed_tls_client_auth\"",
                ));
            }
            let (Some((field, value)), None) = (given.next(), given.next()) else {
                return Err(source.error_at(
                    None,
                    format_args!(
                        "{}: tls_client_auth needs exactly one of tls_client_auth_subject_dn, \
                         _san_dns, _san_uri, _san_ip, _san_email (client `{}`)",
                        method_key, c.id
                    ),
                ));
            };
            let text = value.get_ref().trim();
            let bad = |e: &dyn std::fmt::Display| source.error(value, &key(field), e);
            let name = match field {
                "tls_client_auth_subject_dn" => {
                    CertificateName::SubjectDn(SubjectDn::parse(text).map_err(|e| bad(&e))?)
                }
                "tls_client_auth_san_ip" => {
                    CertificateName::SanIp(text.parse().map_err(|_| bad(&"not an IP address"))?)
                }
                _ if text.is_empty() => return Err(bad(&"empty")),
                "tls_client_auth_san_dns" => CertificateName::SanDns(text.to_owned()),
                "tls_client_auth_san_uri" => CertificateName::SanUri(text.to_owned()),
                _ => CertificateName::SanEmail(text.to_owned()),
            };
            Ok(ClientAuthentication::TlsClientAuth(name))
        }
        "self_signed_tls_client_auth" => {
            if let Some((field, value)) = given.next() {
                return Err(source.error(
                    value,
                    &key(field),
                    "only for token_endpoint_auth_method = \"tls_client_auth\"",
                ));
            }
            let field = key("certificate_thumbprints");
            let Some(thumbprints) = &c.certificate_thumbprints else {
                return Err(source.error_at(
                    None,
                    format_args!(
                        "{field}: self_signed_tls_client_auth needs the x5t#S256 of each of the \
                         client's certificates (client `{}`)",
                        c.id
                    ),
                ));
            };
            let list = thumbprints.get_ref();
            let valid = |t: &String| {
                t.len() == 43
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            if list.is_empty() || !list.iter().all(valid) {
                return Err(source.error(
                    thumbprints,
                    &field,
                    "each must be a certificate's SHA-256 thumbprint in base64url (43 characters)",
                ));
            }
            Ok(ClientAuthentication::SelfSignedTlsClientAuth(list.clone()))
        }
        other => {
            let message = format!(
                "unknown method `{other}` (client_secret_basic, client_secret_post, \
                 tls_client_auth, self_signed_tls_client_auth)"
            );
            Err(match &c.token_endpoint_auth_method {
                Some(m) => source.error(m, &method_key, message),
                None => source.error_at(None, format_args!("{method_key}: {message}")),
            })
        }
    }
}

/// `[[users]]`, checked: a password hash each, declared tenants, the profile as JSON.
fn users(
    source: &Source,
    files: Vec<UserFile>,
    known_tenant: &dyn Fn(&TenantPath) -> bool,
) -> Result<Vec<User>, ConfigError> {
    let mut users = Vec::new();
    for (i, u) in files.into_iter().enumerate() {
        let key = |field: &str| format!("users[{i}].{field}");
        let password = PasswordHash::parse(u.password_hash.get_ref())
            .map_err(|e| source.error(&u.password_hash, &key("password_hash"), e))?;
        let user_tenants =
            tenant_list(source, u.tenants.as_deref(), &key("tenants"), known_tenant)?;
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
    Ok(users)
}

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
        file.min_replicas_acked.as_ref(),
    )?;
    let key_prefix = source.redis_key_prefix("replication", file.key_prefix.as_ref())?;
    let on_unreadable = source.redis_on_unreadable("replication", file.on_unreadable.as_ref())?;
    Ok(Replication {
        target,
        password_env: file.password_env.is_some(),
        key_prefix,
        snapshot_every: file.snapshot_every.unwrap_or(DEFAULT_SNAPSHOT_EVERY),
        on_unreadable,
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
mod tests;
