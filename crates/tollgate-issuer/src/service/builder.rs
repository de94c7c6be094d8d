//! [`TokenServiceBuilder`]: what a [`TokenService`] is made of, checked before it starts.

use super::TokenService;
use crate::auth::{ClientAuthenticator, SignIn, SignInThrottle};
use crate::directory::{Clients, DeclaredTenants, Users};
use crate::issuer::Issuer;
use crate::ledger::{self, Ledger, Lifetimes};
use crate::secret::Hasher;
use crate::store::Store;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{Clock, KeySet, RevocationIndex, SystemClock, TenantPath};
use tollgate_layer::Verifier;

/// Default token lifetimes.
mod defaults {
    use std::time::Duration;
    pub(super) const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
    pub(super) const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
    pub(super) const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);
}

/// Builds a [`TokenService`]: issuer, keys, store, clients and users are required.
#[must_use]
pub struct TokenServiceBuilder {
    issuer: Option<String>,
    audience: Vec<String>,
    keys: Option<KeySet>,
    index: Option<Arc<RevocationIndex>>,
    store: Option<Arc<dyn Store>>,
    clients: Option<Arc<dyn Clients>>,
    users: Option<Arc<dyn Users>>,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    admin_role: String,
    hash_concurrency: usize,
    cutoff_retention: Option<Duration>,
    tenants: Vec<TenantPath>,
    sign_in_throttle: SignInThrottle,
}

impl fmt::Debug for TokenServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServiceBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetimes", &self.lifetimes)
            .field("admin_role", &self.admin_role)
            .finish_non_exhaustive()
    }
}

impl TokenServiceBuilder {
    pub(super) fn new() -> Self {
        TokenServiceBuilder {
            issuer: None,
            audience: Vec::new(),
            keys: None,
            index: None,
            store: None,
            clients: None,
            users: None,
            clock: Arc::new(SystemClock),
            lifetimes: Lifetimes {
                access_default: defaults::ACCESS_TOKEN_LIFETIME,
                access_max: defaults::MAX_ACCESS_TOKEN_LIFETIME,
                refresh: defaults::REFRESH_TOKEN_LIFETIME,
            },
            admin_role: "admin".into(),
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cutoff_retention: None,
            tenants: Vec::new(),
            sign_in_throttle: SignInThrottle::default(),
        }
    }

    /// The issuer URL, `iss` of every token (required).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Adds a default audience (`aud`) for clients that name none; defaults to the issuer URL.
    /// The admin API accepts only tokens for these audiences.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// The keys to sign with (required; must hold a signing key).
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The revocation index to feed; a new one when not set.
    pub fn revocation_index(mut self, index: Arc<RevocationIndex>) -> Self {
        self.index = Some(index);
        self
    }

    /// Durable storage (required): `tollgate_sqlite::SqliteStore`, or
    /// [`MemoryStore`](crate::MemoryStore) by explicit choice. A store that is
    /// [shared](crate::Store::shared) by several replicas takes over issuance instants, batch
    /// counts, refresh rotation and the sign-in throttle.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The registered clients (required).
    pub fn clients(mut self, clients: Arc<dyn Clients>) -> Self {
        self.clients = Some(clients);
        self
    }

    /// The users of the password grant (required).
    pub fn users(mut self, users: Arc<dyn Users>) -> Self {
        self.users = Some(users);
        self
    }

