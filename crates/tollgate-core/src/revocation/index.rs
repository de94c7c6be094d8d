//! The in-memory revocation index: what `check` consults on every request.

use super::{CutoffScope, RevocationEvent};
use crate::UnixMillis;
use crate::tenant::for_each_ancestor;
use compact_str::CompactString;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

/// Token ids up to 24 bytes (tollgate's own are 22) are stored inline, without a heap allocation.
type Key = CompactString;
type Map<V> = DashMap<Key, V, foldhash::fast::RandomState>;
/// A scope's map of cutoffs, with the scope one of its keys names.
type NamedMap<'a> = (&'a Map<i64>, fn(String) -> CutoffScope);

/// What the index needs to know about a token to judge it; borrowed from its claims, so that a
/// check allocates nothing.
///
/// Deliberately exhaustive: it is the input of [`RevocationIndex::check`], built field by field
/// (or by [`Claims::identity`](crate::Claims::identity)); a field added for a new kind of cutoff
/// must be supplied by every caller for their checks to stay right, so it should break their
/// build rather than default silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenIdentity<'a> {
    /// `jti`.
    pub jti: &'a str,
    /// The refresh-token family the token belongs to, if any.
    pub grant_id: Option<&'a str>,
    /// The tenant path (`/` for the root tenant).
    pub tenant: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `iss`: whose cutoffs ([`RevocationEvent::IssuerCutoff`]) apply besides everyone's.
    pub issuer: &'a str,
    /// `sid`: the session the token was issued in, if it names one.
    pub session: Option<&'a str>,
    /// The issue instant, millisecond precision.
    pub issued_at: UnixMillis,
}

/// Why the index rejects a token.
///
/// Non-exhaustive: new reasons may be added as new kinds of revocation are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The token itself was revoked.
    Token,
    /// The grant (refresh-token family) it was minted from was revoked.
    Grant,
    /// It was issued before a cutoff that applies to it.
    Cutoff {
        /// The effective (maximum applicable) cutoff.
        issued_before: UnixMillis,
    },
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Revoked::Token => "the token was revoked",
            Revoked::Grant => "the token's grant was revoked",
            Revoked::Cutoff { .. } => "the token was revoked (issued before a revocation cutoff)",
        })
    }
}

impl std::error::Error for Revoked {}

/// Revoked token ids, revoked grants and cutoffs, shared by every validator of a process.
///
/// * [`apply`](Self::apply) is idempotent and commutative: token and grant entries keep the
///   latest expiry they were given, cutoffs keep the maximum instant.
/// * [`check`](Self::check) is synchronous, lock-free for readers of uncontended shards, and
///   allocates nothing; however many issuers have cutoffs, it looks up one issuer's.
/// * [`purge_expired`](Self::purge_expired) forgets token and grant entries whose tokens have
///   expired, so memory is bounded by live tokens; [`purge_cutoffs`](Self::purge_cutoffs)
///   forgets cutoffs older than any token still accepted.
pub struct RevocationIndex {
    tokens: Map<UnixMillis>,
    grants: Map<UnixMillis>,
    /// Cutoffs for every issuer's tokens ([`RevocationEvent::Cutoff`]).
    cutoffs: Cutoffs,
    /// Cutoffs for one issuer's tokens ([`RevocationEvent::IssuerCutoff`]), by exact `iss`.
    issuers: Map<Cutoffs>,
    /// The latest cutoff of any scope: a token issued at or after it needs no cutoff look-up.
    /// It only ever grows, so it is a safe upper bound even while other maps change.
    latest_cutoff: AtomicI64,
    /// How long after its expiry an entry is kept (ms): validators accept tokens until
    /// `exp + leeway`, so a revocation must outlive that. Only ever grows.
    retention_ms: AtomicI64,
}

/// The cutoffs of one realm: every issuer's tokens, or one issuer's. Each scope keeps the
/// latest instant it was given.
struct Cutoffs {
    all: AtomicI64,
    tenants: Map<i64>,
    subjects: Map<i64>,
    clients: Map<i64>,
    sessions: Map<i64>,
}

