//! `gateway.toml`: its schema ([`file`]), and turning it into a validated [`GatewayConfig`] whose
//! errors are one line naming the file, the line and the key (the same helper as `tollgate
//! serve`'s, from `tollgate-program`).
//!
//! [`load`] reads the file and the local key files it names; nothing is fetched over the
//! network here (a JWKS or discovery URL is fetched when the gateway starts). The reference for
//! every key is `docs/gateway.md`.

mod file;
mod signals;

use crate::forward_auth::{ForwardAuth, ForwardAuthProxy};
use crate::headers::{MethodOverride, Upgrades};
use crate::route::{Access, Requirements, Route, RouteTable};
use file::{
    File, IdentityHeadersFile, IssuerFile, KeySourceFile, LimitsFile, ProxyFile, RevocationsFile,
    RouteFile, UpstreamFile,
};
use http::{HeaderName, Method, Uri};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{KeySet, SigningAlgorithm, SigningKey, TenantPath, VerifyingKey};
use tollgate_program::config::Source;
use tollgate_redis::wire::Keys;
use tollgate_redis::{HealthPolicy, OnUnreadable, RedisTarget};
use toml::Spanned;

pub(crate) use signals::BackChannelLogoutConfig;

pub use tollgate_program::config::ConfigError;

/// A validated gateway configuration. Made by [`load`] or [`parse`].
#[derive(Debug)]
pub struct GatewayConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) ops_listen: SocketAddr,
    /// Never empty: the one issuer of `issuer`, `audience` and `[keys]`, or every `[[issuers]]`.
    pub(crate) issuers: Vec<IssuerConfig>,
    pub(crate) validation: Validation,
    pub(crate) revocations: Option<Revocations>,
    pub(crate) limits: Limits,
    pub(crate) proxy: Proxy,
    pub(crate) forward_auth: Option<ForwardAuth>,
    pub(crate) back_channel_logout: Option<BackChannelLogoutConfig>,
    /// One receiver per `[[shared_signals]]` table.
    pub(crate) shared_signals: Vec<tollgate_program::signals::SharedSignalsConfig>,
    /// `[tls]`: HTTPS on `listen`; its files are read when the gateway starts, before it
    /// listens.
    pub(crate) tls: Option<tollgate_program::tls::ServerTls>,
    pub(crate) identity: crate::identity::IdentityHeaders,
    /// `[client_certificate]`, or its defaults (`Client-Cert`, no proxy trusted).
    pub(crate) client_cert: crate::client_cert::ClientCertHeader,
    pub(crate) upstreams: Vec<UpstreamConfig>,
    pub(crate) routes: RouteTable,
}

impl GatewayConfig {
    /// The address requests are served on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// How many threads serve requests (`workers`; one per CPU by default).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The address of `/healthz`, `/readyz` and `/metrics`.
    pub fn ops_listen(&self) -> SocketAddr {
        self.ops_listen
    }

    /// Moves both listeners (for tests and for command-line overrides).
    pub fn set_listen(&mut self, listen: SocketAddr, ops_listen: SocketAddr) {
        self.listen = listen;
        self.ops_listen = ops_listen;
    }

    /// Whether revocations are followed from Redis (`[revocations]`).
    pub fn follows_revocations(&self) -> bool {
        self.revocations.is_some()
    }
}

/// One issuer whose tokens the gateway accepts, checked.
#[derive(Debug)]
pub(crate) struct IssuerConfig {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) keys: KeySource,
    /// `None`: every algorithm tollgate supports.
    pub(crate) algorithms: Option<Vec<SigningAlgorithm>>,
    pub(crate) require_at_jwt: bool,
    /// Where the key source is configured (`keys` or `issuers[N]`), to name it in errors at
    /// start (a JWKS URL or discovery document is fetched then).
    pub(crate) keys_key: String,
}

/// Where verification keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// Keys read from files at start.
    Local(KeySet),
    /// A JWKS URL, fetched at start and every `refresh`.
    Jwks { uri: Uri, refresh: Duration },
    /// An OpenID Connect discovery document naming the JWKS URL.
    Discovery { uri: Uri, refresh: Duration },
}

/// `[validation]`, checked. `require_at_jwt` and `algorithms` are those of the one issuer, or
/// the defaults of each `[[issuers]]` table that does not set its own.
#[derive(Debug, Clone)]
pub(crate) struct Validation {
    pub(crate) leeway: Duration,
    pub(crate) require_at_jwt: bool,
    pub(crate) cache_verified_tokens: usize,
    pub(crate) realm: String,
    pub(crate) algorithms: Option<Vec<SigningAlgorithm>>,
}