    /// The clock (tests use a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Access-token lifetime when the request names none (default 5 minutes).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.access_default = lifetime;
        self
    }

    /// The longest access-token lifetime any client may ask for (default 1 hour).
    pub fn max_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.access_max = lifetime;
        self
    }

    /// Refresh-token lifetime (default 14 days); each rotation issues a token with a full lifetime.
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.refresh = lifetime;
        self
    }

    /// How long a cutoff is kept after its instant, when the index it feeds also judges tokens of
    /// other issuers that live longer than this issuer's (default: the longest access or refresh
    /// lifetime; a shorter value is raised to it). A cutoff older than that binds no token any
    /// more and is forgotten by the purge.
    pub fn cutoff_retention(mut self, retention: Duration) -> Self {
        self.cutoff_retention = Some(retention);
        self
    }

    /// The role the batch-revocation API requires (default `admin`).
    pub fn admin_role(mut self, role: impl Into<String>) -> Self {
        self.admin_role = role.into();
        self
    }

    /// Declares the tenants that exist below the root `/`. A token request whose `tenant_path`
    /// is neither `/`, one of these, nor below one of them is then refused with `400
    /// invalid_request`, whatever the client's or user's tenants allow (a client of `/` may act
    /// in every tenant, but only in tenants that exist). Not called, or with none: every
    /// well-formed tenant exists, as before.
    pub fn tenants(mut self, tenants: impl IntoIterator<Item = TenantPath>) -> Self {
        self.tenants.extend(tenants);
        self
    }

    /// Which keys failed password sign-ins are counted against (default
    /// [`SignInThrottle::Both`]: per username and address, under a looser per-username
    /// ceiling). The address is the [`PeerAddr`](crate::PeerAddr) the server puts in each
    /// request's extensions; without one, sign-ins are throttled per username whatever the
    /// policy.
    pub fn sign_in_throttle(mut self, policy: SignInThrottle) -> Self {
        self.sign_in_throttle = policy;
        self
    }

    /// How many password hashes may be verified at once (default: one per CPU).
    pub fn password_hash_concurrency(mut self, limit: usize) -> Self {
        self.hash_concurrency = limit;
        self
    }

    /// Loads the store's live state into the index and builds the service.
    pub async fn build(self) -> Result<TokenService, BuildError> {
        let missing = |what: &str| BuildError::new(format!("{what} is required"));
        let issuer = self.issuer.ok_or_else(|| missing("issuer"))?;
        let keys = self.keys.ok_or_else(|| missing("keys"))?;
        if keys.signing_key().is_none() {
            return Err(BuildError::new("the key set holds no signing key"));
        }
        let store = self.store.ok_or_else(|| missing("store"))?;
        let clients = self.clients.ok_or_else(|| missing("clients"))?;
        let users = self.users.ok_or_else(|| missing("users"))?;
        let index = self.index.unwrap_or_default();
        let audience = if self.audience.is_empty() {
            vec![issuer.clone()]
        } else {
            self.audience
        };
        let l = self.lifetimes;
        if l.access_default.is_zero() || l.access_max.is_zero() || l.refresh.is_zero() {
            return Err(BuildError::new("token lifetimes must be positive"));
        }
        let verifier = |audiences: Option<&[String]>| {
            let mut builder = Verifier::builder()
                .issuer(issuer.clone())
                .keys(keys.clone())
                .revocation_index(index.clone())
                .clock(self.clock.clone());
            builder = match audiences {
                None => builder.any_audience(),
                Some(all) => all.iter().fold(builder, |b, a| b.audience(a.clone())),
            };
            builder.build().map_err(|e| BuildError::new(e.to_string()))
        };
        let any_audience = verifier(None)?;
        let own_audience = verifier(Some(&audience))?;
        let hasher = Hasher::new(self.hash_concurrency)
            .map_err(|e| BuildError::new(format!("cannot prepare the password hasher: {e}")))?;
        let shared_store = store.clone().shared();
        let ledger = Ledger::new(ledger::Parts {
            issuer,
            audience,
            keys,
            index,
            store,
            clock: self.clock.clone(),
            lifetimes: l,
            // A cutoff binds this issuer's tokens, access and refresh, and, in a shared index,
            // those of any issuer whose tokens the app's Layers accept.
            cutoff_retention: l
                .access_max
                .max(l.refresh)
                .max(self.cutoff_retention.unwrap_or_default()),
            verifier: any_audience,
        });
        ledger
            .load()
            .await
            .map_err(|e| BuildError::new(format!("cannot load state: {e}")))?;
        // One argon2 run for the dummy hash: off the async runtime.
        let (sign_in_hasher, clock) = (hasher.clone(), self.clock.clone());
        let dummy_failed = |e: &dyn fmt::Display| {
            BuildError::new(format!("cannot make the dummy password hash: {e}"))
        };
        let sign_in =
            tokio::task::spawn_blocking(move || SignIn::new(users, sign_in_hasher, clock))
                .await
                .map_err(|e| dummy_failed(&e))?
                .map_err(|e| dummy_failed(&e))?;
        let sign_in = sign_in.throttled_by(self.sign_in_throttle);
        let sign_in = match shared_store {
            Some(shared) => sign_in.shared_with(shared),
            None => sign_in,
        };
        let issuer = Arc::new(Issuer {
            ledger: Arc::new(ledger),
            clients: ClientAuthenticator::new(clients, hasher, self.clock),
            users: sign_in,
            admin_role: self.admin_role,
            tenants: DeclaredTenants::new(self.tenants),
        });
        Ok(TokenService::new(issuer, own_audience))
    }
}

/// Why a [`TokenService`] could not be built.
#[derive(Debug)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    fn new(message: impl Into<String>) -> Self {
        BuildError {
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build the token service: {}", self.message)
    }
}

impl std::error::Error for BuildError {}
