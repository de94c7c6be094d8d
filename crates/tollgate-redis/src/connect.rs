//! Where Redis is and how to reach it: one server (`redis://`, `rediss://`), the primary a set
//! of Sentinels names (`redis+sentinel://`), or the master of our hash slot in a Cluster
//! (`redis+cluster://`); an optional password kept out of logs; connections with bounded waits;
//! and how many replicas must hold a write before it counts ([`ReplicaAcks`]).
//!
//! Every tollgate key of one prefix shares a hash tag (`{prefix}:...`), so a whole channel lives
//! in one hash slot: in a Cluster, tollgate talks to that slot's master alone, on one plain
//! connection. That is what `WAIT` needs (it counts the replicas of the connection that wrote),
//! and what the follower's `MULTI`/`EXEC` look needs; a cluster-aware client would route the
//! key-less `WAIT` to any node. After a failover the old connection fails (the process is gone,
//! or it answers `MOVED` / `READONLY`), and the next connection asks the Sentinels, or the
//! Cluster, again.

use crate::wire::Keys;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Value};
use std::fmt;
use std::time::Duration;

/// How long connecting may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a question to a Sentinel or a Cluster node about the topology may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for its replicas (`WAIT`) before it counts as not (yet) safe.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis deployment to connect to. Its `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct RedisTarget {
    /// One server's URL; for Sentinel and Cluster, the URL of their first node, a template for
    /// every other (scheme, credentials, database).
    url: url::Url,
    topology: Topology,
    /// PEM root certificates to trust for `rediss://` instead of the system's.
    ca: Option<std::sync::Arc<Vec<u8>>>,
    /// Replicas that must acknowledge a write before it counts; `None`: the topology's default.
    min_replicas_acked: Option<u32>,
    /// How the target is shown: the URL as given, without its password.
    shown: String,
}

#[derive(Clone, Debug)]
enum Topology {
    Single,
    /// Sentinels (`host`, `port`), the name of the primary they watch, and the credentials
    /// the Sentinels themselves require, if any.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        auth: Option<SentinelAuth>,
    },
    /// Seed nodes of a Cluster.
    Cluster {
        nodes: Vec<(String, u16)>,
    },
}

/// What Sentinels that require a password of their own (`requirepass` in `sentinel.conf`) are
/// asked with: `?sentinel_username=...&sentinel_password=...` in a `redis+sentinel://` URL.
#[derive(Clone)]
struct SentinelAuth {
    username: Option<String>,
    password: String,
}

impl fmt::Debug for SentinelAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelAuth")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// How many replicas must hold a write (`WAIT numreplicas timeout`) before a producer counts it
/// as published: the relay marks its outbox, `publish` returns, a logout is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// Replicas that must acknowledge; `0` waits for none (a single Redis).
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

impl ReplicaAcks {
    /// Waits for no replica: a write counts once the primary answered.
    pub const NONE: ReplicaAcks = ReplicaAcks {
        replicas: 0,
        timeout: DEFAULT_ACK_TIMEOUT,
    };
}

/// Why a Redis target or connection failed; the message names the server without its password.
#[derive(Debug)]
pub struct ConnectError {
    message: String,
    /// The server answered and refused: a wrong password or user, not a network problem.
    refused: bool,
}

impl ConnectError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            refused: false,
        }
    }

    /// Whether Redis refused the credentials (retrying will not help) rather than being out of
    /// reach (retrying will).
    pub fn is_refused(&self) -> bool {
        self.refused
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// `host:port` pairs of a Sentinel or Cluster URL's authority, each checked by the URL parser.
/// Errors name a node by its place in the list, never by its text: a password with a character
/// that should have been percent-encoded (`/`, `@`) can end up there.
fn parse_nodes(
    scheme: &str,
    hosts: &str,
    default_port: u16,
) -> Result<Vec<(String, u16)>, ConnectError> {
    let mut nodes = Vec::new();
    for (place, host) in hosts.split(',').enumerate() {
        let bad = |why: &dyn fmt::Display| {
            ConnectError::new(format!(
                "invalid Redis URL: node {} of the list is not host[:port]: {why}",
                place + 1
            ))
        };
        let parsed = url::Url::parse(&format!("{scheme}://{host}")).map_err(|e| bad(&e))?;
        let name = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad(&"no host"))?;
        if parsed.path().len() > 1 || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(&"more than a host and a port"));
        }
        nodes.push((name.to_owned(), parsed.port().unwrap_or(default_port)));
    }
    Ok(nodes)
}