/// `[revocations]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct Revocations {
    pub(crate) target: RedisTarget,
    /// The key prefix the keys are under (the logout receiver keeps its `jti`s there too).
    pub(crate) prefix: String,
    pub(crate) keys: Keys,
    pub(crate) policy: HealthPolicy,
    pub(crate) on_unreadable: OnUnreadable,
}

/// `[limits]`: what a client may cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// From accepting a connection to its complete first request head.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Requests per second per client id (a token bucket); `0` turns the cap off.
    pub client_rate: f64,
    /// The bucket's size: requests a client may send at once after a quiet spell.
    pub client_burst: u32,
    /// How long in-flight requests get to finish after SIGTERM or SIGINT.
    pub drain_timeout: Duration,
    /// How long a write to a client may stay blocked (a client that does not read its
    /// response) before its connection is closed.
    pub send_timeout: Duration,
    /// How long an upgraded connection (a WebSocket tunnel) may carry nothing either way
    /// before it is closed.
    pub tunnel_idle_timeout: Duration,
    /// How long a client may send nothing of a request body it has started (408).
    pub client_body_timeout: Duration,
}

impl Default for Limits {
    /// 10 s for a request head, 1024 connections, 64 KiB of headers, no per-client cap, 30 s to
    /// drain, 30 s for a blocked write, 300 s for an idle tunnel, 60 s for a silent request
    /// body.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            client_rate: 0.0,
            client_burst: 0,
            drain_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            tunnel_idle_timeout: Duration::from_secs(300),
            client_body_timeout: Duration::from_secs(60),
        }
    }
}

/// `[proxy]`, checked: what of a client's request is carried to upstreams.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxy {
    pub(crate) upgrades: crate::headers::Upgrades,
    pub(crate) method_override: crate::headers::MethodOverride,
}

/// One `[[upstreams]]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamConfig {
    pub(crate) name: String,
    pub(crate) url: Uri,
    pub(crate) h2c: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) max_idle_connections: usize,
    /// For an `https://` URL: trust, client certificate and ALPN, files read.
    pub(crate) tls: Option<tollgate_program::tls::client::Connector>,
}

/// Reads `path` and validates it (reading the key files it names, resolved from the file's
/// directory).
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
    let source = Source::read(path)?;
    validate(&source)
}

/// Validates configuration text as if read from `path` (which names the file in errors and is
/// the base of relative paths). Key files named by `[keys]` are read.
pub fn parse(text: &str, path: &Path) -> Result<GatewayConfig, ConfigError> {
    validate(&Source::new(path, text.to_owned()))
}

