//! The ledger: the one owner of what this issuer has issued and revoked.
//!
//! It holds the live tokens, the durable [`Store`], the shared [`RevocationIndex`] and the two
//! gates that keep batch counts exact, and it offers the few verbs the endpoints need:
//!
//! - [`issue`](Ledger::issue): an access token, with a refresh token when the grant has one;
//! - [`redeem`](Ledger::redeem): exchange a refresh token (rotation and reuse detection);
//! - [`find`](Ledger::find): one answer to "is this token live?", cutoffs included, used by
//!   revocation, introspection and refresh alike;
//! - [`revoke`](Ledger::revoke): a token, or a refresh token's whole grant, durably, then enforced;
//! - [`cut_off`](Ledger::cut_off): a cutoff with the exact count of live tokens it revoked.
//!
//! Every durable change goes through here, and [`Ledger::record`] is the one place where a
//! revocation event becomes durable (the store) and then enforced (the index). Undoing a
//! half-done change (a token registered but never handed out, a rotation that could not be
//! committed) is the ledger's business too, never an endpoint's.
//!
//! # Why batch counts are exact
//!
//! A batch revocation answers how many live tokens it revoked. Two gates make that count agree
//! with what the cutoff really does:
//!
//! - the *issue gate* is held shared from the moment an access token takes its issue instant until
//!   it is registered as live; the count holds it exclusively, so every token issued before the
//!   cutoff's instant is in the live set when it is counted, and none issued after it is;
//! - the *revocation gate* is held shared by every other change to what is revoked (a single
//!   revocation, a rotation, a family being issued), and exclusively by the count and its cutoff,
//!   so that no token changes state between being counted and being cut off.

//!
//! # Replicas
//!
//! A store shared by several processes ([`Store::shared`]) cannot rely on these gates: each
//! replica has its own. With such a store the ledger keeps no live set; it leaves the issue
//! instant, the count and its cutoff, and refresh rotation to the store, which orders them in
//! the database (see [`crate::store::shared`] for why counts stay exact there).

mod live;
mod redeem;
mod shared;

pub(crate) use live::LiveTokens;
#[cfg(feature = "test-util")]
pub use live::bench::LiveTokensBench;
pub(crate) use redeem::RedeemError;

use crate::digest::sha256;
use crate::store::{
    AccessTokenRecord, Purge, Record, RefreshTokenRecord, SharedStore, Store, StoreError,
};
use live::refresh_identity;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, RwLock};
use tollgate_core::{
    Audience, Claims, Clock, Confirmation, CutoffScope, KeySet, RevocationEvent, RevocationIndex,
    TenantPath, UnixMillis, jws, random,
};
use tollgate_layer::{VerifiedClaims, Verifier};

/// How long after their expiry revocations and tokens are kept: validators accept a token until
/// `exp` plus their clock-skew leeway (30 s by default), so its revocation must outlive that.
const RETENTION: Duration = Duration::from_secs(60);

/// How many expired access tokens one purge step forgets before letting others at the live set
/// (plus at most one expiry bucket): freeing them takes microseconds, since records are dropped a
/// chunk of up to 1,024 at a time.
const PURGE_STEP: usize = 65_536;

/// How far in the future a cutoff's instant may be (clock skew between caller and server).
const MAX_SKEW: Duration = Duration::from_secs(1);

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    /// Access-token lifetime when the request names none.
    pub(crate) access_default: Duration,
    /// The longest access-token lifetime any client may ask for.
    pub(crate) access_max: Duration,
    /// Refresh-token lifetime; each rotation issues a token with a full lifetime.
    pub(crate) refresh: Duration,
}

/// Why the ledger could not make a change. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerError {
    /// The store refused or failed: retry later.
    Unavailable,
    /// Something that should not fail did (no signing key, signing failed).
    Internal,
}

/// What an access token is for.
#[derive(Debug)]
pub(crate) struct AccessSpec<'a> {
    pub(crate) client_id: &'a str,
    /// `aud`; empty means the issuer's default audience.
    pub(crate) audience: &'a [String],
    pub(crate) subject: &'a str,
    pub(crate) tenant: &'a TenantPath,
    pub(crate) scope: String,
    pub(crate) roles: Vec<String>,
    pub(crate) lifetime: Duration,
    /// `cnf.x5t#S256`: the client certificate the token is bound to (RFC 8705 §3), if any.
    pub(crate) certificate: Option<&'a str>,
}