impl RedisTarget {
    /// Parses a Redis URL:
    ///
    /// - `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS): one server;
    /// - `redis+sentinel://[user:password@]s1[:port],s2[:port]/master_name[/db]` (and
    ///   `rediss+sentinel://`): the primary these Sentinels (port 26379 by default) name
    ///   `master_name`; the credentials and TLS are those of the Redis servers, Sentinels are
    ///   asked over TLS too with `rediss+sentinel`, and without credentials unless the URL ends
    ///   with `?sentinel_password=...` (and optionally `&sentinel_username=...`, for Sentinels
    ///   with ACL users), percent-encoded;
    /// - `redis+cluster://[user:password@]n1[:port],n2[:port]` (and `rediss+cluster://`): a
    ///   Cluster, found from these seed nodes (port 6379 by default).
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ConnectError::new("invalid Redis URL: no scheme (redis://...)"))?;
        let (base, kind) = match scheme.split_once('+') {
            None => (scheme, None),
            Some((base, kind)) => (base, Some(kind)),
        };
        if !matches!(base, "redis" | "rediss")
            || !matches!(kind, None | Some("sentinel" | "cluster"))
        {
            // Only the scheme: the rest may hold a password.
            return Err(ConnectError::new(format!(
                "invalid Redis URL: scheme {scheme:?}, expected redis://, rediss://, \
                 redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
            )));
        }
        let (url, topology) = match kind {
            None if rest
                .split_once('?')
                .is_some_and(|(_, query)| query.contains("sentinel_")) =>
            {
                return Err(ConnectError::new(
                    "invalid Redis URL: sentinel_password and sentinel_username are for \
                     redis+sentinel:// URLs",
                ));
            }
            None => (url.to_owned(), Topology::Single),
            Some(kind) => {
                let (rest, auth) = match rest.split_once('?') {
                    None => (rest, None),
                    Some((rest, query)) if kind == "sentinel" => {
                        (rest, Some(sentinel_auth(query)?))
                    }
                    Some(_) => {
                        return Err(ConnectError::new(
                            "invalid Redis URL: only a redis+sentinel:// URL takes parameters \
                             (sentinel_password, sentinel_username)",
                        ));
                    }
                };
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let (userinfo, hosts) = match authority.rsplit_once('@') {
                    Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
                    None => (String::new(), authority),
                };
                let mut segments = path.split('/').filter(|s| !s.is_empty());
                let (topology, db) = if kind == "sentinel" {
                    let master = segments.next().ok_or_else(|| {
                        ConnectError::new(
                            "invalid Redis URL: name the primary after the Sentinels \
                             (redis+sentinel://host:26379/mymaster)",
                        )
                    })?;
                    let sentinels = parse_nodes(base, hosts, 26379)?;
                    let master = master.to_owned();
                    (
                        Topology::Sentinel {
                            sentinels,
                            master,
                            auth,
                        },
                        segments.next(),
                    )
                } else {
                    let nodes = parse_nodes(base, hosts, 6379)?;
                    let db = segments.next();
                    if db.is_some_and(|db| db != "0") {
                        return Err(ConnectError::new(
                            "invalid Redis URL: a Cluster has database 0 only",
                        ));
                    }
                    (Topology::Cluster { nodes }, None)
                };
                if segments.next().is_some() {
                    return Err(ConnectError::new(
                        "invalid Redis URL: too many path segments",
                    ));
                }
                let (Topology::Sentinel {
                    sentinels: nodes, ..
                }
                | Topology::Cluster { nodes }) = &topology
                else {
                    return Err(ConnectError::new("invalid Redis URL"));
                };
                // The template of every node's URL: the first node, with the credentials and
                // database (the URL parser checks them as for one server).
                let (host, port) = nodes
                    .first()
                    .ok_or_else(|| ConnectError::new("invalid Redis URL: no host"))?;
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let db = db.map(|db| format!("/{db}")).unwrap_or_default();
                (format!("{base}://{userinfo}{host}:{port}{db}"), topology)
            }
        };
        let parsed = url::Url::parse(&url).map_err(|e| {
            // The URL may hold a password: never echo it.
            ConnectError::new(format!("invalid Redis URL: {e}"))
        })?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConnectError::new("invalid Redis URL: no host"));
        }
        let mut target = RedisTarget {
            url: parsed,
            topology,
            ca: None,
            min_replicas_acked: None,
            shown: String::new(),
        };
        target.shown = target.show(scheme, rest.split_once('?').map_or(rest, |(r, _)| r));
        if let Topology::Sentinel {
            auth: Some(auth), ..
        } = &target.topology
        {
            if let Some(user) = &auth.username {
                let user: String = url::form_urlencoded::byte_serialize(user.as_bytes()).collect();
                target
                    .shown
                    .push_str(&format!("?sentinel_username={user}&"));
            } else {
                target.shown.push('?');
            }
            target.shown.push_str("sentinel_password=***");
        }
        // The redis crate's own checks (database number, TLS support).
        Client::open(target.url.as_str()).map_err(|e| {
            ConnectError::new(format!("invalid Redis URL {target}: {}", e.category()))
        })?;
        Ok(target)
    }

    /// The URL as given, with `***` for any password.
    fn show(&self, scheme: &str, rest: &str) -> String {
        if let Topology::Single = self.topology {
            let mut shown = self.url.clone();
            if shown.password().is_some() {
                let _ = shown.set_password(Some("***"));
            }
            return shown.to_string();
        }
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rsplit_once('@') {
            Some((userinfo, _)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                let hidden = if userinfo.contains(':') || self.url.password().is_some() {
                    ":***"
                } else {
                    ""
                };
                let at = rest[..authority_end].rfind('@').map_or(0, |i| i + 1);
                format!("{scheme}://{user}{hidden}@{}", &rest[at..])
            }
            None if self.url.password().is_some() => format!("{scheme}://:***@{rest}"),
            None => format!("{scheme}://{rest}"),
        }
    }

    /// Uses `password` (from the environment, say) instead of any in the URL.
    pub fn with_password(mut self, password: &str) -> Result<Self, ConnectError> {
        self.url
            .set_password(Some(password))
            .map_err(|()| ConnectError::new(format!("cannot set a password on {self}")))?;
        if !self.shown.contains(":***@") {
            // Shown with its (hidden) password from now on.
            self.shown = match self.shown.split_once("://") {
                Some((scheme, rest)) => match rest.split_once('@') {
                    Some((user, rest)) if !rest.is_empty() => {
                        format!("{scheme}://{user}:***@{rest}")
                    }
                    _ => format!("{scheme}://:***@{rest}"),
                },
                None => self.shown,
            };
        }
        Ok(self)
    }

    /// Trusts these PEM root certificates (a private CA) for `rediss://`, instead of the
    /// system's trust store.
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> Result<Self, ConnectError> {
        if !self.is_tls() {
            return Err(ConnectError::new(format!(
                "a CA certificate is only for rediss:// URLs, not {self}"
            )));
        }
        self.ca = Some(std::sync::Arc::new(pem));
        self.client(&self.url)?;
        Ok(self)
    }

    /// Requires `replicas` replicas to acknowledge each write (`WAIT`) before it counts as
    /// published. The default is 1 for Sentinel and Cluster, 0 for a single Redis.
    pub fn with_min_replicas_acked(mut self, replicas: u32) -> Self {
        self.min_replicas_acked = Some(replicas);
        self
    }

    /// How many replicas must hold a write before it counts, and how long to wait for them.
    pub fn replica_acks(&self) -> ReplicaAcks {
        let default = match self.topology {
            Topology::Single => 0,
            Topology::Sentinel { .. } | Topology::Cluster { .. } => 1,
        };
        ReplicaAcks {
            replicas: self.min_replicas_acked.unwrap_or(default),
            timeout: DEFAULT_ACK_TIMEOUT,
        }
    }

    fn client(&self, url: &url::Url) -> Result<Client, ConnectError> {
        let client = match &self.ca {
            None => Client::open(url.as_str()),
            Some(pem) => Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
        };
        client
            .map_err(|e| ConnectError::new(format!("cannot use Redis at {self}: {}", e.category())))
    }

    /// Whether connections use TLS (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`).
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "rediss"
    }

    /// Opens a connection to the primary (for a Cluster, the master of the default keys' slot)
    /// and checks that it answers; see [`connect_for`](Self::connect_for).
    pub async fn connect(
        &self,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        self.connect_for(&Keys::default(), response_timeout).await
    }

    /// Opens a connection to the server that holds `keys` (one server; the primary the Sentinels
    /// name; the Cluster master of the keys' hash slot), checks that it answers (`PING`, after
    /// authenticating) and, for Sentinel and Cluster, that it is a primary (`ROLE`). Waits for a
    /// reply at most `response_timeout`.
    pub async fn connect_for(
        &self,
        keys: &Keys,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        match &self.topology {
            Topology::Single => self.open(&self.url, response_timeout).await,
            Topology::Sentinel {
                sentinels,
                master,
                auth,
            } => {
                let mut failure = None;
                for sentinel in sentinels {
                    match self
                        .via_sentinel(sentinel, master, auth.as_ref(), response_timeout)
                        .await
                    {
                        Ok(connection) => return Ok(connection),
                        Err(e) if e.refused => return Err(e),
                        Err(e) => failure = Some(e),
                    }
                }
                Err(failure.unwrap_or_else(|| ConnectError::new("no Sentinel")))
            }
            Topology::Cluster { nodes } => {
                let mut failure = None;
                for node in nodes {
                    match self.via_cluster(node, &keys.stream, response_timeout).await {
                        Ok(connection) => return Ok(connection),
                        Err(e) if e.refused => return Err(e),
                        Err(e) => failure = Some(e),
                    }
                }
                Err(failure.unwrap_or_else(|| ConnectError::new("no Cluster node")))
            }
        }
    }

    /// The URL of `node`, with this target's scheme, credentials and database.
    fn node_url(&self, (host, port): &(String, u16)) -> Result<url::Url, ConnectError> {
        let mut url = self.url.clone();
        url.set_host(Some(host))
            .and_then(|()| {
                url.set_port(Some(*port))
                    .map_err(|()| url::ParseError::InvalidPort)
            })
            .map_err(|e| ConnectError::new(format!("{self}: node {host}:{port}: {e}")))?;
        Ok(url)
    }

    /// Asks `sentinel` (with `auth`, if it requires a password) for the primary named
    /// `master`, and connects to it.
    async fn via_sentinel(
        &self,
        sentinel: &(String, u16),
        master: &str,
        auth: Option<&SentinelAuth>,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let mut url = self.node_url(sentinel)?;
        // Sentinels have no databases, and are asked without the servers' credentials.
        let username = auth.and_then(|a| a.username.as_deref()).unwrap_or_default();
        let password = auth.map(|a| a.password.as_str());
        if url.set_username(username).is_err() || url.set_password(password).is_err() {
            return Err(ConnectError::new(format!(
                "{self}: cannot use the Sentinel credentials"
            )));
        }
        url.set_path("");
        let mut asking = self.open(&url, DISCOVERY_TIMEOUT).await.map_err(|e| {
            if e.refused && auth.is_none() {
                ConnectError {
                    message: format!(
                        "{e}: this Sentinel requires a password of its own; add \
                         ?sentinel_password=... to the URL"
                    ),
                    refused: true,
                }
            } else {
                e
            }
        })?;
        let address: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut asking)
            .await
            .map_err(|e| self.error_at(&url, &e))?;
        let primary = address.ok_or_else(|| {
            ConnectError::new(format!(
                "Sentinel {}:{} of {self} knows no primary named {master:?}",
                sentinel.0, sentinel.1
            ))
        })?;
        let url = self.node_url(&primary)?;
        let mut connection = self.open(&url, response_timeout).await?;
        self.check_primary(&url, &mut connection).await?;
        Ok(connection)
    }

    /// Asks Cluster `node` which master serves the slot of `key`, and connects to it.
    async fn via_cluster(
        &self,
        node: &(String, u16),
        key: &str,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let url = self.node_url(node)?;
        let mut asking = self.open(&url, DISCOVERY_TIMEOUT).await?;
        let (slot, slots): (i64, Value) = redis::pipe()
            .cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut asking)
            .await
            .map_err(|e| self.error_at(&url, &e))?;
        let (host, port) = slot_master(&slots, slot).ok_or_else(|| {
            ConnectError::new(format!(
                "{self}: node {}:{} knows no master for slot {slot}",
                node.0, node.1
            ))
        })?;
        // An empty host is "the node you asked" (a node that does not know its own address).
        let host = if host.is_empty() {
            node.0.clone()
        } else {
            host
        };
        let url = self.node_url(&(host, port))?;
        let mut connection = self.open(&url, response_timeout).await?;
        self.check_primary(&url, &mut connection).await?;
        Ok(connection)
    }

    /// Fails unless the server behind `connection` is a primary: a Sentinel or Cluster that has
    /// not yet seen a failover still names the old one, which may be back as a replica.
    async fn check_primary(
        &self,
        url: &url::Url,
        connection: &mut MultiplexedConnection,
    ) -> Result<(), ConnectError> {
        let role: Vec<Value> = redis::cmd("ROLE")
            .query_async(connection)
            .await
            .map_err(|e| self.error_at(url, &e))?;
        match role.first() {
            Some(Value::BulkString(role)) if role == b"master" => Ok(()),
            Some(Value::SimpleString(role)) if role == "master" => Ok(()),
            _ => Err(ConnectError::new(format!(
                "Redis at {} ({self}) is not a primary (yet)",
                address(url)
            ))),
        }
    }

    /// Opens a connection to `url` and checks that it answers.
    async fn open(
        &self,
        url: &url::Url,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let client = self.client(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error_at(url, &e))?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error_at(url, &e))?;
        Ok(connection)
    }

    /// An error that names this target (without its password) and says whether Redis refused us.
    pub(crate) fn error(&self, e: &RedisError) -> ConnectError {
        self.describe(None, e)
    }

    /// An error naming the node at `url` of this target.
    fn error_at(&self, url: &url::Url, e: &RedisError) -> ConnectError {
        match self.topology {
            Topology::Single => self.describe(None, e),
            _ => self.describe(Some(&address(url)), e),
        }
    }

    fn describe(&self, node: Option<&str>, e: &RedisError) -> ConnectError {
        let refused = e.kind() == ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        let what = if refused {
            "refused the credentials (check the password)".to_owned()
        } else {
            // The error's own text may quote the URL; its kind and code never do.
            match e.code() {
                Some(code) => format!("answered {code}"),
                None if e.is_timeout() => "did not answer in time".to_owned(),
                None if e.is_connection_refusal() => "refused the connection".to_owned(),
                None => format!("failed: {}", e.category()),
            }
        };
        let message = match node {
            None => format!("Redis at {self} {what}"),
            Some(node) => format!("Redis at {node} ({self}) {what}"),
        };
        ConnectError { message, refused }
    }
}