impl Cutoffs {
    fn new() -> Self {
        Cutoffs {
            all: AtomicI64::new(i64::MIN),
            tenants: new_map(0),
            subjects: new_map(0),
            clients: new_map(0),
            sessions: new_map(0),
        }
    }

    /// Raises `scope`'s cutoff to `at`; whether it changed.
    fn apply(&self, scope: &CutoffScope, at: i64) -> bool {
        match scope {
            CutoffScope::All => self.all.fetch_max(at, Ordering::SeqCst) < at,
            CutoffScope::Tenant(t) => keep_max(&self.tenants, t, at),
            CutoffScope::Subject(s) => keep_max(&self.subjects, s, at),
            CutoffScope::Client(c) => keep_max(&self.clients, c, at),
            CutoffScope::Session(s) => keep_max(&self.sessions, s, at),
        }
    }

    /// Raises `max` to every cutoff of this realm that applies to `token`.
    fn raise(&self, token: &TokenIdentity<'_>, max: &mut i64) {
        *max = (*max).max(self.all.load(Ordering::SeqCst));
        let mut consider = |map: &Map<i64>, key: &str| {
            if let Some(at) = map.get(key) {
                *max = (*max).max(*at);
            }
        };
        consider(&self.subjects, token.subject);
        consider(&self.clients, token.client_id);
        if let Some(session) = token.session {
            consider(&self.sessions, session);
        }
        for_each_ancestor(token.tenant, |tenant| {
            consider(&self.tenants, tenant);
            false
        });
    }

    /// Forgets the cutoffs at or before `horizon`; how many went.
    fn purge(&self, horizon: i64) -> usize {
        let mut removed = 0;
        let all = self.all.load(Ordering::SeqCst);
        // A concurrent, newer cutoff makes the exchange fail and stays.
        if all != i64::MIN
            && all <= horizon
            && self
                .all
                .compare_exchange(all, i64::MIN, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            removed += 1;
        }
        for map in self.maps() {
            map.retain(|_, at| {
                let binding = *at > horizon;
                removed += usize::from(!binding);
                binding
            });
        }
        removed
    }

    /// Every cutoff held, as its scope and instant.
    fn each(&self, mut f: impl FnMut(CutoffScope, UnixMillis)) {
        let all = self.all.load(Ordering::SeqCst);
        if all != i64::MIN {
            f(CutoffScope::All, UnixMillis(all));
        }
        let scopes: [NamedMap<'_>; 4] = [
            (&self.tenants, CutoffScope::Tenant),
            (&self.subjects, CutoffScope::Subject),
            (&self.clients, CutoffScope::Client),
            (&self.sessions, CutoffScope::Session),
        ];
        for (map, scope) in scopes {
            for entry in map.iter() {
                f(scope(entry.key().to_string()), UnixMillis(*entry.value()));
            }
        }
    }

    fn len(&self) -> usize {
        usize::from(self.all.load(Ordering::SeqCst) != i64::MIN)
            + self.maps().iter().map(|m| m.len()).sum::<usize>()
    }

    fn maps(&self) -> [&Map<i64>; 4] {
        [&self.tenants, &self.subjects, &self.clients, &self.sessions]
    }
}

/// Counts of the entries an index holds, from [`RevocationIndex::stats`].
///
/// Non-exhaustive: more counts may be added; read the fields, don't build the struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IndexStats {
    /// Revoked token ids.
    pub tokens: usize,
    /// Revoked grants.
    pub grants: usize,
    /// Cutoffs, all scopes and issuers together (a global one counts when set).
    pub cutoffs: usize,
}