/// Tokens handed out by [`Ledger::issue`].
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
}

/// A token [`Ledger::find`] judged live.
#[derive(Debug)]
pub(crate) enum Found {
    /// An access token of this issuer that a validator sharing the index accepts now.
    Access(VerifiedClaims),
    /// A refresh token that has not expired and whose grant is neither revoked nor cut off; it
    /// may already have been exchanged (`rotated`), which only the refresh grant treats as reuse.
    Refresh(RefreshTokenRecord),
}

impl Found {
    /// The client the token was issued to.
    pub(crate) fn client_id(&self) -> &str {
        match self {
            Found::Access(claims) => &claims.client_id,
            Found::Refresh(record) => &record.client_id,
        }
    }
}

/// Why a token was not revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevokeError {
    /// It was issued to another client (RFC 7009 §2.1: the request is refused).
    OtherClient,
    /// The ledger could not make the change.
    Ledger(LedgerError),
}

/// What a cutoff did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CutOff {
    /// Live tokens (access, and refresh not yet exchanged) it turned from accepted to refused.
    pub(crate) count: u64,
    /// The instant it cuts at.
    pub(crate) issued_before: UnixMillis,
}

/// Why a cutoff was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutOffError {
    /// The instant is further in the future than clock skew explains.
    InTheFuture,
    /// The ledger could not make the change.
    Ledger(LedgerError),
}

/// The one owner of the issuer's state (see the [module docs](self)).
pub(crate) struct Ledger {
    issuer: String,
    audience: Vec<String>,
    keys: KeySet,
    index: Arc<RevocationIndex>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    /// How long a cutoff is kept after its instant: the longest lifetime of any token it may
    /// bind.
    cutoff_retention: Duration,
    live: LiveTokens,
    /// Verifies this issuer's tokens for any audience.
    verifier: Verifier,
    issue_gate: RwLock<()>,
    revocation_gate: RwLock<()>,
    /// The store's coordination, when it is shared with other replicas: see
    /// [Replicas](self#replicas).
    shared: Option<Arc<dyn SharedStore>>,
    /// Woken after every revocation commit: the relay that publishes the store's outbox waits on
    /// it rather than polling.
    outbox: Arc<Notify>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .field("store", &self.store)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

/// What a [`Ledger`] is made of.
pub(crate) struct Parts {
    pub(crate) issuer: String,
    pub(crate) audience: Vec<String>,
    pub(crate) keys: KeySet,
    pub(crate) index: Arc<RevocationIndex>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lifetimes: Lifetimes,
    /// At least the longest access or refresh lifetime (the builder makes sure).
    pub(crate) cutoff_retention: Duration,
    pub(crate) verifier: Verifier,
}

impl Ledger {
    /// A ledger with nothing live; [`load`](Self::load) reads the store back.
    pub(crate) fn new(parts: Parts) -> Self {
        let shared = parts.store.clone().shared();
        Ledger {
            issuer: parts.issuer,
            audience: parts.audience,
            keys: parts.keys,
            index: parts.index,
            store: parts.store,
            clock: parts.clock,
            lifetimes: parts.lifetimes,
            cutoff_retention: parts.cutoff_retention,
            live: LiveTokens::default(),
            verifier: parts.verifier,
            issue_gate: RwLock::new(()),
            revocation_gate: RwLock::new(()),
            shared,
            outbox: Arc::new(Notify::new()),
        }
    }

    /// Notified after every revocation this ledger commits (see [`Ledger::record`]).
    pub(crate) fn outbox(&self) -> &Arc<Notify> {
        &self.outbox
    }

    /// The issuer URL (`iss`).
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The default audience.
    pub(crate) fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The keys tokens are signed with.
    pub(crate) fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The durable store.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The revocation index this ledger feeds.
    pub(crate) fn index(&self) -> &Arc<RevocationIndex> {
        &self.index
    }

