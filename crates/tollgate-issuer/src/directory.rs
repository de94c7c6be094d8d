//! Who may ask for tokens: the [`Clients`] and [`Users`] traits a team backs with its own
//! registry or user database, and [`StaticDirectory`], the built-in one filled from configuration.

use crate::secret::{ClientSecret, PasswordHash};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::TenantPath;

/// A boxed, sendable future, so that the directory traits are object-safe.
pub type DirectoryFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, DirectoryError>> + Send + 'a>>;

/// A directory lookup failed (database down, ...). The issuer answers `503` and logs the message.
#[derive(Debug)]
pub struct DirectoryError {
    message: String,
}

impl DirectoryError {
    /// An error with this context.
    pub fn new(message: impl Into<String>) -> Self {
        DirectoryError {
            message: message.into(),
        }
    }
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory: {}", self.message)
    }
}

impl std::error::Error for DirectoryError {}

/// The grants `/connect/token` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantType {
    /// Resource owner password credentials (RFC 6749 §4.3). Legacy (RFC 9700 §2.4): a client may
    /// use it only when its configuration says so.
    Password,
    /// Client credentials (RFC 6749 §4.4): the client acts on its own behalf.
    ClientCredentials,
    /// Refresh token (RFC 6749 §6). A client allowed it receives refresh tokens.
    RefreshToken,
}

impl GrantType {
    /// The `grant_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
        }
    }

    /// The grant named by a `grant_type` value.
    pub fn parse(name: &str) -> Option<GrantType> {
        match name {
            "password" => Some(GrantType::Password),
            "client_credentials" => Some(GrantType::ClientCredentials),
            "refresh_token" => Some(GrantType::RefreshToken),
            _ => None,
        }
    }
}

/// A registered (confidential) client.
///
/// Built with [`Client::new`] and the `with_*` methods; the fields are public to read.
///
/// ```
/// use tollgate_issuer::{Client, ClientSecret, GrantType};
///
/// let client = Client::new("svc", ClientSecret::from_plaintext("svc-secret"))
///     .with_grants([GrantType::ClientCredentials])
///     .with_scopes(["orders:read"]);
/// assert!(client.allows(GrantType::ClientCredentials));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// The client's secret, hashed.
    pub secret: ClientSecret,
    /// The grants it may use.
    pub grants: Vec<GrantType>,
    /// The scopes it may be granted; a request without `scope` gets all of them.
    pub scopes: Vec<String>,
    /// The `aud` of its access tokens; empty means the service's default audience.
    pub audience: Vec<String>,
    /// The longest access-token lifetime it may ask for (`access-token-lifetime` is clamped to
    /// it); `None` means the service's maximum.
    pub max_access_token_lifetime: Option<Duration>,
    /// Roles carried by its `client_credentials` tokens.
    pub roles: Vec<String>,
    /// The tenants it may act in with `client_credentials` (each covers its sub-tenants).
    pub tenants: Vec<TenantPath>,
    /// Whether it may introspect any token of this issuer (a resource server), not only its own.
    pub introspect_any: bool,
    /// How it authenticates: its secret (the default), or mutual TLS (RFC 8705 §2).
    pub authentication: ClientAuthentication,
    /// RFC 8705 §3 `tls_client_certificate_bound_access_tokens`: its access tokens are bound to
    /// the client certificate of the token request (`cnf.x5t#S256`), and a token request without
    /// one fails client authentication. Tokens of clients that authenticate with mutual TLS are
    /// always bound.
    pub certificate_bound_access_tokens: bool,
}

/// How a client authenticates at the token, introspection and revocation endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuthentication {
    /// `client_secret_basic` or `client_secret_post`: the client's secret.
    #[default]
    Secret,
    /// `tls_client_auth` (RFC 8705 §2.1): a client certificate that the TLS listener verified
    /// against its client CA ([`ClientCertificate::is_verified_by_ca`]) and that carries this
    /// name. The client sends `client_id` in the form and no secret.
    ///
    /// [`ClientCertificate::is_verified_by_ca`]: tollgate_core::ClientCertificate::is_verified_by_ca
    TlsClientAuth(CertificateName),
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): one of these certificates, named by their
    /// `x5t#S256` thumbprints (what [`ClientCertificate::x5t_s256`] gives). No CA is involved:
    /// the listener must accept the certificate, self-signed, and the peer prove its key.
    ///
    /// [`ClientCertificate::x5t_s256`]: tollgate_core::ClientCertificate::x5t_s256
    SelfSignedTlsClientAuth(Vec<String>),
}