fn validate(source: &Source) -> Result<GatewayConfig, ConfigError> {
    let file: File = source.deserialize()?;
    let validation = validation(source, &file.validation)?;
    let issuers = issuers(source, &file, &validation)?;
    let revocations = file
        .revocations
        .as_ref()
        .map(|r| revocations(source, r))
        .transpose()?;
    let limits = limits(source, &file.limits)?;
    let proxy = proxy(source, &file.proxy)?;
    let forward_auth = file
        .forward_auth
        .as_ref()
        .map(|f| forward_auth(source, f))
        .transpose()?;
    let back_channel_logout = file
        .back_channel_logout
        .as_ref()
        .map(|b| {
            let forward_auth_path = forward_auth.as_ref().map(|f| f.path.as_str());
            signals::back_channel_logout(source, b, &issuers, forward_auth_path)
        })
        .transpose()?;
    let taken: Vec<(&str, &str)> = [
        forward_auth
            .as_ref()
            .map(|f| ("forward_auth's path", f.path.as_str())),
        back_channel_logout
            .as_ref()
            .map(|b| ("back_channel_logout's path", b.path.as_str())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let shared_signals = signals::shared_signals(source, &file.shared_signals, &issuers, &taken)?;
    let identity = identity_headers(source, &file.identity_headers)?;
    let client_cert = file
        .client_certificate
        .as_ref()
        .map(|c| client_certificate(source, c, &identity))
        .transpose()?
        .unwrap_or_default();
    let tls = file
        .tls
        .as_ref()
        .map(|t| tollgate_program::tls::server::tls(source, t))
        .transpose()?;
    let upstreams = upstreams(source, &file.upstreams)?;
    let routes = routes(source, &file.routes, &upstreams, &issuers)?;
    let workers = match &file.workers {
        Some(w) if !(1..=1024).contains(w.get_ref()) => {
            return Err(source.error(w, "workers", "must be between 1 and 1024"));
        }
        Some(w) => *w.get_ref(),
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    Ok(GatewayConfig {
        listen: file.listen,
        workers,
        ops_listen: file.ops.listen,
        issuers,
        validation,
        revocations,
        limits,
        proxy,
        forward_auth,
        back_channel_logout,
        shared_signals,
        tls,
        identity,
        client_cert,
        upstreams,
        routes: RouteTable::new(routes),
    })
}

/// The issuers: either the one of the top-level `issuer`, `audience` and `[keys]`, or every
/// `[[issuers]]` table; never both (which would the operator mean?).
fn issuers(
    source: &Source,
    file: &File,
    defaults: &Validation,
) -> Result<Vec<IssuerConfig>, ConfigError> {
    if file.issuers.is_empty() {
        return one_issuer(source, file, defaults).map(|issuer| vec![issuer]);
    }
    let single_form = [
        file.issuer.as_ref().map(|v| ("issuer", v.span())),
        file.audience.as_ref().map(|v| ("audience", v.span())),
        file.keys.as_ref().map(|v| ("keys", v.span())),
    ];
    if let Some((key, span)) = single_form.into_iter().flatten().next() {
        return Err(source.error_at(
            Some(span),
            format_args!(
                "{key}: set either issuer, audience and [keys] (one issuer) or [[issuers]] \
                 (several), not both"
            ),
        ));
    }
    let mut issuers: Vec<IssuerConfig> = Vec::with_capacity(file.issuers.len());
    for (i, table) in file.issuers.iter().enumerate() {
        let issuer = listed_issuer(source, table, &format!("issuers[{i}]"), defaults)?;
        if issuers.iter().any(|other| other.issuer == issuer.issuer) {
            let name = &table.get_ref().issuer;
            return Err(source.error(
                name,
                &format!("issuers[{i}].issuer"),
                format_args!("`{}` is configured twice", name.get_ref()),
            ));
        }
        issuers.push(issuer);
    }
    Ok(issuers)
}

/// The one issuer of the top-level `issuer`, `audience` and `[keys]`, with `[validation]`'s
/// algorithms and `require_at_jwt`.
fn one_issuer(
    source: &Source,
    file: &File,
    defaults: &Validation,
) -> Result<IssuerConfig, ConfigError> {
    let missing = |key: &str| {
        source.error_at(
            None,
            format_args!("missing field `{key}` (set issuer, audience and [keys], or [[issuers]])"),
        )
    };
    let issuer = file.issuer.as_ref().ok_or_else(|| missing("issuer"))?;
    let audience = file.audience.as_ref().ok_or_else(|| missing("audience"))?;
    let keys = file.keys.as_ref().ok_or_else(|| missing("keys"))?;
    Ok(IssuerConfig {
        issuer: issuer_name(source, issuer, "issuer")?,
        audiences: audiences(source, audience, "audience")?,
        keys: key_source(source, keys.get_ref().source(), keys, "keys")?,
        algorithms: defaults.algorithms.clone(),
        require_at_jwt: defaults.require_at_jwt,
        keys_key: "keys".to_owned(),
    })
}

/// One `[[issuers]]` table (at `key`), checked; `[validation]` gives what it does not set.
fn listed_issuer(
    source: &Source,
    table: &Spanned<IssuerFile>,
    key: &str,
    defaults: &Validation,
) -> Result<IssuerConfig, ConfigError> {
    let file = table.get_ref();
    let algorithms = match &file.algorithms {
        Some(list) => Some(algorithms(source, list, &format!("{key}.algorithms"))?),
        None => defaults.algorithms.clone(),
    };
    Ok(IssuerConfig {
        issuer: issuer_name(source, &file.issuer, &format!("{key}.issuer"))?,
        audiences: audiences(source, &file.audience, &format!("{key}.audience"))?,
        keys: key_source(source, file.source(), table, key)?,
        algorithms,
        require_at_jwt: file.require_at_jwt.unwrap_or(defaults.require_at_jwt),
        keys_key: key.to_owned(),
    })
}

/// An issuer's `iss`, compared exactly with tokens' (so not trimmed), and not blank.
fn issuer_name(
    source: &Source,
    issuer: &Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    if issuer.get_ref().trim().is_empty() {
        return Err(source.error(issuer, key, "must not be empty"));
    }
    Ok(issuer.get_ref().clone())
}

fn audiences(
    source: &Source,
    audience: &Spanned<Vec<String>>,
    key: &str,
) -> Result<Vec<String>, ConfigError> {
    let list = audience.get_ref();
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err(source.error(audience, key, "name at least one audience, none empty"));
    }
    Ok(list.clone())
}

/// `[[upstreams]]`, checked: unique names, `http://` or `https://` URLs with a host, timeouts
/// in range, the TLS keys of an `https://` one (its files read).
fn upstreams(source: &Source, files: &[UpstreamFile]) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let mut upstreams: Vec<UpstreamConfig> = Vec::new();
    for (i, u) in files.iter().enumerate() {
        let key = |field: &str| format!("upstreams[{i}].{field}");
        if u.name.get_ref().is_empty() || upstreams.iter().any(|o| &o.name == u.name.get_ref()) {
            return Err(source.error(&u.name, &key("name"), "must be non-empty and unique"));
        }
        let url: Uri = u
            .url
            .get_ref()
            .parse()
            .map_err(|e| source.error(&u.url, &key("url"), e))?;
        let https = url.scheme_str() == Some("https");
        if !(https || url.scheme_str() == Some("http"))
            || url.authority().is_none()
            || url.query().is_some()
        {
            return Err(source.error(
                &u.url,
                &key("url"),
                "must be an http:// or https:// URL with a host and no query",
            ));
        }
        let tls = if https {
            if u.h2c {
                return Err(source.error(
                    &u.url,
                    &key("h2c"),
                    "is for http:// upstreams (an https:// upstream offers HTTP/2 by ALPN)",
                ));
            }
            Some(upstream_tls(source, u, &url, i)?)
        } else {
            let tls_key = [
                ("ca_file", &u.ca_file),
                ("client_certificate", &u.client_certificate),
                ("client_key", &u.client_key),
            ]
            .into_iter()
            .find_map(|(field, value)| value.as_ref().map(|v| (field, v)));
            if let Some((field, value)) = tls_key {
                return Err(source.error(
                    value,
                    &key(field),
                    "is for https:// upstreams only (this one's url is http://)",
                ));
            }
            None
        };
        let seconds = |v: &Spanned<u64>, field: &str| {
            if (1..=3600).contains(v.get_ref()) {
                Ok(Duration::from_secs(*v.get_ref()))
            } else {
                Err(source.error(v, &key(field), "must be between 1 and 3600 seconds"))
            }
        };
        upstreams.push(UpstreamConfig {
            name: u.name.get_ref().clone(),
            url,
            h2c: u.h2c,
            connect_timeout: seconds(&u.connect_timeout, "connect_timeout")?,
            response_timeout: seconds(&u.response_timeout, "response_timeout")?,
            max_idle_connections: u.max_idle_connections,
            tls,
        });
    }
    Ok(upstreams)
}

/// The TLS of the `i`th upstream, an `https://` one: its `ca_file` (else the system's roots),
/// `client_certificate` and `client_key` (both or neither), ALPN `h2` then `http/1.1`.
fn upstream_tls(
    source: &Source,
    u: &UpstreamFile,
    url: &Uri,
    i: usize,
) -> Result<tollgate_program::tls::client::Connector, ConfigError> {
    use tollgate_program::tls::client::{ALPN_H2, ALPN_HTTP11, Connector, Identity, Part, Trust};
    let key = |field: &str| format!("upstreams[{i}].{field}");
    let trust = match &u.ca_file {
        Some(ca) => Trust::CaFile(source.resolve(ca.get_ref())),
        None => Trust::System,
    };
    let identity = match (&u.client_certificate, &u.client_key) {
        (Some(certificate), Some(k)) => Some(Identity {
            certificate: source.resolve(certificate.get_ref()),
            key: source.resolve(k.get_ref()),
        }),
        (None, None) => None,
        (Some(certificate), None) => {
            return Err(source.error(
                certificate,
                &key("client_certificate"),
                "needs client_key too",
            ));
        }
        (None, Some(k)) => {
            return Err(source.error(k, &key("client_key"), "needs client_certificate too"));
        }
    };
    let host = url.host().unwrap_or_default();
    Connector::new(host, &trust, identity.as_ref(), &[ALPN_H2, ALPN_HTTP11]).map_err(|e| {
        // The key of the file at fault; the URL for a host that is no TLS name, or for an
        // empty system store (no key of the table names it).
        let at = |field: &str, value: &Option<Spanned<PathBuf>>| {
            value.as_ref().map(|v| source.error(v, &key(field), &e))
        };
        match e.part() {
            Part::Trust => at("ca_file", &u.ca_file),
            Part::ClientCertificate => at("client_certificate", &u.client_certificate),
            Part::ClientKey => at("client_key", &u.client_key),
            Part::ServerName => None,
        }
        .unwrap_or_else(|| source.error(&u.url, &key("url"), &e))
    })
}

/// `[[routes]]`, checked against the upstreams: prefixes the gateway can route (stored decoded,
/// without a trailing `/`), methods, the upstream, and public or protected access.
fn routes(
    source: &Source,
    files: &[RouteFile],
    upstreams: &[UpstreamConfig],
    issuers: &[IssuerConfig],
) -> Result<Vec<Arc<Route>>, ConfigError> {
    let mut routes = Vec::new();
    for (i, r) in files.iter().enumerate() {
        let key = |field: &str| format!("routes[{i}].{field}");
        // Stored decoded: requests are matched by their decoded path.
        let prefix = crate::route::routable(r.prefix.get_ref())
            .ok_or_else(|| {
                source.error(
                    &r.prefix,
                    &key("prefix"),
                    "must start with `/` and be a path the gateway routes (no `.`/`..` segment, \
                     `;`, `//`, `\\` or encoded `.`, `/`, `\\`, `%`)",
                )
            })?
            // `/api/` is `/api`: a prefix covers whole segments either way, and with the slash
            // `/api` itself would fall to a broader route (upstreams that ignore a trailing
            // slash serve it as `/api/`).
            .trim_end_matches('/')
            .to_owned();
        let prefix = if prefix.is_empty() {
            "/".to_owned()
        } else {
            prefix
        };
        let methods = r
            .methods
            .as_ref()
            .map(|methods| {
                methods
                    .iter()
                    .map(|m| {
                        Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes())
                            .map_err(|_| source.error(m, &key("methods"), "not an HTTP method"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let upstream = match &r.upstream {
            Some(name) => Some(
                upstreams
                    .iter()
                    .position(|u| &u.name == name.get_ref())
                    .ok_or_else(|| {
                        source.error(
                            name,
                            &key("upstream"),
                            format_args!("no upstream is named `{}`", name.get_ref()),
                        )
                    })?,
            ),
            None if upstreams.len() == 1 => Some(0),
            None if upstreams.is_empty() => None,
            None => {
                return Err(source.error(
                    &r.prefix,
                    &key("upstream"),
                    "name the upstream: there are several",
                ));
            }
        };
        let access = access(source, r, i, issuers)?;
        routes.push(Arc::new(Route {
            prefix,
            methods,
            upstream,
            access,
            strip_authorization: r.strip_authorization,
        }));
    }
    Ok(routes)
}

/// Who may use route `routes[i]`: anyone, or a token meeting its requirements.
fn access(
    source: &Source,
    r: &RouteFile,
    i: usize,
    issuers: &[IssuerConfig],
) -> Result<Access, ConfigError> {
    let key = |field: &str| format!("routes[{i}].{field}");
    if r.public {
        if !r.scopes.is_empty() || !r.roles.is_empty() || r.tenant.is_some() || r.issuers.is_some()
        {
            return Err(source.error(
                &r.prefix,
                &key("public"),
                "a public route cannot also require scopes, roles, a tenant or issuers",
            ));
        }
        return Ok(Access::Public);
    }
    let tenant = r
        .tenant
        .as_ref()
        .map(|t| TenantPath::parse(t.get_ref()).map_err(|e| source.error(t, &key("tenant"), e)))
        .transpose()?;
    if r.scopes
        .iter()
        .chain(&r.roles)
        .any(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\'))
    {
        return Err(source.error(
            &r.prefix,
            &key("scopes"),
            "scopes and roles are non-empty, without spaces or quotes",
        ));
    }
    let route_issuers = r
        .issuers
        .as_ref()
        .map(|names| route_issuers(source, names, &key("issuers"), issuers))
        .transpose()?;
    Ok(Access::Protected(Requirements::new(
        r.scopes.clone(),
        r.roles.clone(),
        tenant,
        route_issuers,
    )))
}

/// A route's `issuers` (at `key`): at least one, each a configured issuer (a name that is not
/// one would be a route no token can use, most likely a typo).
fn route_issuers(
    source: &Source,
    names: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    issuers: &[IssuerConfig],
) -> Result<Vec<String>, ConfigError> {
    if names.get_ref().is_empty() {
        return Err(source.error(
            names,
            key,
            "name at least one issuer (without the key, any configured issuer is accepted)",
        ));
    }
    names
        .get_ref()
        .iter()
        .map(|name| {
            if issuers.iter().any(|i| &i.issuer == name.get_ref()) {
                Ok(name.get_ref().clone())
            } else {
                Err(source.error(
                    name,
                    key,
                    format_args!("`{}` is not a configured issuer", name.get_ref()),
                ))
            }
        })
        .collect()
}

/// The key source of `[keys]` or of one `[[issuers]]` table (`table`, at `table_key`): exactly
/// one of `jwks_url`, `discovery_url`, `jwks_file`, `files`. Key files are read here.
fn key_source<T>(
    source: &Source,
    keys: KeySourceFile<'_>,
    table: &Spanned<T>,
    table_key: &str,
) -> Result<KeySource, ConfigError> {
    let given = [
        keys.jwks_url.is_some(),
        keys.discovery_url.is_some(),
        keys.jwks_file.is_some(),
        !keys.files.is_empty(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(source.error(
            table,
            table_key,
            "set exactly one of jwks_url, discovery_url, jwks_file, files",
        ));
    }
    let key = |name: &str| format!("{table_key}.{name}");
    let refresh = *keys.refresh_interval.get_ref();
    if !(1..=86_400).contains(&refresh) {
        return Err(source.error(
            keys.refresh_interval,
            &key("refresh_interval"),
            "must be between 1 and 86400 seconds",
        ));
    }
    let refresh = Duration::from_secs(refresh);
    let url = |v: &Spanned<String>, key: &str| -> Result<Uri, ConfigError> {
        let uri: Uri = v.get_ref().parse().map_err(|e| source.error(v, key, e))?;
        match uri.scheme_str() {
            Some("http" | "https") if uri.host().is_some() => Ok(uri),
            _ => Err(source.error(v, key, "must be an http:// or https:// URL")),
        }
    };
    if let Some(v) = keys.jwks_url {
        return Ok(KeySource::Jwks {
            uri: url(v, &key("jwks_url"))?,
            refresh,
        });
    }
    if let Some(v) = keys.discovery_url {
        return Ok(KeySource::Discovery {
            uri: url(v, &key("discovery_url"))?,
            refresh,
        });
    }
    if let Some(v) = keys.jwks_file {
        let key = &key("jwks_file");
        let path = source.resolve(v.get_ref());
        let text = std::fs::read(&path).map_err(|e| {
            source.error(v, key, format_args!("cannot read {}: {e}", path.display()))
        })?;
        let jwks = serde_json::from_slice(&text)
            .map_err(|e| source.error(v, key, format_args!("not a JWK set: {e}")))?;
        let set = KeySet::from_jwks(&jwks).map_err(|e| source.error(v, key, e))?;
        return Ok(KeySource::Local(set));
    }
    let set = KeySet::new();
    for (i, k) in keys.files.iter().enumerate() {
        let key = key(&format!("files[{i}].file"));
        let algorithm: SigningAlgorithm = k
            .algorithm
            .get_ref()
            .parse()
            .ok()
            .filter(|a: &SigningAlgorithm| !a.is_symmetric())
            .ok_or_else(|| {
                source.error(
                    &k.algorithm,
                    &format!("{table_key}.files[{i}].algorithm"),
                    "must be EdDSA, ES256 or RS256",
                )
            })?;
        let path = source.resolve(k.file.get_ref());
        let bytes = std::fs::read(&path).map_err(|e| {
            source.error(
                &k.file,
                &key,
                format_args!("cannot read {}: {e}", path.display()),
            )
        })?;
        let der = tollgate_program::tls::pem::pkcs8_der(&bytes).ok_or_else(|| {
            source.error(
                &k.file,
                &key,
                "not a PKCS#8 private key (DER, or PEM `PRIVATE KEY`)",
            )
        })?;
        // The gateway only verifies: it keeps the public half of the key and drops the rest.
        let public = SigningKey::from_der(algorithm, &k.kid, &der)
            .map_err(|e| source.error(&k.file, &key, e))?
            .verifying_key()
            .to_jwk()
            .cloned()
            .ok_or_else(|| source.error(&k.file, &key, "no public key"))?;
        let public = VerifyingKey::from_jwk(&public).map_err(|e| source.error(&k.file, &key, e))?;
        set.add_verifying_key(public)
            .map_err(|e| source.error(&k.file, &key, e))?;
    }
    Ok(KeySource::Local(set))
}

fn validation(source: &Source, v: &file::ValidationFile) -> Result<Validation, ConfigError> {
    if v.leeway > 300 {
        return Err(source.error_at(None, "validation.leeway: at most 300 seconds"));
    }
    let algorithms = v
        .algorithms
        .as_ref()
        .map(|list| algorithms(source, list, "validation.algorithms"))
        .transpose()?;
    Ok(Validation {
        leeway: Duration::from_secs(v.leeway),
        require_at_jwt: v.require_at_jwt,
        cache_verified_tokens: v.cache_verified_tokens,
        realm: v.realm.clone(),
        algorithms,
    })
}

/// An `algorithms` list (at `key`): names tollgate supports, at least one.
fn algorithms(
    source: &Source,
    list: &[Spanned<String>],
    key: &str,
) -> Result<Vec<SigningAlgorithm>, ConfigError> {
    if list.is_empty() {
        return Err(source.error_at(None, format_args!("{key}: name at least one algorithm")));
    }
    list.iter()
        .map(|a| {
            a.get_ref()
                .parse::<SigningAlgorithm>()
                .map_err(|_| source.error(a, key, "must be EdDSA, ES256, RS256 or HS256"))
        })
        .collect()
}

fn revocations(source: &Source, r: &RevocationsFile) -> Result<Revocations, ConfigError> {
    let target = source.redis_target(
        "revocations",
        &r.redis_url,
        r.password_env.as_ref(),
        r.ca_file.as_ref(),
        r.min_replicas_acked.as_ref(),
    )?;
    let prefix = source.redis_key_prefix("revocations", r.key_prefix.as_ref())?;
    let silence = *r.max_silence.get_ref();
    if silence > 86_400 {
        return Err(source.error(
            &r.max_silence,
            "revocations.max_silence",
            "at most 86400 seconds (0: serve however stale)",
        ));
    }
    Ok(Revocations {
        target,
        keys: Keys::new(&prefix),
        prefix,
        policy: HealthPolicy {
            require_sync: r.require_sync,
            max_silence: (silence > 0).then(|| Duration::from_secs(silence)),
        },
        on_unreadable: source.redis_on_unreadable("revocations", r.on_unreadable.as_ref())?,
    })
}

fn limits(source: &Source, l: &LimitsFile) -> Result<Limits, ConfigError> {
    let connection =
        source.connection_limits("limits", &l.header_read_timeout, &l.max_connections)?;
    let (header_read_timeout, max_connections) = (
        connection.header_read_timeout.as_secs(),
        connection.max_connections,
    );
    let max_header_bytes = *l.max_header_bytes.get_ref();
    if !(8192..=1024 * 1024).contains(&max_header_bytes) {
        return Err(source.error(
            &l.max_header_bytes,
            "limits.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
    }
    let rate = *l.client_rate.get_ref();
    if !rate.is_finite() || !(0.0..=1_000_000.0).contains(&rate) {
        return Err(source.error(
            &l.client_rate,
            "limits.client_rate",
            "must be between 0 (off) and 1000000 requests per second",
        ));
    }
    let burst = match &l.client_burst {
        Some(b) if *b.get_ref() == 0 => {
            return Err(source.error(b, "limits.client_burst", "must be at least 1"));
        }
        Some(b) => *b.get_ref(),
        // One second's worth, and never less than one request.
        None => (rate.ceil() as u32).max(1),
    };
    let drain = *l.drain_timeout.get_ref();
    if drain > 3600 {
        return Err(source.error(
            &l.drain_timeout,
            "limits.drain_timeout",
            "at most 3600 seconds",
        ));
    }
    let timeout = |v: &Spanned<u64>, key: &str| {
        if (1..=86_400).contains(v.get_ref()) {
            Ok(Duration::from_secs(*v.get_ref()))
        } else {
            Err(source.error(v, key, "must be between 1 and 86400 seconds"))
        }
    };
    Ok(Limits {
        send_timeout: timeout(&l.send_timeout, "limits.send_timeout")?,
        tunnel_idle_timeout: timeout(&l.tunnel_idle_timeout, "limits.tunnel_idle_timeout")?,
        client_body_timeout: timeout(&l.client_body_timeout, "limits.client_body_timeout")?,
        header_read_timeout: Duration::from_secs(header_read_timeout),
        max_connections,
        max_header_bytes,
        client_rate: rate,
        client_burst: burst,
        drain_timeout: Duration::from_secs(drain),
    })
}

fn proxy(source: &Source, p: &ProxyFile) -> Result<Proxy, ConfigError> {
    let mut upgrades = Vec::with_capacity(p.upgrades.len());
    for protocol in &p.upgrades {
        let name = protocol.get_ref().trim();
        let bare = name.split('/').next().unwrap_or(name);
        if bare.eq_ignore_ascii_case("h2c") || bare.eq_ignore_ascii_case("h2") {
            return Err(source.error(
                protocol,
                "proxy.upgrades",
                "HTTP/2 upgrades are never forwarded: the client would reach the upstream past \
                 every route",
            ));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(source.error(protocol, "proxy.upgrades", "not a protocol name"));
        }
        upgrades.push(name.to_owned());
    }
    let method_override = match p.method_override.get_ref().as_str() {
        "strip" => MethodOverride::Strip,
        "judge" => MethodOverride::Judge,
        other => {
            return Err(source.error(
                &p.method_override,
                "proxy.method_override",
                format_args!("unknown value `{other}` (strip, judge)"),
            ));
        }
    };
    Ok(Proxy {
        upgrades: Upgrades(upgrades),
        method_override,
    })
}

fn forward_auth(source: &Source, f: &file::ForwardAuthFile) -> Result<ForwardAuth, ConfigError> {
    let path = f.path.get_ref();
    if !path.starts_with('/')
        || path.len() < 2
        || path.ends_with('/')
        || crate::route::routable(path).as_deref() != Some(path.as_str())
    {
        return Err(source.error(
            &f.path,
            "forward_auth.path",
            "must be a path such as `/auth` (not `/`, no trailing `/`)",
        ));
    }
    let proxy = match f.proxy.get_ref().as_str() {
        "nginx" => ForwardAuthProxy::Nginx,
        "traefik" => ForwardAuthProxy::Traefik,
        "envoy" => ForwardAuthProxy::Envoy,
        other => {
            return Err(source.error(
                &f.proxy,
                "forward_auth.proxy",
                format_args!("unknown proxy `{other}` (nginx, traefik, envoy)"),
            ));
        }
    };
    Ok(ForwardAuth {
        path: path.clone(),
        proxy,
    })
}

fn client_certificate(
    source: &Source,
    c: &file::ClientCertificateFile,
    identity: &crate::identity::IdentityHeaders,
) -> Result<crate::client_cert::ClientCertHeader, ConfigError> {
    let key = "client_certificate.header";
    let name = HeaderName::from_bytes(c.header.get_ref().as_bytes())
        .map_err(|_| source.error(&c.header, key, "not a header name"))?;
    // A header in which proxies pass certificates (`Client-Cert`, `X-SSL-Client-Cert`, ...) is
    // fine; every other header HTTP or the gateway owns, or an identity header, would be read
    // as a certificate and then removed.
    if (crate::headers::is_reserved(&name) && !crate::headers::is_client_cert_header(name.as_str()))
        || identity
            .names()
            .iter()
            .any(|i| crate::headers::same_variable(i.as_str(), name.as_str()))
    {
        return Err(source.error(&c.header, key, "a header HTTP or the gateway owns"));
    }
    let trusted = tollgate_layer::client_cert::TrustedProxies::parse(c.trusted_proxies.get_ref())
        .map_err(|e| {
        source.error(&c.trusted_proxies, "client_certificate.trusted_proxies", e)
    })?;
    Ok(crate::client_cert::ClientCertHeader {
        name,
        trusted,
        require_bound_tokens: c.require_bound_tokens,
    })
}

fn identity_headers(
    source: &Source,
    h: &IdentityHeadersFile,
) -> Result<crate::identity::IdentityHeaders, ConfigError> {
    let name = |v: &Spanned<String>, key: &str| -> Result<HeaderName, ConfigError> {
        let name = HeaderName::from_bytes(v.get_ref().as_bytes())
            .map_err(|_| source.error(v, key, "not a header name"))?;
        // Headers the gateway or HTTP itself owns cannot carry claims.
        if crate::headers::is_reserved(&name) {
            return Err(source.error(v, key, "a header HTTP or the gateway owns"));
        }
        Ok(name)
    };
    let names = [
        name(&h.subject, "identity_headers.subject")?,
        name(&h.client, "identity_headers.client")?,
        name(&h.tenant, "identity_headers.tenant")?,
        name(&h.scopes, "identity_headers.scopes")?,
        name(&h.roles, "identity_headers.roles")?,
        name(&h.jti, "identity_headers.jti")?,
    ];
    for (i, n) in names.iter().enumerate() {
        if names[..i]
            .iter()
            .any(|m| crate::headers::same_variable(m.as_str(), n.as_str()))
        {
            return Err(source.error(
                &h.subject,
                "identity_headers",
                format_args!("`{n}` is named twice"),
            ));
        }
    }
    Ok(crate::identity::IdentityHeaders::new(names))
}