    /// Token lifetimes.
    pub(crate) fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// The issuer's clock.
    pub(crate) fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// Live (access, refresh) tokens tracked.
    pub(crate) fn live(&self) -> (usize, usize) {
        self.live.len()
    }

    /// Issues an access token and, when `refresh_scope` is given, a refresh token starting a new
    /// grant. With a refresh token both are committed durably before this returns; an access
    /// token alone is recorded behind the answer (losing it in a crash can only make a later
    /// batch count smaller, never let a revoked token through: cutoffs judge by issue instant).
    pub(crate) async fn issue(
        &self,
        spec: AccessSpec<'_>,
        refresh_scope: Option<String>,
    ) -> Result<Issued, LedgerError> {
        if let Some(shared) = &self.shared {
            let family = refresh_scope.map(|scope| (random::id(), scope, None));
            return self.issue_shared(shared.as_ref(), &spec, family).await;
        }
        let Some(refresh_scope) = refresh_scope else {
            let (access_token, record) = self.mint(&spec, None).await?;
            let (jti, expires_at) = (record.jti.clone(), record.expires_at);
            if let Err(e) = self.store.write_behind(vec![Record::AccessToken(record)]) {
                tracing::error!(error = %e, "cannot record an issued token");
                self.live.remove_access(&jti, expires_at);
                return Err(LedgerError::Unavailable);
            }
            return Ok(Issued {
                access_token,
                refresh_token: None,
            });
        };
        // A batch count must not run while this family is half-made.
        let _gate = self.revocation_gate.read().await;
        let grant_id = random::id();
        self.issue_family(spec, grant_id, refresh_scope, None).await
    }

    /// Signs an access token and registers it as live, under the issue gate.
    async fn mint(
        &self,
        spec: &AccessSpec<'_>,
        grant_id: Option<&str>,
    ) -> Result<(String, AccessTokenRecord), LedgerError> {
        let (claims, record) = {
            // Waits (without blocking a runtime worker) while a batch revocation counts.
            let _gate = self.issue_gate.read().await;
            let claims = self.claims_for(spec, grant_id, self.clock.now());
            let record = access_record(&claims);
            self.live.insert_access(&record);
            (claims, record)
        };
        match self.sign(&claims) {
            Ok(token) => Ok((token, record)),
            Err(e) => {
                self.live.remove_access(&record.jti, record.expires_at);
                Err(e)
            }
        }
    }

    /// The claims of an access token described by `spec`, issued at `now`.
    fn claims_for(&self, spec: &AccessSpec<'_>, grant_id: Option<&str>, now: UnixMillis) -> Claims {
        let audience = if spec.audience.is_empty() {
            &self.audience
        } else {
            spec.audience
        };
        let audience = match audience {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        };
        let mut claims = Claims::new(
            &self.issuer,
            spec.subject,
            audience,
            spec.client_id,
            now,
            spec.lifetime,
        );
        claims.scope = spec.scope.clone();
        // Always present, `/` included: resource servers should not have to know the default.
        claims.tenant = Some(spec.tenant.as_str().to_owned());
        claims.roles = spec.roles.clone();
        claims.grant_id = grant_id.map(str::to_owned);
        claims.cnf = spec.certificate.map(Confirmation::certificate);
        claims
    }

    /// Signs `claims` with the signing key.
    fn sign(&self, claims: &Claims) -> Result<String, LedgerError> {
        let key = self.keys.signing_key().ok_or_else(|| {
            tracing::error!("no signing key configured");
            LedgerError::Internal
        })?;
        jws::encode(&key, jws::ACCESS_TOKEN_TYP, claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            LedgerError::Internal
        })
    }

