//! The TOML schema of `gateway.toml`, as read: every table and key with its default. Validation
//! (and the meaning of each key) is in [`super::validate`]; the reference is `docs/gateway.md`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use tollgate_program::signals::SharedSignalsTable;
use tollgate_program::tls::TlsTable;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default = "default_listen")]
    pub(super) listen: SocketAddr,
    pub(super) workers: Option<Spanned<usize>>,
    /// The one issuer (with `audience` and `[keys]`), unless `[[issuers]]` lists several.
    pub(super) issuer: Option<Spanned<String>>,
    pub(super) audience: Option<Spanned<Vec<String>>>,
    pub(super) keys: Option<Spanned<KeysFile>>,
    #[serde(default)]
    pub(super) issuers: Vec<Spanned<IssuerFile>>,
    #[serde(default)]
    pub(super) validation: ValidationFile,
    pub(super) revocations: Option<RevocationsFile>,
    #[serde(default)]
    pub(super) ops: OpsFile,
    #[serde(default)]
    pub(super) limits: LimitsFile,
    #[serde(default)]
    pub(super) proxy: ProxyFile,
    pub(super) forward_auth: Option<ForwardAuthFile>,
    pub(super) back_channel_logout: Option<BackChannelLogoutFile>,
    #[serde(default)]
    pub(super) shared_signals: Vec<Spanned<SharedSignalsTable>>,
    /// `[tls]`: HTTPS on `listen` (the ops listener stays plain).
    pub(super) tls: Option<TlsTable>,
    #[serde(default)]
    pub(super) identity_headers: IdentityHeadersFile,
    pub(super) client_certificate: Option<ClientCertificateFile>,
    #[serde(default)]
    pub(super) upstreams: Vec<UpstreamFile>,
    #[serde(default)]
    pub(super) routes: Vec<RouteFile>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

/// `[keys]`: exactly one source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeysFile {
    pub(super) jwks_url: Option<Spanned<String>>,
    pub(super) discovery_url: Option<Spanned<String>>,
    pub(super) jwks_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) files: Vec<KeyFileEntry>,
    #[serde(default = "default_refresh")]
    pub(super) refresh_interval: Spanned<u64>,
}

fn default_refresh() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}

/// `[[issuers]]`: one of several issuers, with its own audiences, key source (the keys of
/// `[keys]`, spelled the same) and algorithms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuerFile {
    pub(super) issuer: Spanned<String>,
    pub(super) audience: Spanned<Vec<String>>,
    pub(super) jwks_url: Option<Spanned<String>>,
    pub(super) discovery_url: Option<Spanned<String>>,
    pub(super) jwks_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) files: Vec<KeyFileEntry>,
    #[serde(default = "default_refresh")]
    pub(super) refresh_interval: Spanned<u64>,
    /// `[validation] algorithms` when absent.
    pub(super) algorithms: Option<Vec<Spanned<String>>>,
    /// `[validation] require_at_jwt` when absent.
    pub(super) require_at_jwt: Option<bool>,
}

/// The key-source keys of `[keys]` or of one `[[issuers]]` table, read alike.
pub(super) struct KeySourceFile<'a> {
    pub(super) jwks_url: Option<&'a Spanned<String>>,
    pub(super) discovery_url: Option<&'a Spanned<String>>,
    pub(super) jwks_file: Option<&'a Spanned<PathBuf>>,
    pub(super) files: &'a [KeyFileEntry],
    pub(super) refresh_interval: &'a Spanned<u64>,
}

impl KeysFile {
    pub(super) fn source(&self) -> KeySourceFile<'_> {
        KeySourceFile {
            jwks_url: self.jwks_url.as_ref(),
            discovery_url: self.discovery_url.as_ref(),
            jwks_file: self.jwks_file.as_ref(),
            files: &self.files,
            refresh_interval: &self.refresh_interval,
        }
    }
}

impl IssuerFile {
    pub(super) fn source(&self) -> KeySourceFile<'_> {
        KeySourceFile {
            jwks_url: self.jwks_url.as_ref(),
            discovery_url: self.discovery_url.as_ref(),
            jwks_file: self.jwks_file.as_ref(),
            files: &self.files,
            refresh_interval: &self.refresh_interval,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFileEntry {
    pub(super) kid: String,
    pub(super) algorithm: Spanned<String>,
    pub(super) file: Spanned<PathBuf>,
}

/// `[validation]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ValidationFile {
    pub(super) leeway: u64,
    pub(super) require_at_jwt: bool,
    pub(super) cache_verified_tokens: usize,
    pub(super) realm: String,
    pub(super) algorithms: Option<Vec<Spanned<String>>>,
}

impl Default for ValidationFile {
    fn default() -> Self {
        ValidationFile {
            leeway: 30,
            require_at_jwt: true,
            // On, bounded: docs/gateway.md says why and what it costs (benches/cache_memory.rs).
            cache_verified_tokens: 10_000,
            realm: "tollgate".into(),
            algorithms: None,
        }
    }
}

/// `[revocations]`: the Redis feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevocationsFile {
    pub(super) redis_url: Spanned<String>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) key_prefix: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    /// Replicas that must acknowledge a logout's event or used `jti` before the signal is
    /// answered (`WAIT`).
    pub(super) min_replicas_acked: Option<Spanned<u32>>,
    #[serde(default = "yes")]
    pub(super) require_sync: bool,
    #[serde(default = "default_max_silence")]
    pub(super) max_silence: Spanned<u64>,
    /// What the follower does with a stream entry it cannot read: `refuse` or `skip`.
    pub(super) on_unreadable: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

