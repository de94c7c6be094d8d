//! The in-process store: [`SqliteStore`](super::SqliteStore)'s semantics in maps, for tests or
//! for a deployment that chooses to forget everything on restart.

use super::{
    AccessTokenRecord, Loaded, Record, RefreshTokenRecord, Store, StoreError, StoreFuture,
    TokenHash,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Mutex;
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};

/// A [`Store`] that keeps its records in memory: a commit is "durable" as long as the process
/// lives.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    access_tokens: HashMap<String, AccessTokenRecord>,
    refresh_tokens: HashMap<TokenHash, RefreshTokenRecord>,
    /// Revoked `jti`s and grant ids, with the expiry after which they may be forgotten.
    revoked_tokens: HashMap<String, UnixMillis>,
    revoked_grants: HashMap<String, UnixMillis>,
    cutoffs: HashMap<CutoffScope, UnixMillis>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut state = self.state.lock().map_err(|_| {
            StoreError::new("a writer panicked; the memory store may be half-written")
        })?;
        Ok(f(&mut state))
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl State {
    fn apply(&mut self, record: Record) {
        match record {
            Record::AccessToken(token) => {
                self.access_tokens.insert(token.jti.clone(), token);
            }
            // A replayed issuance never clears `rotated`: that would let a used token be reused.
            Record::RefreshToken(token) => match self.refresh_tokens.entry(token.hash) {
                Entry::Occupied(mut stored) => stored.get_mut().rotated |= token.rotated,
                Entry::Vacant(slot) => {
                    slot.insert(token);
                }
            },
            Record::RefreshRotated(hash) => {
                if let Some(token) = self.refresh_tokens.get_mut(&hash) {
                    token.rotated = true;
                }
            }
            Record::Revocation(RevocationEvent::Token { jti, expires_at }) => {
                keep_max(self.revoked_tokens.entry(jti), expires_at);
            }
            Record::Revocation(RevocationEvent::Grant {
                grant_id,
                expires_at,
            }) => keep_max(self.revoked_grants.entry(grant_id), expires_at),
            Record::Revocation(RevocationEvent::Cutoff {
                scope,
                issued_before,
            }) => keep_max(self.cutoffs.entry(scope), issued_before),
            // A kind of revocation this store has no map for; the index still enforces it.
            Record::Revocation(event) => {
                tracing::error!(?event, "revocation not kept by the memory store");
            }
        }
    }

    fn load(&self, now: UnixMillis) -> Loaded {
        let tokens = self
            .revoked_tokens
            .iter()
            .map(|(jti, &expires_at)| RevocationEvent::Token {
                jti: jti.clone(),
                expires_at,
            });
        let grants =
            self.revoked_grants
                .iter()
                .map(|(grant_id, &expires_at)| RevocationEvent::Grant {
                    grant_id: grant_id.clone(),
                    expires_at,
                });
        let cutoffs = self
            .cutoffs
            .iter()
            .map(|(scope, &issued_before)| RevocationEvent::Cutoff {
                scope: scope.clone(),
                issued_before,
            });
        Loaded {
            access_tokens: self
                .access_tokens
                .values()
                .filter(|t| t.expires_at >= now)
                .cloned()
                .collect(),
            refresh_tokens: self
                .refresh_tokens
                .values()
                .filter(|t| t.expires_at >= now)
                .cloned()
                .collect(),
            revocations: tokens.chain(grants).chain(cutoffs).collect(),
        }
    }

    fn purge(&mut self, before: UnixMillis) -> u64 {
        // Cutoffs are never purged: one per scope, and a cutoff binds tokens of any expiry.
        retain_count(&mut self.access_tokens, |t| t.expires_at >= before)
            + retain_count(&mut self.refresh_tokens, |t| t.expires_at >= before)
            + retain_count(&mut self.revoked_tokens, |&expires_at| expires_at >= before)
            + retain_count(&mut self.revoked_grants, |&expires_at| expires_at >= before)
    }
}

/// Keeps the later instant, so that applying revocations is idempotent and commutative, as in
/// the revocation index.
fn keep_max<K>(entry: Entry<'_, K, UnixMillis>, instant: UnixMillis) {
    let stored = entry.or_insert(instant);
    *stored = (*stored).max(instant);
}

/// Keeps the values that pass `keep`; returns how many went.
fn retain_count<K, V>(map: &mut HashMap<K, V>, mut keep: impl FnMut(&V) -> bool) -> u64 {
    let len = map.len();
    map.retain(|_, value| keep(value));
    (len - map.len()) as u64
}

impl Store for MemoryStore {
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()> {
        // One lock for the whole commit: readers see all of it or none of it.
        let result = self.with_state(|state| records.into_iter().for_each(|r| state.apply(r)));
        Box::pin(std::future::ready(result))
    }

    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError> {
        self.with_state(|state| records.into_iter().for_each(|r| state.apply(r)))
    }

    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded> {
        Box::pin(std::future::ready(self.with_state(|state| state.load(now))))
    }

