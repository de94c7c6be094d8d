//! The TOML schema of `tollgate serve`'s configuration file, as read: every table and key with
//! its default. Validation (and the meaning of each key) is in [`super`]; the reference is
//! `docs/configuration.md`.

use super::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_METRICS_LISTEN};
use super::{Lifetimes, StoreKind};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use tollgate_program::signals::SharedSignalsTable;
use tollgate_program::tls::TlsTable;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default = "default_listen")]
    pub(super) listen: SocketAddr,
    pub(super) issuer: Spanned<String>,
    #[serde(default)]
    pub(super) audience: Vec<String>,
    #[serde(default = "default_data_dir")]
    pub(super) data_dir: PathBuf,
    #[serde(default)]
    pub(super) store: StoreKind,
    #[serde(default = "default_admin_role")]
    pub(super) admin_role: String,
    #[serde(default)]
    pub(super) tokens: Lifetimes,
    #[serde(default)]
    pub(super) server: ServerFile,
    #[serde(default)]
    pub(super) sign_in: SignInFile,
    #[serde(default)]
    pub(super) keys: Vec<KeyFile>,
    #[serde(default)]
    pub(super) tenants: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) clients: Vec<ClientFile>,
    #[serde(default)]
    pub(super) users: Vec<UserFile>,
    pub(super) replication: Option<ReplicationFile>,
    pub(super) metrics: Option<MetricsFile>,
    pub(super) postgres: Option<PostgresFile>,
    #[serde(default)]
    pub(super) shared_signals: Vec<Spanned<SharedSignalsTable>>,
    /// `[tls]`: HTTPS on `listen` (the metrics listener stays plain).
    pub(super) tls: Option<TlsTable>,
}

/// `[postgres]`: the database of `store = "postgres"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PostgresFile {
    pub(super) url: Spanned<String>,
    /// The name of an environment variable holding the password, so that it stays out of the
    /// file.
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) pool_size: Option<Spanned<usize>>,
    /// See `PostgresOptions::durable_access_tokens`.
    #[serde(default)]
    pub(super) durable_access_tokens: bool,
}

/// `[replication]`: revocations between processes through Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplicationFile {
    pub(super) redis_url: Spanned<String>,
    /// The name of an environment variable holding the password, so that it stays out of the
    /// file.
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) key_prefix: Option<Spanned<String>>,
    pub(super) snapshot_every: Option<u64>,
    /// PEM root certificates to trust for `rediss://` (a private CA), instead of the system's.
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    /// What the follower does with a stream entry it cannot read: `refuse` or `skip`.
    pub(super) on_unreadable: Option<Spanned<String>>,
    /// Replicas that must acknowledge a write before it counts as published (`WAIT`).
    pub(super) min_replicas_acked: Option<Spanned<u32>>,
}

/// `[metrics]`: Prometheus metrics on a listener of their own. Without the table, none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    #[serde(default = "default_metrics_listen")]
    pub(super) listen: Spanned<SocketAddr>,
}

pub(super) fn default_metrics_listen() -> Spanned<SocketAddr> {
    Spanned::new(0..0, DEFAULT_METRICS_LISTEN)
}

pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

pub(super) fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

pub(super) fn default_admin_role() -> String {
    "admin".into()
}

/// `[server]`: connection limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ServerFile {
    /// Seconds a connection has to send a complete request head (its first one from the moment
    /// it is accepted, later ones from the end of the previous response).
    pub(super) header_read_timeout: Spanned<u64>,
    /// Connections served at once; further ones wait in the listen backlog.
    pub(super) max_connections: Spanned<usize>,
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
pub(super) struct SignInFile {
    /// Which keys failed sign-ins are counted against: `username`, `username_and_address` or
    /// `both` (the default; see `SignInThrottle`).
    pub(super) throttle: Option<Spanned<String>>,
}

/// A signing or verification key, as a PKCS#8 DER file (see `tollgate keygen`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFile {
    pub(super) kid: String,
    pub(super) algorithm: Spanned<String>,
    pub(super) file: Spanned<PathBuf>,
    #[serde(default)]
    pub(super) signing: bool,
}

/// A client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientFile {
    pub(super) id: String,
    pub(super) secret_hash: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) grants: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) audience: Vec<String>,
    pub(super) max_access_token_lifetime: Option<u64>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    pub(super) tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) introspect_any: bool,
    /// `client_secret_basic` (the default; `client_secret_post` too), `tls_client_auth` or
    /// `self_signed_tls_client_auth` (RFC 8705 §2).
    pub(super) token_endpoint_auth_method: Option<Spanned<String>>,
    pub(super) tls_client_auth_subject_dn: Option<Spanned<String>>,
    pub(super) tls_client_auth_san_dns: Option<Spanned<String>>,
    pub(super) tls_client_auth_san_uri: Option<Spanned<String>>,
    pub(super) tls_client_auth_san_ip: Option<Spanned<String>>,
    pub(super) tls_client_auth_san_email: Option<Spanned<String>>,
    /// `self_signed_tls_client_auth`: the `x5t#S256` of each registered certificate.
    pub(super) certificate_thumbprints: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) tls_client_certificate_bound_access_tokens: bool,
}

/// A user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserFile {
    pub(super) username: String,
    pub(super) subject: Option<String>,
    pub(super) password_hash: Spanned<String>,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) tenants: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    pub(super) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) profile: toml::Table,
}

pub(super) fn yes() -> bool {
    true
}