/// The parameters of a `redis+sentinel://` URL: `sentinel_password` (required with
/// `sentinel_username`) and `sentinel_username`; anything else is refused.
fn sentinel_auth(query: &str) -> Result<SentinelAuth, ConnectError> {
    let (mut username, mut password) = (None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "sentinel_username" => &mut username,
            "sentinel_password" => &mut password,
            // The key only: a value may be a password.
            other => {
                let other: String = other.chars().take(40).collect();
                return Err(ConnectError::new(format!(
                    "invalid Redis URL: unknown parameter {other:?} (sentinel_password, \
                     sentinel_username)"
                )));
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(ConnectError::new(format!(
                "invalid Redis URL: {key} given twice"
            )));
        }
    }
    let password = password.filter(|p| !p.is_empty()).ok_or_else(|| {
        ConnectError::new("invalid Redis URL: sentinel_password is missing or empty")
    })?;
    Ok(SentinelAuth {
        username: username.filter(|u| !u.is_empty()),
        password,
    })
}

/// `host:port` of a URL, for messages (never its credentials).
fn address(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port().unwrap_or(6379)
    )
}

/// The master (`host`, `port`) serving `slot` in a `CLUSTER SLOTS` reply:
/// `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn slot_master(reply: &Value, slot: i64) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(range) = range else {
            return None;
        };
        match range.as_slice() {
            [Value::Int(start), Value::Int(end), Value::Array(master), ..]
                if (*start..=*end).contains(&slot) =>
            {
                let host = match master.first()? {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                    Value::SimpleString(s) => s.clone(),
                    _ => return None,
                };
                let port = match master.get(1)? {
                    Value::Int(port) => u16::try_from(*port).ok()?,
                    _ => return None,
                };
                Some((host, port))
            }
            _ => None,
        }
    })
}

