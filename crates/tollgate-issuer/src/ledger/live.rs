//! The tokens this issuer has handed out and that have not expired: refresh tokens by hash (for
//! the refresh grant, revocation and introspection) and access-token facts (so that a batch
//! revocation can say exactly how many live tokens it revoked).

use crate::store::{AccessTokenRecord, RefreshTokenRecord, TokenHash};
use compact_str::CompactString;
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tollgate_core::{CutoffScope, RevocationIndex, TenantPath, TokenIdentity, UnixMillis};

type Hasher = foldhash::fast::RandomState;

/// Strings that repeat across millions of tokens (tenants, subjects, client ids), stored once and
/// referred to by a 4-byte id. Never shrinks: bounded by the number of distinct names.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32, Hasher>,
    names: Vec<Arc<str>>,
}

/// What a batch revocation needs to know about one access token: 80 bytes plus the map's slack.
#[derive(Debug, Clone)]
struct AccessEntry {
    grant: Option<CompactString>,
    tenant: u32,
    subject: u32,
    client: u32,
    issued_at: i64,
    expires_at: i64,
}

/// Why a refresh token could not be rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RotateError {
    /// No live refresh token has this hash.
    Unknown,
    /// It was already exchanged: a replay. Carries the record so its grant can be revoked.
    Reused(Box<RefreshTokenRecord>),
}

/// Live access-token facts and refresh tokens.
#[derive(Debug, Default)]
pub(crate) struct LiveTokens {
    access: DashMap<CompactString, AccessEntry, Hasher>,
    refresh: DashMap<TokenHash, RefreshTokenRecord, Hasher>,
    symbols: RwLock<Symbols>,
}

impl LiveTokens {
    fn intern(&self, name: &str) -> u32 {
        if let Ok(symbols) = self.symbols.read()
            && let Some(&id) = symbols.ids.get(name)
        {
            return id;
        }
        let mut symbols = self
            .symbols
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&id) = symbols.ids.get(name) {
            return id;
        }
        let id = u32::try_from(symbols.names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = name.into();
        symbols.names.push(name.clone());
        symbols.ids.insert(name, id);
        id
    }

    /// Remembers an issued access token until it expires.
    pub(crate) fn insert_access(&self, record: &AccessTokenRecord) {
        let entry = AccessEntry {
            grant: record.grant_id.as_deref().map(CompactString::from),
            tenant: self.intern(&record.tenant),
            subject: self.intern(&record.subject),
            client: self.intern(&record.client_id),
            issued_at: record.issued_at.0,
            expires_at: record.expires_at.0,
        };
        self.access.insert(CompactString::from(&record.jti), entry);
    }

    /// Forgets an access token (its issuance failed after it was registered).
    pub(crate) fn remove_access(&self, jti: &str) {
        self.access.remove(jti);
    }

    /// Remembers a refresh token until it expires.
    pub(crate) fn insert_refresh(&self, record: RefreshTokenRecord) {
        self.refresh.insert(record.hash, record);
    }

    /// The refresh token with this hash, if it is known (rotated ones included).
    pub(crate) fn refresh(&self, hash: &TokenHash) -> Option<RefreshTokenRecord> {
        self.refresh.get(hash).map(|r| r.clone())
    }

    /// Marks the refresh token as exchanged, atomically: of two concurrent exchanges of one
    /// token, exactly one succeeds and the other sees a reuse.
    pub(crate) fn rotate(&self, hash: &TokenHash) -> Result<RefreshTokenRecord, RotateError> {
        let mut entry = self.refresh.get_mut(hash).ok_or(RotateError::Unknown)?;
        if entry.rotated {
            return Err(RotateError::Reused(Box::new(entry.clone())));
        }
        entry.rotated = true;
        Ok(entry.clone())
    }

    /// Undoes [`rotate`](Self::rotate) when the exchange could not be made durable.
    pub(crate) fn unrotate(&self, hash: &TokenHash) {
        if let Some(mut entry) = self.refresh.get_mut(hash) {
            entry.rotated = false;
        }
    }