impl Default for RevocationIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RevocationIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationIndex")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty index with room for `tokens` revoked token ids before it grows.
    pub fn with_capacity(tokens: usize) -> Self {
        RevocationIndex {
            tokens: new_map(tokens),
            grants: new_map(0),
            cutoffs: Cutoffs::new(),
            issuers: new_map(0),
            latest_cutoff: AtomicI64::new(i64::MIN),
            retention_ms: AtomicI64::new(0),
        }
    }

    /// Keeps token and grant entries at least `grace` past their expiry before
    /// [`purge_expired`](Self::purge_expired) forgets them. Every validator sharing the index calls
    /// this with its clock-skew leeway (tollgate's `Verifier` does so when built): it accepts a
    /// token until `exp + leeway`, so forgetting the revocation at `exp` would revive the token
    /// for the rest of the leeway. The grace only ever grows.
    pub fn retain_expired_for(&self, grace: std::time::Duration) {
        let ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.retention_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// Applies one event. Returns whether the index changed (false for a duplicate or for a
    /// cutoff older than the one already held for that scope).
    ///
    /// Once this returns, [`check`](Self::check) on any thread rejects the tokens it covers.
    ///
    /// An event that is not [valid](RevocationEvent::is_valid) (a cutoff whose tenant is not a
    /// [`TenantPath`](crate::TenantPath), such as `/Org/`, `Org` or `""`, would match no token;
    /// an issuer's cutoff without an issuer) is refused: returns false, stores nothing.
    /// Producers check [`RevocationEvent::is_valid`] first to report the error.
    pub fn apply(&self, event: &RevocationEvent) -> bool {
        if !event.is_valid() {
            return false;
        }
        match event {
            RevocationEvent::Token { jti, expires_at } => keep_max(&self.tokens, jti, *expires_at),
            RevocationEvent::Grant {
                grant_id,
                expires_at,
            } => keep_max(&self.grants, grant_id, *expires_at),
            RevocationEvent::Cutoff {
                scope,
                issued_before,
            } => self.apply_cutoff(&self.cutoffs, scope, *issued_before),
            RevocationEvent::IssuerCutoff {
                issuer,
                scope,
                issued_before,
            } => {
                let realm = match self.issuers.get(issuer.as_str()) {
                    Some(realm) => realm,
                    None => self
                        .issuers
                        .entry(CompactString::new(issuer))
                        .or_insert_with(Cutoffs::new)
                        .downgrade(),
                };
                self.apply_cutoff(&realm, scope, *issued_before)
            }
        }
    }

    fn apply_cutoff(&self, realm: &Cutoffs, scope: &CutoffScope, at: UnixMillis) -> bool {
        let changed = realm.apply(scope, at.0);
        // Raised after the scope's entry is in place, so a reader that sees the new bound also
        // finds the entry.
        self.latest_cutoff.fetch_max(at.0, Ordering::SeqCst);
        changed
    }

    /// Whether the token is still acceptable as far as revocation goes.
    #[inline]
    pub fn check(&self, token: &TokenIdentity<'_>) -> Result<(), Revoked> {
        if self.tokens.contains_key(token.jti) {
            return Err(Revoked::Token);
        }
        if let Some(grant) = token.grant_id
            && self.grants.contains_key(grant)
        {
            return Err(Revoked::Grant);
        }
        let issued = token.issued_at.0;
        if issued >= self.latest_cutoff.load(Ordering::SeqCst) {
            return Ok(());
        }
        let cutoff = self.effective_cutoff(token);
        if issued < cutoff.0 {
            return Err(Revoked::Cutoff {
                issued_before: cutoff,
            });
        }
        Ok(())
    }

    /// The maximum of every cutoff that applies to the token: the global one, its tenant's and each
    /// parent tenant's, its subject's, its client's and its session's, each for every issuer and
    /// for the token's own. [`UnixMillis::MIN`] when none does.
    pub fn effective_cutoff(&self, token: &TokenIdentity<'_>) -> UnixMillis {
        let mut max = i64::MIN;
        self.cutoffs.raise(token, &mut max);
        if let Some(realm) = self.issuers.get(token.issuer) {
            realm.raise(token, &mut max);
        }
        UnixMillis(max)
    }

    /// Whether the token id itself is revoked (ignoring grants and cutoffs).
    pub fn is_token_revoked(&self, jti: &str) -> bool {
        self.tokens.contains_key(jti)
    }

    /// Whether the grant is revoked.
    pub fn is_grant_revoked(&self, grant_id: &str) -> bool {
        self.grants.contains_key(grant_id)
    }

    /// Forgets token and grant entries that expired at or before `now` minus the retention grace
    /// (see [`retain_expired_for`](Self::retain_expired_for)). Returns how many were removed.
    pub fn purge_expired(&self, now: UnixMillis) -> usize {
        let now = UnixMillis(
            now.0
                .saturating_sub(self.retention_ms.load(Ordering::SeqCst)),
        );
        let mut removed = 0;
        for map in [&self.tokens, &self.grants] {
            map.retain(|_, expires_at| {
                let live = *expires_at > now;
                removed += usize::from(!live);
                live
            });
        }
        removed
    }

    /// Forgets cutoffs that can no longer refuse anything: a cutoff at `T` only binds tokens
    /// issued before `T`, which have all expired by `T + longest_lifetime` and are accepted by no
    /// validator past the retention grace after that (see
    /// [`retain_expired_for`](Self::retain_expired_for)). Pass the longest lifetime of any token a
    /// validator sharing this index may accept, other issuers' tokens included: too short a
    /// lifetime would revive tokens a cutoff still binds. Returns how many cutoffs went.
    pub fn purge_cutoffs(&self, now: UnixMillis, longest_lifetime: std::time::Duration) -> usize {
        let lifetime = i64::try_from(longest_lifetime.as_millis()).unwrap_or(i64::MAX);
        let horizon = now
            .0
            .saturating_sub(lifetime)
            .saturating_sub(self.retention_ms.load(Ordering::SeqCst));
        let mut removed = self.cutoffs.purge(horizon);
        // An issuer left without cutoffs is forgotten with them. Under the shard's write lock,
        // so no concurrent `apply` can add to a realm being removed.
        self.issuers.retain(|_, realm| {
            removed += realm.purge(horizon);
            realm.len() > 0
        });
        // `latest_cutoff` stays: it is an upper bound, and a stale one only skips the fast path.
        removed
    }

    /// The index's whole live state as events: applying them to an empty index reproduces it.
    /// Used to persist the index and to bootstrap other replicas.
    pub fn snapshot(&self) -> Vec<RevocationEvent> {
        let mut events = Vec::with_capacity(self.tokens.len() + self.grants.len());
        self.cutoffs.each(|scope, issued_before| {
            events.push(RevocationEvent::Cutoff {
                scope,
                issued_before,
            });
        });
        for realm in self.issuers.iter() {
            realm.each(|scope, issued_before| {
                events.push(RevocationEvent::IssuerCutoff {
                    issuer: realm.key().to_string(),
                    scope,
                    issued_before,
                });
            });
        }
        events.extend(self.tokens.iter().map(|e| RevocationEvent::Token {
            jti: e.key().to_string(),
            expires_at: *e.value(),
        }));
        events.extend(self.grants.iter().map(|e| RevocationEvent::Grant {
            grant_id: e.key().to_string(),
            expires_at: *e.value(),
        }));
        events
    }

    /// How many entries the index holds.
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            tokens: self.tokens.len(),
            grants: self.grants.len(),
            cutoffs: self.cutoffs.len() + self.issuers.iter().map(|r| r.len()).sum::<usize>(),
        }
    }
}