    fn purge(&self, before: UnixMillis) -> StoreFuture<'_, u64> {
        Box::pin(std::future::ready(
            self.with_state(|state| state.purge(before)),
        ))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What every [`Store`] must do, checked against both implementations.
#[cfg(test)]
pub(super) mod contract {
    use super::super::{AccessTokenRecord, Loaded, Record, RefreshTokenRecord, Store};
    use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};

    /// The instant the records of [`every_record_kind`] are loaded at.
    pub(crate) const NOW: UnixMillis = UnixMillis(1_000_000);

    pub(crate) fn access_token(jti: &str, expires_at: i64) -> AccessTokenRecord {
        AccessTokenRecord {
            jti: jti.into(),
            grant_id: Some(format!("grant-of-{jti}")),
            tenant: "/Org/Sub".into(),
            subject: "alice".into(),
            client_id: "web".into(),
            issued_at: UnixMillis(expires_at - 600_000),
            expires_at: UnixMillis(expires_at),
        }
    }

    pub(crate) fn refresh_token(id: u8, expires_at: i64) -> RefreshTokenRecord {
        RefreshTokenRecord {
            hash: [id; 32],
            grant_id: format!("grant-{id}"),
            client_id: "web".into(),
            subject: "alice".into(),
            tenant: "/Org".into(),
            scope: "openid profile".into(),
            issued_at: UnixMillis(expires_at - 3_600_000),
            expires_at: UnixMillis(expires_at),
            rotated: false,
        }
    }

    fn cutoff(scope: CutoffScope, issued_before: i64) -> Record {
        Record::Revocation(RevocationEvent::Cutoff {
            scope,
            issued_before: UnixMillis(issued_before),
        })
    }

    /// Every kind of record, some of them expired at [`NOW`].
    pub(crate) fn every_record_kind() -> Vec<Record> {
        let now = NOW.0;
        let no_grant = AccessTokenRecord {
            grant_id: None,
            ..access_token("no-grant", now + 1)
        };
        vec![
            Record::AccessToken(access_token("live", now + 60_000)),
            Record::AccessToken(no_grant),
            Record::AccessToken(access_token("expires-now", now)),
            Record::AccessToken(access_token("expired", now - 1)),
            Record::RefreshToken(refresh_token(1, now + 60_000)),
            Record::RefreshToken(refresh_token(2, now + 60_000)),
            Record::RefreshRotated([2; 32]),
            Record::RefreshToken(refresh_token(3, now - 1)),
            Record::Revocation(RevocationEvent::Token {
                jti: "revoked".into(),
                expires_at: UnixMillis(now + 60_000),
            }),
            // Stored revocations load even once expired: only purge forgets them.
            Record::Revocation(RevocationEvent::Grant {
                grant_id: "grant-1".into(),
                expires_at: UnixMillis(now - 1),
            }),
            cutoff(CutoffScope::All, 10),
            cutoff(CutoffScope::Tenant("/Org".into()), 20),
            cutoff(CutoffScope::Subject("alice".into()), 30),
            cutoff(CutoffScope::Client("web".into()), 40),
        ]
    }