impl ClientAuthentication {
    /// The `token_endpoint_auth_method` name (RFC 7591, RFC 8705 §2.1.1 and §2.2.1); a secret
    /// client is `client_secret_basic` (it may also use `client_secret_post`).
    pub fn method(&self) -> &'static str {
        match self {
            ClientAuthentication::Secret => "client_secret_basic",
            ClientAuthentication::TlsClientAuth(_) => "tls_client_auth",
            ClientAuthentication::SelfSignedTlsClientAuth(_) => "self_signed_tls_client_auth",
        }
    }

    /// Whether the client authenticates with its TLS client certificate.
    pub fn is_mutual_tls(&self) -> bool {
        !matches!(self, ClientAuthentication::Secret)
    }
}

/// The name a `tls_client_auth` client's certificate must carry: exactly one of the RFC 8705
/// §2.1.2 metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateName {
    /// `tls_client_auth_subject_dn`: the subject distinguished name.
    SubjectDn(crate::auth::SubjectDn),
    /// `tls_client_auth_san_dns`: a `dNSName` subject alternative name (compared without case).
    SanDns(String),
    /// `tls_client_auth_san_uri`: a `uniformResourceIdentifier` SAN (compared exactly).
    SanUri(String),
    /// `tls_client_auth_san_ip`: an `iPAddress` SAN.
    SanIp(std::net::IpAddr),
    /// `tls_client_auth_san_email`: an `rfc822Name` SAN (compared exactly).
    SanEmail(String),
}

impl Client {
    /// A client with no grant and no scope yet, acting in the root tenant (and so in every
    /// tenant), with the service's default audience and maximum lifetime.
    pub fn new(id: impl Into<String>, secret: ClientSecret) -> Self {
        Client {
            id: id.into(),
            secret,
            grants: Vec::new(),
            scopes: Vec::new(),
            audience: Vec::new(),
            max_access_token_lifetime: None,
            roles: Vec::new(),
            tenants: vec![TenantPath::root()],
            introspect_any: false,
            authentication: ClientAuthentication::Secret,
            certificate_bound_access_tokens: false,
        }
    }

    /// A client that authenticates with its TLS client certificate (RFC 8705 §2) and has no
    /// secret; otherwise like [`Client::new`]. Its access tokens are bound to the certificate.
    pub fn mutual_tls(id: impl Into<String>, authentication: ClientAuthentication) -> Self {
        // Never compared (the authentication method decides), and no one could present it.
        let secret = ClientSecret::from_plaintext(&tollgate_core::random::secret());
        Client {
            authentication,
            ..Client::new(id, secret)
        }
    }

    /// RFC 8705 §3 `tls_client_certificate_bound_access_tokens`: see
    /// [`certificate_bound_access_tokens`](Self::certificate_bound_access_tokens).
    pub fn with_certificate_bound_access_tokens(mut self, bound: bool) -> Self {
        self.certificate_bound_access_tokens = bound;
        self
    }

    /// Whether its access tokens are bound to the client certificate of the token request.
    pub fn binds_tokens(&self) -> bool {
        self.certificate_bound_access_tokens || self.authentication.is_mutual_tls()
    }

    /// The grants it may use.
    pub fn with_grants(mut self, grants: impl IntoIterator<Item = GrantType>) -> Self {
        self.grants = grants.into_iter().collect();
        self
    }

    /// The scopes it may be granted.
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The `aud` of its access tokens.
    pub fn with_audience<S: Into<String>>(mut self, audience: impl IntoIterator<Item = S>) -> Self {
        self.audience = audience.into_iter().map(Into::into).collect();
        self
    }

    /// The longest access-token lifetime it may ask for.
    pub fn with_max_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_access_token_lifetime = Some(lifetime);
        self
    }

    /// Roles carried by its `client_credentials` tokens.
    pub fn with_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The tenants it may act in.
    pub fn with_tenants(mut self, tenants: impl IntoIterator<Item = TenantPath>) -> Self {
        self.tenants = tenants.into_iter().collect();
        self
    }

    /// Whether it may introspect any token of this issuer (a resource server).
    pub fn with_introspect_any(mut self, introspect_any: bool) -> Self {
        self.introspect_any = introspect_any;
        self
    }

    /// Whether the client may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grants.contains(&grant)
    }
}