impl fmt::Display for RedisTarget {
    /// The URL as given (`redis://host:port/db`, `redis+sentinel://s1,s2/name`...), with any
    /// user name but never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Topology::Single = self.topology {
            let mut shown = self.url.clone();
            if shown.password().is_some() {
                let _ = shown.set_password(Some("***"));
            }
            return f.write_str(shown.as_str());
        }
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisTarget")
            .field(&format_args!("{self}"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let target = RedisTarget::new("redis://:s3cret@127.0.0.1:6390/2").unwrap();
        assert_eq!(target.to_string(), "redis://:***@127.0.0.1:6390/2");
        assert!(!format!("{target:?}").contains("s3cret"));
        let target = RedisTarget::new("rediss://cache.internal:6380")
            .unwrap()
            .with_password("fromenv")
            .unwrap();
        assert!(target.is_tls());
        assert!(!target.to_string().contains("fromenv"));
    }

    #[test]
    fn sentinel_and_cluster_urls() {
        let target =
            RedisTarget::new("redis+sentinel://:s3cret@10.0.0.1,10.0.0.2:26380/mymaster/2")
                .unwrap();
        assert_eq!(
            target.to_string(),
            "redis+sentinel://:***@10.0.0.1,10.0.0.2:26380/mymaster/2"
        );
        let Topology::Sentinel {
            sentinels,
            master,
            auth: None,
        } = &target.topology
        else {
            panic!("not Sentinel: {target:?}");
        };
        assert_eq!(master, "mymaster");
        assert_eq!(
            sentinels,
            &[
                ("10.0.0.1".to_owned(), 26379),
                ("10.0.0.2".to_owned(), 26380)
            ]
        );
        assert_eq!(target.url.path(), "/2");
        assert_eq!(target.replica_acks().replicas, 1);
        assert_eq!(
            target
                .clone()
                .with_min_replicas_acked(2)
                .replica_acks()
                .replicas,
            2
        );

        let target = RedisTarget::new("rediss+cluster://app@n1:7000,n2,[::1]:7002")
            .unwrap()
            .with_password("fromenv")
            .unwrap();
        assert!(target.is_tls());
        assert_eq!(
            target.to_string(),
            "rediss+cluster://app:***@n1:7000,n2,[::1]:7002"
        );
        assert!(!format!("{target:?}").contains("fromenv"));
        let Topology::Cluster { nodes } = &target.topology else {
            panic!("not Cluster: {target:?}");
        };
        assert_eq!(nodes[1], ("n2".to_owned(), 6379));
        assert_eq!(nodes[2].1, 7002);
        assert_eq!(
            RedisTarget::new("redis://h")
                .unwrap()
                .replica_acks()
                .replicas,
            0
        );
    }

    #[test]
    fn sentinels_with_a_password_of_their_own() {
        let target = RedisTarget::new(
            "redis+sentinel://:s3cret@s1,s2/mymaster/1?sentinel_password=p%40ss%26w0rd",
        )
        .unwrap();
        assert_eq!(
            target.to_string(),
            "redis+sentinel://:***@s1,s2/mymaster/1?sentinel_password=***"
        );
        assert!(!format!("{target:?}").contains("w0rd"));
        let Topology::Sentinel {
            master,
            auth: Some(auth),
            ..
        } = &target.topology
        else {
            panic!("no Sentinel credentials: {target:?}");
        };
        assert_eq!(master, "mymaster");
        assert_eq!(auth.password, "p@ss&w0rd");
        assert_eq!(auth.username, None);
        assert_eq!(target.url.path(), "/1");
        assert_eq!(target.url.query(), None);

        let target = RedisTarget::new(
            "rediss+sentinel://s1/m?sentinel_username=watcher&sentinel_password=x",
        )
        .unwrap();
        assert_eq!(
            target.to_string(),
            "rediss+sentinel://s1/m?sentinel_username=watcher&sentinel_password=***"
        );
        let Topology::Sentinel {
            auth: Some(auth), ..
        } = &target.topology
        else {
            panic!("no Sentinel credentials: {target:?}");
        };
        assert_eq!(auth.username.as_deref(), Some("watcher"));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "http://x",
            "redis://",
            "not a url :secret@",
            "redis://h/notadb",
            "redis+sentinel://:secret@h1,h2",
            "redis+sentinel://:secret@h1,,h2/m",
            "redis+sentinel://:secret@h1/m/0/x",
            "redis+cluster://:secret@h1,h2/3",
            "redis+cluster://:secret@h1:notaport",
            "redis+cluster://:secret@",
            "redis+replica://:secret@h1",
            "redis+cluster://:se/cret@h1",
            "redis+sentinel://:se/cret@h1/m",
            "redis+cluster://:se@cret@h1:x",
            "redis+sentinel://h1/m?sentinel_username=u",
            "redis+sentinel://h1/m?sentinel_password=",
            "redis+sentinel://h1/m?sentinel_password=secret&sentinel_password=secret",
            "redis+sentinel://h1/m?password=secret",
            "redis+cluster://h1?sentinel_password=secret",
            "redis://h1?sentinel_password=secret",
        ] {
            let error = RedisTarget::new(url).unwrap_err().to_string();
            assert!(error.starts_with("invalid Redis URL"), "{url}: {error}");
            assert!(!error.contains("cret"), "{error}");
        }
    }
}