    /// Issues an access token and a refresh token of `grant_id`, committing both (and the
    /// rotation of the refresh token they replace, if any) durably. The caller holds the
    /// revocation gate.
    async fn issue_family(
        &self,
        spec: AccessSpec<'_>,
        grant_id: String,
        refresh_scope: String,
        replaces: Option<[u8; 32]>,
    ) -> Result<Issued, LedgerError> {
        if let Some(shared) = &self.shared {
            return self
                .issue_shared(
                    shared.as_ref(),
                    &spec,
                    Some((grant_id, refresh_scope, replaces)),
                )
                .await;
        }
        let (access_token, access) = self.mint(&spec, Some(&grant_id)).await?;
        let (jti, expires_at) = (access.jti.clone(), access.expires_at);
        let refresh_token = random::secret();
        let now = self.clock.now();
        let refresh = RefreshTokenRecord {
            hash: sha256(refresh_token.as_bytes()),
            grant_id,
            client_id: spec.client_id.to_owned(),
            subject: spec.subject.to_owned(),
            tenant: spec.tenant.as_str().to_owned(),
            scope: refresh_scope,
            issued_at: now,
            expires_at: now.saturating_add(self.lifetimes.refresh),
            rotated: false,
        };
        let mut records = vec![
            Record::AccessToken(access),
            Record::RefreshToken(refresh.clone()),
        ];
        records.extend(replaces.map(Record::RefreshRotated));
        if let Err(e) = self.commit(records).await {
            // Never handed out: it must not count in a batch revocation.
            self.live.remove_access(&jti, expires_at);
            return Err(e);
        }
        self.live.insert_refresh(refresh);
        Ok(Issued {
            access_token,
            refresh_token: Some(refresh_token),
        })
    }

    /// The live token `token` is, if any: an access token a validator sharing the index accepts
    /// now (signature, claims, revocations and cutoffs), or a refresh token that has not expired
    /// and whose grant is neither revoked nor cut off.
    pub(crate) async fn find(&self, token: &str) -> Result<Option<Found>, LedgerError> {
        if jws::is_compact(token) {
            // Expired, revoked, cut-off, foreign or forged tokens fail verification.
            return Ok(self.verifier.verify(token).ok().map(Found::Access));
        }
        Ok(self
            .live_refresh(&sha256(token.as_bytes()))
            .await?
            .map(Found::Refresh))
    }