/// A resource owner who can sign in with the password grant.
///
/// Built with [`User::new`] and the `with_*` methods; the fields are public to read.
#[derive(Debug)]
#[non_exhaustive]
pub struct User {
    /// The login name.
    pub username: String,
    /// The `sub` of the user's tokens (stable, unlike the login name).
    pub subject: String,
    /// The password, as an argon2id PHC string.
    pub password: PasswordHash,
    /// A disabled user cannot sign in or refresh.
    pub enabled: bool,
    /// The tenants the user belongs to (each covers its sub-tenants).
    pub tenants: Vec<TenantPath>,
    /// Roles carried by the user's tokens.
    pub roles: Vec<String>,
    /// If set, the only scopes the user may be granted (intersected with the client's).
    pub scopes: Option<Vec<String>>,
    /// Extra profile claims returned by `/connect/userinfo` (`name`, `email`, ...).
    pub profile: serde_json::Map<String, serde_json::Value>,
}

impl User {
    /// An enabled user of the root tenant, with no role, no scope limit and no profile.
    pub fn new(
        username: impl Into<String>,
        subject: impl Into<String>,
        password: PasswordHash,
    ) -> Self {
        User {
            username: username.into(),
            subject: subject.into(),
            password,
            enabled: true,
            tenants: vec![TenantPath::root()],
            roles: Vec::new(),
            scopes: None,
            profile: serde_json::Map::new(),
        }
    }

    /// Whether the user may sign in and refresh.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The tenants the user belongs to.
    pub fn with_tenants(mut self, tenants: impl IntoIterator<Item = TenantPath>) -> Self {
        self.tenants = tenants.into_iter().collect();
        self
    }

    /// Roles carried by the user's tokens.
    pub fn with_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The only scopes the user may be granted.
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Extra profile claims for `/connect/userinfo`.
    pub fn with_profile(mut self, profile: serde_json::Map<String, serde_json::Value>) -> Self {
        self.profile = profile;
        self
    }

    /// Whether the user belongs to `tenant` (directly or through a parent tenant).
    pub fn in_tenant(&self, tenant: &TenantPath) -> bool {
        self.tenants.iter().any(|t| t.covers(tenant.as_str()))
    }
}

/// The tenants that exist, as far as token requests are concerned: the root `/`, the declared
/// ones and the tenants below them. With none declared, every well-formed tenant exists.
///
/// A client of the root tenant may act in any tenant, so without this a `tenant_path` naming a
/// tenant nobody created (`/Nope`) would get a token for it; its holder belongs to no tenant
/// that a cutoff names, and an API that trusts the `tenant` claim sees a tenant it never heard
/// of. [`TokenServiceBuilder::tenants`](crate::TokenServiceBuilder::tenants) declares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeclaredTenants(Vec<TenantPath>);

impl DeclaredTenants {
    pub(crate) fn new(tenants: Vec<TenantPath>) -> Self {
        DeclaredTenants(tenants)
    }

    /// Whether a token may be issued for `tenant`.
    pub(crate) fn exists(&self, tenant: &TenantPath) -> bool {
        self.0.is_empty()
            || tenant.as_str() == "/"
            || self.0.iter().any(|t| t.covers(tenant.as_str()))
    }
}

/// The registered clients.
pub trait Clients: Send + Sync + fmt::Debug + 'static {
    /// The client with this id, if any.
    fn client<'a>(&'a self, client_id: &'a str) -> DirectoryFuture<'a, Option<Arc<Client>>>;

    /// Every scope some client may be granted (published in discovery metadata).
    fn scopes_supported(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The users who can sign in with the password grant.
pub trait Users: Send + Sync + fmt::Debug + 'static {
    /// The user with this login name, if any.
    fn by_username<'a>(&'a self, username: &'a str) -> DirectoryFuture<'a, Option<Arc<User>>>;

    /// The user with this subject, if any (refresh and userinfo).
    fn by_subject<'a>(&'a self, subject: &'a str) -> DirectoryFuture<'a, Option<Arc<User>>>;

    /// The most expensive password hash in the directory, if it can tell. An unknown username is
    /// verified against a dummy hash made with its parameters, so that it costs what a real
    /// user's wrong password costs; without it the dummy uses tollgate's default parameters, and
    /// users whose hashes cost more make unknown usernames measurably faster.
    fn costliest_password_hash(&self) -> Option<PasswordHash> {
        None
    }
}