    /// Asserts that `loaded` (at [`NOW`]) is what [`every_record_kind`] leaves live.
    pub(crate) fn assert_every_record_kind(loaded: Loaded) {
        let now = NOW.0;
        let mut records = every_record_kind();
        records.retain(|r| !matches!(r, Record::RefreshRotated(_)));
        let expected = Loaded {
            access_tokens: vec![
                access_token("live", now + 60_000),
                AccessTokenRecord {
                    grant_id: None,
                    ..access_token("no-grant", now + 1)
                },
                access_token("expires-now", now),
            ],
            refresh_tokens: vec![
                refresh_token(1, now + 60_000),
                RefreshTokenRecord {
                    rotated: true,
                    ..refresh_token(2, now + 60_000)
                },
            ],
            revocations: records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Revocation(event) => Some(event),
                    _ => None,
                })
                .collect(),
        };
        assert_eq!(sorted(loaded), sorted(expected));
    }

    /// `loaded` in a canonical order: stores return rows in no particular order.
    pub(crate) fn sorted(mut loaded: Loaded) -> Loaded {
        loaded.access_tokens.sort_by(|a, b| a.jti.cmp(&b.jti));
        loaded.refresh_tokens.sort_by_key(|t| t.hash);
        loaded.revocations.sort_by_key(|e| format!("{e:?}"));
        loaded
    }

    /// A refresh token once rotated stays rotated, even if its issuance is written again.
    pub(crate) async fn rotation_sticks(store: &dyn Store) {
        let token = refresh_token(7, NOW.0 + 60_000);
        let commits = [
            Record::RefreshToken(token.clone()),
            Record::RefreshRotated(token.hash),
            Record::RefreshToken(token.clone()),
        ];
        for record in commits {
            store.commit(vec![record]).await.unwrap();
        }
        let loaded = store.load(NOW).await.unwrap();
        assert_eq!(
            loaded.refresh_tokens,
            vec![RefreshTokenRecord {
                rotated: true,
                ..token
            }]
        );
    }

    /// Token and grant revocations keep the latest expiry, cutoffs the latest instant, whatever
    /// the order they were written in, across commits and within one.
    pub(crate) async fn upserts_keep_the_maximum(store: &dyn Store) {
        let token = |expires_at| {
            Record::Revocation(RevocationEvent::Token {
                jti: "t".into(),
                expires_at: UnixMillis(expires_at),
            })
        };
        let grant = |expires_at| {
            Record::Revocation(RevocationEvent::Grant {
                grant_id: "g".into(),
                expires_at: UnixMillis(expires_at),
            })
        };
        let subject = |at| cutoff(CutoffScope::Subject("alice".into()), at);
        let all = |at| cutoff(CutoffScope::All, at);
        store.commit(vec![token(500), grant(300)]).await.unwrap();
        store.commit(vec![token(300), grant(500)]).await.unwrap();
        store
            .commit(vec![subject(500), subject(300), all(300), all(500)])
            .await
            .unwrap();
        store.commit(vec![subject(400), all(400)]).await.unwrap();

        let loaded = store.load(NOW).await.unwrap();
        let expected = Loaded {
            revocations: vec![token(500), grant(500), subject(500), all(500)]
                .into_iter()
                .filter_map(|r| match r {
                    Record::Revocation(event) => Some(event),
                    _ => None,
                })
                .collect(),
            ..Loaded::default()
        };
        assert_eq!(sorted(loaded), sorted(expected));
    }

    /// Purge forgets tokens and token/grant revocations that expired strictly before the
    /// instant, never cutoffs, and counts what went.
    pub(crate) async fn purge_removes_only_expired(store: &dyn Store) {
        let revoke_token = |jti: &str, expires_at| {
            Record::Revocation(RevocationEvent::Token {
                jti: jti.into(),
                expires_at: UnixMillis(expires_at),
            })
        };
        let revoke_grant = |expires_at| {
            Record::Revocation(RevocationEvent::Grant {
                grant_id: "g".into(),
                expires_at: UnixMillis(expires_at),
            })
        };
        store
            .commit(vec![
                Record::AccessToken(access_token("gone", 100)),
                Record::AccessToken(access_token("at-the-instant", 200)),
                Record::AccessToken(access_token("later", 300)),
                Record::RefreshToken(refresh_token(1, 100)),
                Record::RefreshToken(refresh_token(2, 200)),
                revoke_token("gone", 199),
                revoke_token("kept", 200),
                revoke_grant(150),
                cutoff(CutoffScope::All, 1),
                cutoff(CutoffScope::Client("web".into()), 2),
            ])
            .await
            .unwrap();

        assert_eq!(store.purge(UnixMillis(200)).await.unwrap(), 4);
        let loaded = store.load(UnixMillis(0)).await.unwrap();
        let expected = Loaded {
            access_tokens: vec![
                access_token("at-the-instant", 200),
                access_token("later", 300),
            ],
            refresh_tokens: vec![refresh_token(2, 200)],
            revocations: vec![
                RevocationEvent::Token {
                    jti: "kept".into(),
                    expires_at: UnixMillis(200),
                },
                RevocationEvent::Cutoff {
                    scope: CutoffScope::All,
                    issued_before: UnixMillis(1),
                },
                RevocationEvent::Cutoff {
                    scope: CutoffScope::Client("web".into()),
                    issued_before: UnixMillis(2),
                },
            ],
        };
        assert_eq!(sorted(loaded), sorted(expected));
        // Cutoffs stay even when purging far in the future.
        assert_eq!(store.purge(UnixMillis(i64::MAX)).await.unwrap(), 4);
        assert_eq!(
            store.load(UnixMillis(0)).await.unwrap().revocations.len(),
            2
        );
    }

    /// Written-behind records are in what `load` reads once `flush` has resolved.
    pub(crate) async fn write_behind_then_flush(store: &dyn Store) {
        store.write_behind(every_record_kind()).unwrap();
        store.flush().await.unwrap();
        assert_every_record_kind(store.load(NOW).await.unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::contract::*;
    use super::*;

    #[tokio::test]
    async fn round_trips_every_record_kind() {
        let store = MemoryStore::new();
        store.commit(every_record_kind()).await.unwrap();
        assert_every_record_kind(store.load(NOW).await.unwrap());
    }

    #[tokio::test]
    async fn rotation_sticks() {
        contract::rotation_sticks(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn upserts_keep_the_maximum() {
        contract::upserts_keep_the_maximum(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn purge_removes_only_expired() {
        contract::purge_removes_only_expired(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn write_behind_then_flush() {
        contract::write_behind_then_flush(&MemoryStore::new()).await;
    }
}