    /// The refresh token with this hash, if it is live (rotated ones included): from the live
    /// set, or from a shared store, which knows every replica's.
    async fn live_refresh(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<RefreshTokenRecord>, LedgerError> {
        let record = if let Some(shared) = &self.shared {
            shared.refresh_token(hash).await.map_err(|e| {
                tracing::error!(error = %e, "store lookup failed");
                LedgerError::Unavailable
            })?
        } else {
            self.live.refresh(hash)
        };
        Ok(record.filter(|record| {
            record.expires_at > self.clock.now()
                && self
                    .index
                    .check(&refresh_identity(record, &self.issuer))
                    .is_ok()
        }))
    }

    /// Revokes `token` for `client_id` if it is live: an access token by its `jti`, a refresh
    /// token by its whole grant (the refresh token and every access token minted from it).
    /// Durable, then enforced. A token that is not live is nothing to revoke; another client's
    /// token is left alone.
    pub(crate) async fn revoke(&self, client_id: &str, token: &str) -> Result<(), RevokeError> {
        let Some(found) = self.find(token).await.map_err(RevokeError::Ledger)? else {
            return Ok(());
        };
        if found.client_id() != client_id {
            return Err(RevokeError::OtherClient);
        }
        let event = match &found {
            Found::Access(claims) => RevocationEvent::revoke_token(claims),
            Found::Refresh(record) => self.grant_revocation(&record.grant_id),
        };
        let _gate = self.revocation_gate.read().await;
        self.record(event).await.map_err(RevokeError::Ledger)
    }

    /// The event that revokes a grant until every token of its family has expired.
    fn grant_revocation(&self, grant_id: &str) -> RevocationEvent {
        let longest = self.lifetimes.refresh.max(self.lifetimes.access_max);
        RevocationEvent::Grant {
            grant_id: grant_id.to_owned(),
            expires_at: self.clock.now().saturating_add(longest),
        }
    }

    /// Cuts off every token in `scope` issued before `asked` (now when `None`), and counts the
    /// live tokens that turned from accepted to refused.
    pub(crate) async fn cut_off(
        self: &Arc<Self>,
        scope: CutoffScope,
        asked: Option<UnixMillis>,
    ) -> Result<CutOff, CutOffError> {
        if let Some(shared) = &self.shared {
            return self.cut_off_shared(shared.as_ref(), scope, asked).await;
        }
        let _revocations = self.revocation_gate.write().await;
        // The count walks every live token under the issue gate: on a blocking thread, so that
        // the runtime's workers keep serving everything but issuance meanwhile.
        let ledger = self.clone();
        let counted_scope = scope.clone();
        let cut = tokio::task::spawn_blocking(move || {
            let _issuance = ledger.issue_gate.blocking_write();
            let now = ledger.clock.now();
            let issued_before = match asked {
                None => now,
                Some(t) if t > now.saturating_add(MAX_SKEW) => {
                    return Err(CutOffError::InTheFuture);
                }
                // Within the skew allowance a future instant means "now": a token issued after
                // this call answers must keep working, and must not escape the count.
                Some(t) => t.min(now),
            };
            let count = ledger.live.count_cut_off(
                &ledger.issuer,
                &counted_scope,
                issued_before,
                now,
                &ledger.index,
            );
            Ok(CutOff {
                count,
                issued_before,
            })
        })
        .await
        .map_err(|_| CutOffError::Ledger(LedgerError::Internal))??;
        self.record(RevocationEvent::Cutoff {
            scope,
            issued_before: cut.issued_before,
        })
        .await
        .map_err(CutOffError::Ledger)?;
        Ok(cut)
    }

    /// Makes `event` durable, then applies it to the index, then wakes the outbox's relay: when
    /// this returns `Ok`, every validator sharing the index already enforces it, and validators
    /// in other processes will once the relay has published it (the store's outbox keeps it
    /// until then, across restarts). The caller holds the revocation gate.
    async fn record(&self, event: RevocationEvent) -> Result<(), LedgerError> {
        self.commit(vec![Record::Revocation(event.clone())]).await?;
        self.enforce(&event);
        Ok(())
    }

    /// Applies a committed revocation to the index and wakes the outbox's relay.
    fn enforce(&self, event: &RevocationEvent) {
        self.index.apply(event);
        self.outbox.notify_one();
    }

    /// Commits `records` durably.
    async fn commit(&self, records: Vec<Record>) -> Result<(), LedgerError> {
        self.store.commit(records).await.map_err(|e| {
            tracing::error!(error = %e, "store commit failed");
            LedgerError::Unavailable
        })
    }

    /// Makes everything written so far durable (written-behind records included).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Forgets what expired: live tokens, index entries, store rows, and cutoffs that no token
    /// still accepted can predate.
    pub(crate) async fn purge(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let before = now.saturating_sub(RETENTION);
        let mut live = self.live.purge_refresh(before);
        loop {
            let step = self.live.purge_access(before, PURGE_STEP);
            live += step.removed;
            if !step.more {
                break;
            }
            // Issuance and batch counts get the live set between steps: however many tokens
            // expired since the last purge, none waits behind more than one step.
            tokio::task::yield_now().await;
        }
        let index =
            self.index.purge_expired(now) + self.index.purge_cutoffs(now, self.cutoff_retention);
        // The store forgets a cutoff no sooner than the index does (RETENTION covers the index's
        // grace, the validators' leeway), so a restart never revives a token a cutoff binds.
        let cutoffs_before = before.saturating_sub(self.cutoff_retention);
        let stored = self.store.purge(Purge::new(before, cutoffs_before)).await?;
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
        if self.shared.is_some() {
            // Every replica's tokens are in the store, which answers for them.
            tracing::info!(revocations, "revocations loaded from the shared store");
            return Ok(());
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

/// What the store keeps of an access token with these claims.
fn access_record(claims: &Claims) -> AccessTokenRecord {
    AccessTokenRecord {
        jti: claims.jti.clone(),
        grant_id: claims.grant_id.clone(),
        tenant: claims.tenant().to_owned(),
        subject: claims.sub.clone(),
        client_id: claims.client_id.clone(),
        issued_at: claims.issued_at(),
        expires_at: UnixMillis::from_secs(claims.exp),
    }
}
