//! The tokens this issuer has handed out and that have not expired: refresh tokens by hash (for
//! the refresh grant, revocation and introspection) and access-token facts (so that a batch
//! revocation can say exactly how many live tokens it revoked).
//!
//! # Memory
//!
//! Access tokens are the many: [`timeline`] keeps each as a 32-byte record (48 with a grant) in
//! the bucket of its expiry instant, ids as their 16 bytes ([`id`]), the owner as one number for
//! the (tenant, subject, client) triple ([`owners`]). Measured with a counting allocator
//! (`cargo bench -p tollgate-issuer --features test-util --bench live_memory`), everything
//! included: see docs/performance.md, "Memory model of the token service".

#[cfg(feature = "test-util")]
pub(crate) mod bench;
mod id;
mod owners;
mod timeline;

use crate::store::{AccessTokenRecord, RefreshTokenRecord, TokenHash};
use dashmap::DashMap;
use owners::{Owner, Owners};
use timeline::{NewToken, PurgeStep, Timeline};
use tollgate_core::{CutoffScope, RevocationIndex, TenantPath, TokenIdentity, UnixMillis};

type Hasher = foldhash::fast::RandomState;

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
    access: Timeline,
    owners: Owners,
    refresh: DashMap<TokenHash, RefreshTokenRecord, Hasher>,
}

impl LiveTokens {
    /// Remembers an issued access token until it expires.
    pub(crate) fn insert_access(&self, record: &AccessTokenRecord) {
        let owner = self.owners.intern(Owner {
            tenant: &record.tenant,
            subject: &record.subject,
            client_id: &record.client_id,
        });
        self.access.insert(NewToken {
            id: &record.jti,
            grant: record.grant_id.as_deref(),
            issued_at: record.issued_at.0,
            expires_at: record.expires_at.0,
            owner,
        });
    }

    /// Forgets an access token (its issuance failed after it was registered); `expires_at` says
    /// where to find it.
    pub(crate) fn remove_access(&self, jti: &str, expires_at: UnixMillis) {
        self.access.remove(jti, expires_at.0);
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
    /// issued before `before`, the index accepts now: what a cutoff would revoke. `issuer` is
    /// this token service's `iss`, whose own cutoffs the index also applies.
    pub(crate) fn count_cut_off(
        &self,
        issuer: &str,
        scope: &CutoffScope,
        before: UnixMillis,
        now: UnixMillis,
        index: &RevocationIndex,
    ) -> u64 {
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
        let owners = self.owners.read();
        // `RevocationIndex::check` in parts, so that what depends only on the owner (tenant,
        // subject, client) is worked out once per owner rather than once per token: a repeated
        // cut over a million tokens already cut off would otherwise walk every scope a million
        // times while issuance waits. An owner out of scope gets the latest possible cutoff, so
        // that none of its tokens counts.
        let verdict = |owner: u32| {
            let Owner {
                tenant,
                subject,
                client_id,
            } = owners.get(owner);
            if !in_scope(tenant, subject, client_id) {
                return i64::MAX;
            }
            index
                .effective_cutoff(&TokenIdentity {
                    jti: "",
                    grant_id: None,
                    tenant,
                    subject,
                    client_id,
                    issuer,
                    // This token service issues no `sid`.
                    session: None,
                    issued_at: UnixMillis(0),
                })
                .0
        };
        let mut cutoffs: Vec<Option<i64>> = vec![None; owners.len()];
        // Ids are encoded back to text only to ask the index, and not at all when it holds none.
        let stats = index.stats();
        let mut count = 0u64;
        self.access.for_each_live(now.0, |token| {
            if token.issued_at >= before.0 {
                return;
            }
            let cutoff = match cutoffs.get_mut(token.owner as usize) {
                Some(known) => *known.get_or_insert_with(|| verdict(token.owner)),
                None => verdict(token.owner),
            };
            // Already refused (by an earlier cutoff, its id or its grant): not this cut's doing.
            let already_refused = token.issued_at < cutoff
                || (stats.tokens > 0 && token.id.with_text(|jti| index.is_token_revoked(jti)))
                || (stats.grants > 0
                    && token
                        .grant
                        .is_some_and(|g| g.with_text(|g| index.is_grant_revoked(g))));
            if !already_refused {
                count += 1;
            }
        });
        for entry in self.refresh.iter() {
            let r = entry.value();
            if r.rotated || r.expires_at <= now || r.issued_at >= before {
                continue;
            }
            if !in_scope(&r.tenant, &r.subject, &r.client_id) {
                continue;
            }
            if index.check(&refresh_identity(r, issuer)).is_ok() {
                count += 1;
            }
        }
        count
    }

    /// One bounded step of forgetting access tokens that expired before `before`: at most
    /// `budget` tokens plus one expiry bucket. Call again while the step says there is `more`.
    pub(crate) fn purge_access(&self, before: UnixMillis, budget: usize) -> PurgeStep {
        self.access.purge(before.0, budget)
    }

    /// Forgets refresh tokens that expired before `before`; returns how many. (They are far
    /// fewer than access tokens; the map is swept one shard at a time.)
    pub(crate) fn purge_refresh(&self, before: UnixMillis) -> usize {
        let refresh = self.refresh.len();
        self.refresh.retain(|_, r| r.expires_at >= before);
        refresh - self.refresh.len().min(refresh)
    }

    /// (live access tokens, live refresh tokens) currently tracked.
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.access.len(), self.refresh.len())
    }
}