fn default_max_silence() -> Spanned<u64> {
    Spanned::new(0..0, tollgate_redis::DEFAULT_MAX_SILENCE.as_secs())
}

/// `[ops]`: health and metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct OpsFile {
    pub(super) listen: SocketAddr,
}

impl Default for OpsFile {
    fn default() -> Self {
        OpsFile {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LimitsFile {
    pub(super) header_read_timeout: Spanned<u64>,
    pub(super) max_connections: Spanned<usize>,
    pub(super) max_header_bytes: Spanned<usize>,
    pub(super) client_rate: Spanned<f64>,
    pub(super) client_burst: Option<Spanned<u32>>,
    pub(super) drain_timeout: Spanned<u64>,
    pub(super) send_timeout: Spanned<u64>,
    pub(super) tunnel_idle_timeout: Spanned<u64>,
    pub(super) client_body_timeout: Spanned<u64>,
}

impl Default for LimitsFile {
    fn default() -> Self {
        let d = super::Limits::default();
        LimitsFile {
            header_read_timeout: Spanned::new(0..0, d.header_read_timeout.as_secs()),
            max_connections: Spanned::new(0..0, d.max_connections),
            max_header_bytes: Spanned::new(0..0, d.max_header_bytes),
            client_rate: Spanned::new(0..0, 0.0),
            client_burst: None,
            drain_timeout: Spanned::new(0..0, d.drain_timeout.as_secs()),
            send_timeout: Spanned::new(0..0, d.send_timeout.as_secs()),
            tunnel_idle_timeout: Spanned::new(0..0, d.tunnel_idle_timeout.as_secs()),
            client_body_timeout: Spanned::new(0..0, d.client_body_timeout.as_secs()),
        }
    }
}

/// `[proxy]`: what of a client's request is carried to upstreams.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ProxyFile {
    pub(super) upgrades: Vec<Spanned<String>>,
    pub(super) method_override: Spanned<String>,
}

impl Default for ProxyFile {
    fn default() -> Self {
        ProxyFile {
            upgrades: vec![Spanned::new(0..0, "websocket".to_owned())],
            method_override: Spanned::new(0..0, "strip".to_owned()),
        }
    }
}

/// `[client_certificate]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientCertificateFile {
    #[serde(default = "default_client_cert_header")]
    pub(super) header: Spanned<String>,
    #[serde(default = "no_proxies")]
    pub(super) trusted_proxies: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) require_bound_tokens: bool,
}

fn no_proxies() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

fn default_client_cert_header() -> Spanned<String> {
    Spanned::new(0..0, "Client-Cert".to_owned())
}

/// `[forward_auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForwardAuthFile {
    pub(super) path: Spanned<String>,
    pub(super) proxy: Spanned<String>,
}

/// `[identity_headers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct IdentityHeadersFile {
    pub(super) subject: Spanned<String>,
    pub(super) client: Spanned<String>,
    pub(super) tenant: Spanned<String>,
    pub(super) scopes: Spanned<String>,
    pub(super) roles: Spanned<String>,
    pub(super) jti: Spanned<String>,
}

impl Default for IdentityHeadersFile {
    fn default() -> Self {
        let s = |v: &str| Spanned::new(0..0, v.to_owned());
        IdentityHeadersFile {
            subject: s("x-auth-subject"),
            client: s("x-auth-client-id"),
            tenant: s("x-auth-tenant"),
            scopes: s("x-auth-scopes"),
            roles: s("x-auth-roles"),
            jti: s("x-auth-token-id"),
        }
    }
}

/// `[[upstreams]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamFile {
    pub(super) name: Spanned<String>,
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) h2c: bool,
    #[serde(default = "default_connect_timeout")]
    pub(super) connect_timeout: Spanned<u64>,
    #[serde(default = "default_response_timeout")]
    pub(super) response_timeout: Spanned<u64>,
    #[serde(default = "default_pool_idle")]
    pub(super) max_idle_connections: usize,
    /// `https://` only: trust only the CAs of this PEM file, not the system's.
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    /// `https://` only: the certificate (chain) presented when the upstream asks for one.
    pub(super) client_certificate: Option<Spanned<PathBuf>>,
    /// `https://` only: the private key of `client_certificate`.
    pub(super) client_key: Option<Spanned<PathBuf>>,
}

fn default_connect_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 5)
}

fn default_response_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}

fn default_pool_idle() -> usize {
    256
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub(super) prefix: Spanned<String>,
    pub(super) methods: Option<Vec<Spanned<String>>>,
    pub(super) upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) public: bool,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    pub(super) tenant: Option<Spanned<String>>,
    /// The issuers whose tokens the route accepts (any configured one when absent).
    pub(super) issuers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) strip_authorization: bool,
}

/// `[back_channel_logout]`: the OpenID Connect Back-Channel Logout receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackChannelLogoutFile {
    pub(super) path: Spanned<String>,
    pub(super) max_age: Option<Spanned<u64>>,
    pub(super) issuers: Spanned<Vec<LogoutIssuerFile>>,
}

/// One `[[back_channel_logout.issuers]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogoutIssuerFile {
    pub(super) issuer: Spanned<String>,
    pub(super) client_id: Spanned<String>,
    pub(super) revoke: Option<Spanned<String>>,
}
