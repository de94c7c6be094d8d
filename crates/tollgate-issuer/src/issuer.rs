//! The state every endpoint shares, how it is built, and how it is rebuilt from the store.

use crate::directory::{Client, Clients, Users};
use crate::live::LiveTokens;
use crate::response::Failure;
use crate::secret::Hasher;
use crate::store::{AccessTokenRecord, Record, Store, StoreError};
use crate::throttle::LoginThrottle;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::{
    Audience, Claims, Clock, KeySet, RevocationEvent, RevocationIndex, SystemClock, TenantPath,
    UnixMillis, jws,
};
use tollgate_layer::Verifier;

/// How long after their expiry revocations and tokens are kept: validators accept a token until
/// `exp` plus their clock-skew leeway (30 s by default), so its revocation must outlive that.
pub(crate) const RETENTION: Duration = Duration::from_secs(60);

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) access_default: Duration,
    pub(crate) access_max: Duration,
    pub(crate) refresh: Duration,
}

/// What every endpoint shares.
pub(crate) struct Shared {
    pub(crate) issuer: String,
    pub(crate) audience: Vec<String>,
    pub(crate) keys: KeySet,
    pub(crate) index: Arc<RevocationIndex>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clients: Arc<dyn Clients>,
    pub(crate) users: Arc<dyn Users>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) admin_role: String,
    pub(crate) hasher: Hasher,
    pub(crate) throttle: LoginThrottle,
    pub(crate) live: LiveTokens,
    /// Verifies this issuer's tokens for any audience (revocation, introspection, userinfo).
    pub(crate) verifier: Verifier,
    /// Held (shared) from the moment an access token takes its issue instant until it is
    /// registered in `live`; a batch revocation holds it exclusively while it counts, so that no
    /// token it will cut off escapes the count.
    pub(crate) issue_gate: tokio::sync::RwLock<()>,
    /// Held (shared) by single revocations and refresh rotations, exclusively by batch
    /// revocations, so that a count is never skewed by a concurrent change.
    pub(crate) revocation_gate: tokio::sync::RwLock<()>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .field("store", &self.store)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

/// What an access token is for.
pub(crate) struct TokenSpec<'a> {
    pub(crate) client: &'a Client,
    pub(crate) subject: &'a str,
    pub(crate) tenant: &'a TenantPath,
    pub(crate) scope: String,
    pub(crate) roles: Vec<String>,
    pub(crate) grant_id: Option<String>,
    pub(crate) lifetime: Duration,
}

impl Shared {
    /// Signs an access token and registers it as live. The caller records the returned record in
    /// the store (durably with a refresh token, written behind otherwise).
    pub(crate) async fn mint(
        &self,
        spec: TokenSpec<'_>,
    ) -> Result<(String, AccessTokenRecord), Failure> {
        let key = self.keys.signing_key().ok_or_else(|| {
            tracing::error!("no signing key configured");
            Failure::internal()
        })?;
        let audience = if spec.client.audience.is_empty() {
            &self.audience
        } else {
            &spec.client.audience
        };
        let audience = match audience.as_slice() {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        };
        let (claims, record) = {
            // Waits (without blocking a runtime worker) while a batch revocation counts.
            let _gate = self.issue_gate.read().await;
            let now = self.clock.now();
            let mut claims = Claims::new(
                &self.issuer,
                spec.subject,
                audience,
                &spec.client.id,
                now,
                spec.lifetime,
            );
            claims.scope = spec.scope;
            // Always present, `/` included: resource servers should not have to know the default.
            claims.tenant = Some(spec.tenant.as_str().to_owned());
            claims.roles = spec.roles;
            claims.grant_id = spec.grant_id;
            let record = AccessTokenRecord {
                jti: claims.jti.clone(),
                grant_id: claims.grant_id.clone(),
                tenant: spec.tenant.as_str().to_owned(),
                subject: claims.sub.clone(),
                client_id: claims.client_id.clone(),
                issued_at: now,
                expires_at: UnixMillis::from_secs(claims.exp),
            };
            self.live.insert_access(&record);
            (claims, record)
        };
        match jws::encode(&key, jws::ACCESS_TOKEN_TYP, &claims) {
            Ok(token) => Ok((token, record)),
            Err(e) => {
                self.live.remove_access(&record.jti);
                tracing::error!(error = %e, "cannot sign an access token");
                Err(Failure::internal())
            }
        }
    }

    /// Makes `event` durable, then applies it to the index: when this returns `Ok`, every
    /// validator sharing the index already enforces it.
    pub(crate) async fn revoke(&self, event: RevocationEvent) -> Result<(), Failure> {
        self.commit(vec![Record::Revocation(event.clone())]).await?;
        self.index.apply(&event);
        Ok(())
    }

    /// Commits `records` durably, mapping a storage failure to `503`.
    pub(crate) async fn commit(&self, records: Vec<Record>) -> Result<(), Failure> {
        self.store.commit(records).await.map_err(|e| {
            tracing::error!(error = %e, "store commit failed");
            Failure::unavailable()
        })
    }

    /// When a grant revoked now can be forgotten: after every token of its family has expired.
    pub(crate) fn grant_expiry(&self, now: UnixMillis) -> UnixMillis {
        now.saturating_add(self.lifetimes.refresh.max(self.lifetimes.access_max))
    }

    /// Forgets what expired: live tokens, index entries, store rows, quiet throttle records.
    pub(crate) async fn purge(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let before = now.saturating_sub(RETENTION);
        let live = self.live.purge(before);
        let index = self.index.purge_expired(now);
        self.throttle.forget_quiet(now);
        let stored = self.store.purge(before).await?;
        tracing::debug!(live, index, stored, "purged expired state");
        Ok(())
    }

    /// Rebuilds the index and the live tokens from the store.
    pub(crate) async fn load(&self) -> Result<(), StoreError> {
        let loaded = self.store.load(self.clock.now()).await?;
        let (revocations, access, refresh) = (
            loaded.revocations.len(),
            loaded.access_tokens.len(),
            loaded.refresh_tokens.len(),
        );
        for event in &loaded.revocations {
            self.index.apply(event);
        }
        for record in &loaded.access_tokens {
            self.live.insert_access(record);
        }
        for record in loaded.refresh_tokens {
            self.live.insert_refresh(record);
        }
        tracing::info!(revocations, access, refresh, "state loaded from the store");
        Ok(())
    }
}

/// Why a [`TokenService`](crate::TokenService) could not be built.
#[derive(Debug)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
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

/// Default lifetimes and limits.
pub(crate) mod defaults {
    use std::time::Duration;
    pub(crate) const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
    pub(crate) const MAX_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
    pub(crate) const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);
}

pub(crate) fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