/// How the revocation index judges a refresh token of `issuer`: by its grant, its owner and its
/// own issue instant.
pub(crate) fn refresh_identity<'a>(
    r: &'a RefreshTokenRecord,
    issuer: &'a str,
) -> TokenIdentity<'a> {
    TokenIdentity {
        // Refresh tokens are revoked through their grant, never one by one.
        jti: "",
        grant_id: Some(&r.grant_id),
        tenant: &r.tenant,
        subject: &r.subject,
        client_id: &r.client_id,
        issuer,
        session: None,
        issued_at: r.issued_at,
    }
}

#[cfg(test)]
mod tests {
    const ISSUER: &str = "https://id.example.com";

    use super::*;
    use id::Id128;
    use tollgate_core::{RevocationEvent, random};

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
            live.count_cut_off(ISSUER, &scope, UnixMillis(200), UnixMillis(150), &index),
            3
        );
        // Expired tokens do not count.
        assert_eq!(
            live.count_cut_off(ISSUER, &scope, UnixMillis(200), UnixMillis(10_000), &index),
            0
        );
        index.apply(&RevocationEvent::Cutoff {
            scope: scope.clone(),
            issued_before: UnixMillis(200),
        });
        assert_eq!(
            live.count_cut_off(ISSUER, &scope, UnixMillis(200), UnixMillis(150), &index),
            0,
            "a repeat revokes nothing"
        );
        assert_eq!(
            live.count_cut_off(
                ISSUER,
                &CutoffScope::All,
                UnixMillis(600),
                UnixMillis(150),
                &index
            ),
            2,
            "a3 and a4 remain"
        );
    }

    /// An access token of a tollgate id, or of `foreign` text.
    struct Token {
        jti: String,
        grant: Option<String>,
        tenant: &'static str,
        subject: &'static str,
        client: &'static str,
        issued_at: i64,
    }

    impl Token {
        fn record(&self) -> AccessTokenRecord {
            AccessTokenRecord {
                jti: self.jti.clone(),
                grant_id: self.grant.clone(),
                tenant: self.tenant.into(),
                subject: self.subject.into(),
                client_id: self.client.into(),
                issued_at: UnixMillis(self.issued_at),
                expires_at: UnixMillis(10_000),
            }
        }
    }

    /// Tokens of every kind (tollgate ids, foreign ids, with and without grants) across tenants,
    /// subjects and clients.
    fn population() -> Vec<Token> {
        let mut tokens = Vec::new();
        let ids: [fn(usize) -> String; 2] = [|_| random::id(), |i| format!("uuid-{i:032}")];
        for (i, id) in ids.iter().cycle().take(2 * 3 * 3 * 2 * 2 * 2).enumerate() {
            let tenant = ["/Org", "/Org/Sub", "/Other"][i % 3];
            let subject = ["alice", "bob", "carol"][(i / 3) % 3];
            let client = ["web", "svc"][(i / 9) % 2];
            let grant = match (i / 18) % 3 {
                0 => None,
                1 => Some(random::id()),
                _ => Some(format!("legacy-grant-{i}")),
            };
            tokens.push(Token {
                jti: id(i),
                grant,
                tenant,
                subject,
                client,
                issued_at: [100, 300][(i / 54) % 2],
            });
        }
        tokens
    }

    #[test]
    fn counts_are_exact_for_every_scope_and_id_kind() {
        let live = LiveTokens::default();
        let index = RevocationIndex::new();
        let tokens = population();
        for t in &tokens {
            live.insert_access(&t.record());
        }
        // Revoke one token by id and one family by grant, of each id kind.
        let revoked: Vec<&Token> = [
            tokens.iter().find(|t| Id128::parse(&t.jti).is_some()),
            tokens.iter().find(|t| Id128::parse(&t.jti).is_none()),
        ]
        .into_iter()
        .flatten()
        .collect();
        for t in &revoked {
            index.apply(&RevocationEvent::Token {
                jti: t.jti.clone(),
                expires_at: UnixMillis(10_000),
            });
        }
        let grants: Vec<String> = [
            tokens
                .iter()
                .find_map(|t| t.grant.clone().filter(|g| Id128::parse(g).is_some())),
            tokens
                .iter()
                .find_map(|t| t.grant.clone().filter(|g| Id128::parse(g).is_none())),
        ]
        .into_iter()
        .flatten()
        .collect();
        for g in &grants {
            index.apply(&RevocationEvent::Grant {
                grant_id: g.clone(),
                expires_at: UnixMillis(10_000),
            });
        }
        // What `count_cut_off` must say, worked out token by token with `check`.
        let expected = |scope: &CutoffScope, before: i64| {
            let tenant = match scope {
                CutoffScope::Tenant(t) => TenantPath::parse(t).ok(),
                _ => None,
            };
            tokens
                .iter()
                .filter(|t| t.issued_at < before)
                .filter(|t| match scope {
                    CutoffScope::All => true,
                    CutoffScope::Tenant(_) => tenant.as_ref().is_some_and(|p| p.covers(t.tenant)),
                    CutoffScope::Subject(s) => t.subject == s,
                    CutoffScope::Client(c) => t.client == c,
                    _ => false,
                })
                .filter(|t| {
                    let identity = TokenIdentity {
                        jti: &t.jti,
                        grant_id: t.grant.as_deref(),
                        tenant: t.tenant,
                        subject: t.subject,
                        client_id: t.client,
                        issuer: ISSUER,
                        session: None,
                        issued_at: UnixMillis(t.issued_at),
                    };
                    index.check(&identity).is_ok()
                })
                .count() as u64
        };
        let scopes = [
            CutoffScope::All,
            CutoffScope::Tenant("/Org".into()),
            CutoffScope::Tenant("/Org/Sub".into()),
            CutoffScope::Tenant("/Nobody".into()),
            CutoffScope::Subject("bob".into()),
            CutoffScope::Client("svc".into()),
        ];
        // Each scope, before and after the others cut: every pair of cutoffs combines.
        for round in 0..2 {
            for scope in &scopes {
                for before in [200, 400] {
                    let count = live.count_cut_off(
                        ISSUER,
                        scope,
                        UnixMillis(before),
                        UnixMillis(150),
                        &index,
                    );
                    assert_eq!(count, expected(scope, before), "{scope:?} {before} {round}");
                    assert!(count > 0 || round == 1 || *scope == scopes[3], "{scope:?}");
                }
            }
            for (i, scope) in scopes.iter().enumerate() {
                index.apply(&RevocationEvent::Cutoff {
                    scope: scope.clone(),
                    issued_before: UnixMillis([200, 400][i % 2]),
                });
            }
        }
        assert_eq!(
            live.count_cut_off(
                ISSUER,
                &CutoffScope::All,
                UnixMillis(400),
                UnixMillis(10_000),
                &index
            ),
            0,
            "expired tokens never count"
        );
    }

    #[test]
    fn a_removed_token_does_not_count() {
        let live = LiveTokens::default();
        let index = RevocationIndex::new();
        let tokens = population();
        for t in &tokens {
            live.insert_access(&t.record());
        }
        for t in tokens.iter().step_by(2) {
            live.remove_access(&t.jti, UnixMillis(10_000));
        }
        let all = live.count_cut_off(
            ISSUER,
            &CutoffScope::All,
            UnixMillis(400),
            UnixMillis(0),
            &index,
        );
        assert_eq!(all, tokens.len() as u64 / 2);
        assert_eq!(live.len(), (tokens.len() / 2, 0));
    }

    #[test]
    fn purge_takes_bounded_steps_and_only_the_expired() {
        let live = LiveTokens::default();
        for second in 1..=100 {
            for _ in 0..10 {
                let mut record = access(&random::id(), "/", 0);
                record.expires_at = UnixMillis(second * 1000);
                live.insert_access(&record);
            }
        }
        let mut steps = 0;
        let mut removed = 0;
        loop {
            let step = live.purge_access(UnixMillis(50_500), 25);
            // At most the budget plus one bucket (10 tokens).
            assert!(step.removed <= 35, "{step:?}");
            removed += step.removed;
            steps += 1;
            if !step.more {
                break;
            }
        }
        assert_eq!((removed, steps), (500, 17));
        assert_eq!(live.len(), (500, 0));
        let index = RevocationIndex::new();
        let left = live.count_cut_off(
            ISSUER,
            &CutoffScope::All,
            UnixMillis(1),
            UnixMillis(0),
            &index,
        );
        assert_eq!(left, 500, "the unexpired stay");
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
        let nothing = PurgeStep {
            removed: 0,
            more: false,
        };
        assert_eq!(live.purge_access(UnixMillis(10_000), 100), nothing);
        assert_eq!(live.purge_refresh(UnixMillis(10_000)), 0);
        assert_eq!(live.purge_access(UnixMillis(10_001), 100).removed, 1);
        assert_eq!(live.purge_refresh(UnixMillis(10_001)), 1);
        assert_eq!(live.len(), (0, 0));
    }
}