fn new_map<V>(capacity: usize) -> Map<V> {
    DashMap::with_capacity_and_hasher(capacity, foldhash::fast::RandomState::default())
}

/// Inserts `key` with `value`, or raises the value already held to `value`. Returns whether the
/// map changed.
fn keep_max<V: Ord + Copy>(map: &Map<V>, key: &str, value: V) -> bool {
    if let Some(held) = map.get(key)
        && *held >= value
    {
        return false;
    }
    match map.entry(CompactString::new(key)) {
        Entry::Occupied(mut held) if *held.get() < value => {
            held.insert(value);
            true
        }
        Entry::Occupied(_) => false,
        Entry::Vacant(slot) => {
            slot.insert(value);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000;

    fn token(issued_at: i64) -> TokenIdentity<'static> {
        TokenIdentity {
            jti: "jti-1",
            grant_id: Some("grant-1"),
            tenant: "/Org/Sub",
            subject: "alice",
            client_id: "web",
            issuer: ISSUER,
            session: Some("session-1"),
            issued_at: UnixMillis(issued_at),
        }
    }

    const ISSUER: &str = "https://id.example.com";

    fn cutoff(scope: CutoffScope, at: i64) -> RevocationEvent {
        RevocationEvent::Cutoff {
            scope,
            issued_before: UnixMillis(at),
        }
    }

    /// Every cutoff that applies to [`token`]: each scope for every issuer, and each for the
    /// token's own issuer.
    fn scopes() -> Vec<(String, RevocationEvent)> {
        let scopes = [
            ("all", CutoffScope::All),
            ("root tenant", CutoffScope::Tenant("/".into())),
            ("parent tenant", CutoffScope::Tenant("/Org".into())),
            ("own tenant", CutoffScope::Tenant("/Org/Sub".into())),
            ("subject", CutoffScope::Subject("alice".into())),
            ("client", CutoffScope::Client("web".into())),
            ("session", CutoffScope::Session("session-1".into())),
        ];
        let mut events = Vec::new();
        for issuer in [None, Some(ISSUER)] {
            for (name, scope) in &scopes {
                let name = match issuer {
                    None => name.to_string(),
                    Some(_) => format!("{name} of its issuer"),
                };
                events.push((
                    name,
                    RevocationEvent::cutoff(issuer, scope.clone(), UnixMillis(0)),
                ));
            }
        }
        events
    }

    /// `event` (a cutoff) moved to instant `at`.
    fn at(event: &RevocationEvent, at: i64) -> RevocationEvent {
        let (issuer, scope, _) = event.as_cutoff().unwrap();
        RevocationEvent::cutoff(issuer, scope.clone(), UnixMillis(at))
    }

    #[test]
    fn token_and_grant_events_revoke() {
        let index = RevocationIndex::new();
        assert_eq!(index.check(&token(T)), Ok(()));
        index.apply(&RevocationEvent::Grant {
            grant_id: "grant-1".into(),
            expires_at: UnixMillis(T + 10),
        });
        assert_eq!(index.check(&token(T)), Err(Revoked::Grant));
        let other_grant = TokenIdentity {
            grant_id: Some("grant-2"),
            ..token(T)
        };
        assert_eq!(index.check(&other_grant), Ok(()));
        index.apply(&RevocationEvent::Token {
            jti: "jti-1".into(),
            expires_at: UnixMillis(T + 10),
        });
        assert_eq!(index.check(&other_grant), Err(Revoked::Token));
    }

    #[test]
    fn each_scope_applies_at_millisecond_precision() {
        for (name, scope) in scopes() {
            let index = RevocationIndex::new();
            index.apply(&at(&scope, T + 500));
            assert!(index.check(&token(T + 499)).is_err(), "{name}: 1 ms before");
            assert!(index.check(&token(T + 200)).is_err(), "{name}: .200");
            assert_eq!(
                index.check(&token(T + 500)),
                Ok(()),
                "{name}: at the cutoff"
            );
            assert_eq!(index.check(&token(T + 800)), Ok(()), "{name}: .800");
        }
    }

    #[test]
    fn every_pair_of_scopes_takes_the_maximum() {
        // An older cutoff of one scope must never hide a newer cutoff of another, whichever
        // arrives first.
        for (older_name, older) in scopes() {
            for (newer_name, newer) in scopes() {
                for newer_first in [false, true] {
                    let index = RevocationIndex::new();
                    let events = [at(&older, T + 100), at(&newer, T + 900)];
                    if newer_first {
                        events.iter().rev().for_each(|e| _ = index.apply(e));
                    } else {
                        events.iter().for_each(|e| _ = index.apply(e));
                    }
                    let case = format!("{older_name} then {newer_name} (reversed: {newer_first})");
                    assert!(index.check(&token(T + 500)).is_err(), "{case}");
                    assert_eq!(index.check(&token(T + 900)), Ok(()), "{case}");
                    assert_eq!(
                        index.effective_cutoff(&token(0)),
                        UnixMillis(T + 900),
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn cutoffs_for_others_do_not_apply() {
        let index = RevocationIndex::new();
        for scope in [
            CutoffScope::Tenant("/Organic".into()),
            CutoffScope::Tenant("/Org/Sub/Team".into()),
            CutoffScope::Tenant("/Other".into()),
            CutoffScope::Subject("bob".into()),
            CutoffScope::Client("mobile".into()),
            CutoffScope::Session("session-2".into()),
        ] {
            index.apply(&cutoff(scope.clone(), T + 1_000));
            // Every scope of another issuer, even one that names this token's subject or session.
            index.apply(&RevocationEvent::cutoff(
                Some("https://other.example.com"),
                scope,
                UnixMillis(T + 1_000),
            ));
        }
        for (_, scope) in scopes() {
            let (_, scope, _) = scope.as_cutoff().unwrap();
            index.apply(&RevocationEvent::cutoff(
                Some("https://id.example.com/"),
                scope.clone(),
                UnixMillis(T + 1_000),
            ));
        }
        assert_eq!(index.check(&token(T)), Ok(()));
        let no_session = TokenIdentity {
            session: None,
            ..token(T)
        };
        assert_eq!(index.check(&no_session), Ok(()));
        let in_team = TokenIdentity {
            tenant: "/Org/Sub/Team",
            ..token(T)
        };
        assert!(index.check(&in_team).is_err());
        let organic = TokenIdentity {
            tenant: "/Organic/X",
            ..token(T)
        };
        assert!(index.check(&organic).is_err());
    }

    #[test]
    fn duplicate_and_reordered_events_converge() {
        let events = [
            cutoff(CutoffScope::All, T),
            cutoff(CutoffScope::All, T + 5),
            cutoff(CutoffScope::Tenant("/Org".into()), T + 7),
            cutoff(CutoffScope::Tenant("/Org".into()), T + 3),
            RevocationEvent::Token {
                jti: "a".into(),
                expires_at: UnixMillis(T + 50),
            },
            RevocationEvent::Token {
                jti: "a".into(),
                expires_at: UnixMillis(T + 90),
            },
            RevocationEvent::Grant {
                grant_id: "g".into(),
                expires_at: UnixMillis(T + 40),
            },
        ];
        let canonical = |index: &RevocationIndex| {
            let mut s: Vec<String> = index
                .snapshot()
                .iter()
                .map(|e| serde_json::to_string(e).unwrap())
                .collect();
            s.sort();
            s
        };
        let forward = RevocationIndex::new();
        events.iter().for_each(|e| _ = forward.apply(e));
        let backward = RevocationIndex::new();
        events.iter().rev().for_each(|e| _ = backward.apply(e));
        let twice = RevocationIndex::new();
        events
            .iter()
            .chain(events.iter().rev())
            .for_each(|e| _ = twice.apply(e));
        assert_eq!(canonical(&forward), canonical(&backward));
        assert_eq!(canonical(&forward), canonical(&twice));
        // The snapshot rebuilds the same state.
        let rebuilt = RevocationIndex::new();
        forward.snapshot().iter().for_each(|e| _ = rebuilt.apply(e));
        assert_eq!(canonical(&rebuilt), canonical(&forward));
        assert_eq!(
            forward.stats(),
            IndexStats {
                tokens: 1,
                grants: 1,
                cutoffs: 2
            }
        );
    }

    #[test]
    fn apply_reports_changes() {
        let index = RevocationIndex::new();
        assert!(index.apply(&cutoff(CutoffScope::All, T)));
        assert!(!index.apply(&cutoff(CutoffScope::All, T)));
        assert!(!index.apply(&cutoff(CutoffScope::All, T - 1)));
        let tok = |exp| RevocationEvent::Token {
            jti: "x".into(),
            expires_at: UnixMillis(exp),
        };
        assert!(index.apply(&tok(10)));
        assert!(!index.apply(&tok(10)));
        assert!(index.apply(&tok(11)));
    }

    #[test]
    fn purge_forgets_expired_entries_only() {
        let index = RevocationIndex::new();
        for (jti, exp) in [("old", T), ("live", T + 1)] {
            index.apply(&RevocationEvent::Token {
                jti: jti.into(),
                expires_at: UnixMillis(exp),
            });
        }
        index.apply(&RevocationEvent::Grant {
            grant_id: "g".into(),
            expires_at: UnixMillis(T - 1),
        });
        index.apply(&cutoff(CutoffScope::Subject("alice".into()), T - 5));
        assert_eq!(index.purge_expired(UnixMillis(T)), 2);
        assert!(!index.is_token_revoked("old"));
        assert!(index.is_token_revoked("live"));
        assert!(!index.is_grant_revoked("g"));
        assert_eq!(index.stats().cutoffs, 1);
    }

    #[test]
    fn purge_keeps_entries_through_the_retention_grace() {
        let index = RevocationIndex::new();
        index.retain_expired_for(std::time::Duration::from_secs(30));
        index.retain_expired_for(std::time::Duration::from_secs(5)); // never shrinks
        index.apply(&RevocationEvent::Token {
            jti: "j".into(),
            expires_at: UnixMillis(T),
        });
        assert_eq!(index.purge_expired(UnixMillis(T + 29_999)), 0);
        assert!(index.is_token_revoked("j"));
        assert_eq!(index.purge_expired(UnixMillis(T + 30_000)), 1);
    }

    #[test]
    fn cutoffs_are_purged_once_every_token_they_bind_has_expired_and_the_grace_passed() {
        let index = RevocationIndex::new();
        index.retain_expired_for(std::time::Duration::from_secs(30));
        let lifetime = std::time::Duration::from_secs(3_600);
        for (_, scope) in scopes() {
            index.apply(&at(&scope, T));
        }
        let cutoffs = index.stats().cutoffs;
        assert_eq!(cutoffs, scopes().len());
        // A token issued just before T lives until T + 1 h and is accepted 30 s more.
        let bound = UnixMillis(T + 3_600_000 + 30_000);
        assert_eq!(index.purge_cutoffs(UnixMillis(bound.0 - 1), lifetime), 0);
        assert!(index.check(&token(T - 1)).is_err());
        assert_eq!(index.purge_cutoffs(bound, lifetime), cutoffs);
        assert_eq!(index.stats().cutoffs, 0);
        assert_eq!(index.effective_cutoff(&token(T - 1)), UnixMillis::MIN);
        // A newer cutoff of the same scope is not purged with the old horizon.
        index.apply(&cutoff(CutoffScope::All, bound.0));
        assert_eq!(index.purge_cutoffs(bound, lifetime), 0);
        assert!(index.check(&token(bound.0 - 1)).is_err());
    }

    #[test]
    fn malformed_tenant_cutoffs_are_refused() {
        let index = RevocationIndex::new();
        for bad in ["/Org/", "Org", "", "//Org"] {
            assert!(
                !index.apply(&cutoff(CutoffScope::Tenant(bad.into()), T + 1)),
                "{bad:?}"
            );
        }
        assert_eq!(index.stats().cutoffs, 0);
        assert_eq!(index.effective_cutoff(&token(T)), UnixMillis::MIN);
    }

    #[test]
    fn two_issuers_with_the_same_subject_are_two_people() {
        let index = RevocationIndex::new();
        let keycloak = TokenIdentity {
            issuer: "https://keycloak.example.com/realms/a",
            ..token(T)
        };
        let auth0 = TokenIdentity {
            issuer: "https://tenant.auth0.com/",
            ..token(T)
        };
        index.apply(&RevocationEvent::cutoff(
            Some(keycloak.issuer),
            CutoffScope::Subject("alice".into()),
            UnixMillis(T + 1),
        ));
        assert!(index.check(&keycloak).is_err());
        assert_eq!(index.check(&auth0), Ok(()));
        // Everyone's subject cutoff (tollgate revoke --subject) keeps its meaning: both.
        index.apply(&cutoff(CutoffScope::Subject("alice".into()), T + 1));
        assert!(index.check(&auth0).is_err());
    }

    #[test]
    fn an_issuer_without_cutoffs_is_forgotten_and_snapshots_keep_issuers() {
        let index = RevocationIndex::new();
        let lifetime = std::time::Duration::from_secs(60);
        let session = RevocationEvent::cutoff(
            Some(ISSUER),
            CutoffScope::Session("session-1".into()),
            UnixMillis(T),
        );
        index.apply(&session);
        let rebuilt = RevocationIndex::new();
        for event in index.snapshot() {
            assert!(rebuilt.apply(&event));
        }
        assert_eq!(rebuilt.snapshot(), vec![session]);
        assert!(rebuilt.check(&token(T - 1)).is_err());
        assert_eq!(index.purge_cutoffs(UnixMillis(T + 60_000), lifetime), 1);
        assert_eq!(index.issuers.len(), 0);
        assert_eq!(index.stats().cutoffs, 0);
    }

    #[test]
    fn an_issuers_cutoff_without_an_issuer_is_refused() {
        let index = RevocationIndex::new();
        assert!(!index.apply(&RevocationEvent::IssuerCutoff {
            issuer: String::new(),
            scope: CutoffScope::All,
            issued_before: UnixMillis(T),
        }));
        assert_eq!(index.stats().cutoffs, 0);
    }

    #[test]
    fn no_request_is_accepted_after_apply_returns() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::time::{Duration, Instant};

        let index = Arc::new(RevocationIndex::with_capacity(1024));
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(AtomicUsize::new(0));
        // Published jtis: each is revoked *before* being published, so a checker that reads a
        // published jti must see it revoked.
        let published = Arc::new(AtomicUsize::new(0));
        let names: Arc<Vec<String>> = Arc::new((0..200_000).map(|i| format!("j{i}")).collect());

        let mut handles = Vec::new();
        for _ in 0..3 {
            let (index, stop, violations, published, names) = (
                index.clone(),
                stop.clone(),
                violations.clone(),
                published.clone(),
                names.clone(),
            );
            handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = published.load(Ordering::SeqCst);
                    if n == 0 {
                        continue;
                    }
                    let jti = &names[n - 1];
                    let t = TokenIdentity {
                        jti,
                        grant_id: None,
                        tenant: "/",
                        subject: "s",
                        client_id: "c",
                        issuer: ISSUER,
                        session: None,
                        issued_at: UnixMillis(T),
                    };
                    if index.check(&t).is_ok() {
                        violations.fetch_add(1, Ordering::Relaxed);
                    }
                    // A cutoff published below must also hold.
                    let cut = index.effective_cutoff(&t);
                    if n > 1000 && cut.0 < T + 1 {
                        violations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut i = 0;
        while Instant::now() < deadline && i < names.len() {
            index.apply(&RevocationEvent::Token {
                jti: names[i].clone(),
                expires_at: UnixMillis(T + 60_000),
            });
            if i == 1000 {
                index.apply(&cutoff(CutoffScope::Client("c".into()), T + 1));
            }
            published.store(i + 1, Ordering::SeqCst);
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        assert!(
            i > 1000,
            "the writer made too little progress to test anything"
        );
        assert_eq!(violations.load(Ordering::Relaxed), 0);
    }
}