/// Clients and users held in memory, typically loaded from the configuration file.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    clients: HashMap<String, Arc<Client>>,
    users_by_name: HashMap<String, Arc<User>>,
    users_by_subject: HashMap<String, Arc<User>>,
}

/// Two entries share an identifier: a client id, a username, or a subject (a client id counts as
/// a subject, since `client_credentials` tokens carry the client id as `sub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateEntry(pub String);

impl fmt::Display for DuplicateEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DuplicateEntry {}

impl StaticDirectory {
    /// A directory of these clients and users. Client ids, usernames and subjects must be unique.
    pub fn new(
        clients: impl IntoIterator<Item = Client>,
        users: impl IntoIterator<Item = User>,
    ) -> Result<Self, DuplicateEntry> {
        let mut directory = StaticDirectory::default();
        for client in clients {
            let id = client.id.clone();
            if directory
                .clients
                .insert(id.clone(), Arc::new(client))
                .is_some()
            {
                return Err(DuplicateEntry(format!("client `{id}` is defined twice")));
            }
        }
        for user in users {
            let user = Arc::new(user);
            if directory
                .users_by_name
                .insert(user.username.clone(), user.clone())
                .is_some()
            {
                return Err(DuplicateEntry(format!(
                    "user `{}` is defined twice",
                    user.username
                )));
            }
            if directory
                .users_by_subject
                .insert(user.subject.clone(), user.clone())
                .is_some()
            {
                return Err(DuplicateEntry(format!(
                    "subject `{}` is defined twice",
                    user.subject
                )));
            }
            if directory.clients.contains_key(&user.subject) {
                // A resource server would take the client's tokens for the user's.
                return Err(DuplicateEntry(format!(
                    "`{}` is both a client id and a user's subject: client_credentials tokens \
                     would carry that user's `sub`",
                    user.subject
                )));
            }
        }
        Ok(directory)
    }
}

impl Clients for StaticDirectory {
    fn client<'a>(&'a self, client_id: &'a str) -> DirectoryFuture<'a, Option<Arc<Client>>> {
        let found = self.clients.get(client_id).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn scopes_supported(&self) -> Vec<String> {
        let mut scopes: Vec<String> = self
            .clients
            .values()
            .flat_map(|c| c.scopes.iter().cloned())
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }
}

impl Users for StaticDirectory {
    fn by_username<'a>(&'a self, username: &'a str) -> DirectoryFuture<'a, Option<Arc<User>>> {
        let found = self.users_by_name.get(username).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn by_subject<'a>(&'a self, subject: &'a str) -> DirectoryFuture<'a, Option<Arc<User>>> {
        let found = self.users_by_subject.get(subject).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn costliest_password_hash(&self) -> Option<PasswordHash> {
        self.users_by_name
            .values()
            .map(|u| &u.password)
            .max_by_key(|hash| hash.cost())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> PasswordHash {
        PasswordHash::hash(b"pw").unwrap()
    }

    #[test]
    fn declared_tenants_cover_their_sub_tenants_and_the_root_always_exists() {
        let path = |p: &str| TenantPath::parse(p).unwrap();
        let declared = DeclaredTenants::new(vec![path("/Acme"), path("/Globex")]);
        for known in ["/", "/Acme", "/Acme/EU", "/Globex"] {
            assert!(declared.exists(&path(known)), "{known}");
        }
        for unknown in ["/Nope", "/Acmex", "/Nope/Acme"] {
            assert!(!declared.exists(&path(unknown)), "{unknown}");
        }
        assert!(DeclaredTenants::default().exists(&path("/Anything")));
    }

    #[test]
    fn ids_names_and_subjects_are_unique_and_no_client_shares_a_users_subject() {
        let client = |id: &str| Client::new(id, ClientSecret::from_plaintext("s"));
        let err = StaticDirectory::new([client("a"), client("a")], []).unwrap_err();
        assert_eq!(err.to_string(), "client `a` is defined twice");
        let err =
            StaticDirectory::new([client("svc")], [User::new("alice", "svc", hash())]).unwrap_err();
        assert!(
            err.to_string()
                .contains("both a client id and a user's subject"),
            "{err}"
        );
        assert!(
            StaticDirectory::new([client("svc")], [User::new("svc", "u-1", hash())]).is_ok(),
            "a username may equal a client id: it is never a token's sub"
        );
    }
}