    /// How many live tokens (access tokens, and refresh tokens not yet exchanged) in `scope`,
    /// issued before `before`, the index accepts now: what a cutoff would revoke.
    pub(crate) fn count_cut_off(
        &self,
        scope: &CutoffScope,
        before: UnixMillis,
        now: UnixMillis,
        index: &RevocationIndex,
    ) -> u64 {
        let symbols = self
            .symbols
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = |id: u32| symbols.names.get(id as usize).map_or("", |n| &**n);
        let tenant_scope = match scope {
            CutoffScope::Tenant(path) => TenantPath::parse(path).ok(),
            _ => None,
        };
        let in_scope = |tenant: &str, subject: &str, client: &str| match scope {
            CutoffScope::All => true,
            CutoffScope::Tenant(_) => tenant_scope.as_ref().is_some_and(|t| t.covers(tenant)),
            CutoffScope::Subject(s) => subject == s,
            CutoffScope::Client(c) => client == c,
            // A scope this count does not know covers nothing it can tell.
            _ => false,
        };
        // `RevocationIndex::check` in three parts, so that the effective cutoff, which depends
        // only on (tenant, subject, client), is looked up once per distinct triple rather than
        // once per token: a repeated cut over a million tokens already cut off would otherwise
        // walk every scope a million times while issuance waits.
        let mut cutoffs: HashMap<(u32, u32, u32), i64, Hasher> = HashMap::default();
        let mut count = 0u64;
        for entry in self.access.iter() {
            let (jti, e) = entry.pair();
            if e.expires_at <= now.0 || e.issued_at >= before.0 {
                continue;
            }
            let (tenant, subject, client_id) = (name(e.tenant), name(e.subject), name(e.client));
            if !in_scope(tenant, subject, client_id) {
                continue;
            }
            let cutoff = *cutoffs
                .entry((e.tenant, e.subject, e.client))
                .or_insert_with(|| {
                    index
                        .effective_cutoff(&TokenIdentity {
                            jti: "",
                            grant_id: None,
                            tenant,
                            subject,
                            client_id,
                            issued_at: UnixMillis(0),
                        })
                        .0
                });
            // Already refused (by an earlier cutoff, its id or its grant): not this cut's doing.
            let already_refused = e.issued_at < cutoff
                || index.is_token_revoked(jti)
                || e.grant
                    .as_deref()
                    .is_some_and(|g| index.is_grant_revoked(g));
            if !already_refused {
                count += 1;
            }
        }
        for entry in self.refresh.iter() {
            let r = entry.value();
            if r.rotated || r.expires_at <= now || r.issued_at >= before {
                continue;
            }
            if !in_scope(&r.tenant, &r.subject, &r.client_id) {
                continue;
            }
            if index.check(&refresh_identity(r)).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// Forgets tokens that expired before `before`; returns how many.
    pub(crate) fn purge(&self, before: UnixMillis) -> usize {
        let (access, refresh) = (self.access.len(), self.refresh.len());
        self.access.retain(|_, e| e.expires_at >= before.0);
        self.refresh.retain(|_, r| r.expires_at >= before);
        (access - self.access.len().min(access)) + (refresh - self.refresh.len().min(refresh))
    }

    /// (live access tokens, live refresh tokens) currently tracked.
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.access.len(), self.refresh.len())
    }
}

/// How the revocation index judges a refresh token: by its grant, its owner and its own issue
/// instant.
pub(crate) fn refresh_identity(r: &RefreshTokenRecord) -> TokenIdentity<'_> {
    TokenIdentity {
        // Refresh tokens are revoked through their grant, never one by one.
        jti: "",
        grant_id: Some(&r.grant_id),
        tenant: &r.tenant,
        subject: &r.subject,
        client_id: &r.client_id,
        issued_at: r.issued_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::RevocationEvent;

    fn access(jti: &str, tenant: &str, issued_at: i64) -> AccessTokenRecord {
        AccessTokenRecord {
            jti: jti.into(),
            grant_id: None,
            tenant: tenant.into(),
            subject: "alice".into(),
            client_id: "web".into(),
            issued_at: UnixMillis(issued_at),
            expires_at: UnixMillis(10_000),
        }
    }

    fn refresh(byte: u8, issued_at: i64) -> RefreshTokenRecord {
        RefreshTokenRecord {
            hash: [byte; 32],
            grant_id: format!("g{byte}"),
            client_id: "web".into(),
            subject: "alice".into(),
            tenant: "/Org".into(),
            scope: "read".into(),
            issued_at: UnixMillis(issued_at),
            expires_at: UnixMillis(10_000),
            rotated: false,
        }
    }

    #[test]
    fn counts_live_unrevoked_tokens_in_scope_before_the_instant() {
        let live = LiveTokens::default();
        let index = RevocationIndex::new();
        live.insert_access(&access("a1", "/Org", 100));
        live.insert_access(&access("a2", "/Org/Sub", 100));
        live.insert_access(&access("a3", "/Other", 100));
        live.insert_access(&access("a4", "/Org", 500)); // issued after the instant
        live.insert_access(&access("a5", "/Org", 100));
        live.insert_refresh(refresh(1, 100));
        live.insert_refresh(refresh(2, 100));
        index.apply(&RevocationEvent::Token {
            jti: "a5".into(),
            expires_at: UnixMillis(10_000),
        });
        live.rotate(&[2; 32]).unwrap();
        let scope = CutoffScope::Tenant("/Org".into());
        // a1, a2 and refresh 1: a5 is already revoked, refresh 2 was exchanged.
        assert_eq!(
            live.count_cut_off(&scope, UnixMillis(200), UnixMillis(150), &index),
            3
        );
        // Expired tokens do not count.
        assert_eq!(
            live.count_cut_off(&scope, UnixMillis(200), UnixMillis(10_000), &index),
            0
        );
        index.apply(&RevocationEvent::Cutoff {
            scope: scope.clone(),
            issued_before: UnixMillis(200),
        });
        assert_eq!(
            live.count_cut_off(&scope, UnixMillis(200), UnixMillis(150), &index),
            0,
            "a repeat revokes nothing"
        );
        assert_eq!(
            live.count_cut_off(&CutoffScope::All, UnixMillis(600), UnixMillis(150), &index),
            2,
            "a3 and a4 remain"
        );
    }

    #[test]
    fn rotation_happens_once() {
        let live = LiveTokens::default();
        live.insert_refresh(refresh(7, 1));
        assert!(live.rotate(&[7; 32]).is_ok());
        assert!(matches!(live.rotate(&[7; 32]), Err(RotateError::Reused(_))));
        live.unrotate(&[7; 32]);
        assert!(live.rotate(&[7; 32]).is_ok());
        assert_eq!(live.rotate(&[8; 32]), Err(RotateError::Unknown));
    }

    #[test]
    fn purge_forgets_expired_tokens() {
        let live = LiveTokens::default();
        live.insert_access(&access("a1", "/", 1));
        live.insert_refresh(refresh(1, 1));
        assert_eq!(live.purge(UnixMillis(10_000)), 0);
        assert_eq!(live.purge(UnixMillis(10_001)), 2);
        assert_eq!(live.len(), (0, 0));
    }
}
