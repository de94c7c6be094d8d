//! The in-process store: the embedded SQLite store's semantics in maps, for tests or for a
//! deployment that chooses to forget everything on restart.

use crate::{
    AccessTokenRecord, Loaded, Outbox, OutboxEntry, OutboxPosition, OutboxStatus, Purge, Record,
    RefreshTokenRecord, SharedStore, Store, StoreError, StoreFuture, TokenHash,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, Mutex};
use tollgate_core::{CutoffScope, RevocationEvent, UnixMillis};

/// A [`Store`] that keeps its records in memory: a commit is "durable" as long as the process
/// lives. It keeps an [`Outbox`] too (a relay can publish from it); it serves one process, so it
/// is not a [`SharedStore`].
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    access_tokens: HashMap<String, AccessTokenRecord>,
    refresh_tokens: HashMap<TokenHash, RefreshTokenRecord>,
    /// Revoked `jti`s and grant ids, with the expiry after which they may be forgotten.
    revoked_tokens: HashMap<String, Stamped>,
    revoked_grants: HashMap<String, Stamped>,
    cutoffs: HashMap<CutoffKey, Stamped>,
    /// The last outbox number taken.
    seq: u64,
    outbox: OutboxPosition,
}

/// What a cutoff is kept by: the issuer it is limited to (`None`: every issuer's tokens) and
/// its scope. One issuer's cutoff never replaces everyone's, nor another issuer's.
type CutoffKey = (Option<String>, CutoffScope);

/// A revocation's instant (expiry, or a cutoff's) and its outbox number.
#[derive(Debug, Clone, Copy)]
struct Stamped {
    at: UnixMillis,
    seq: u64,
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
            Record::Revocation(event) => self.revoke(event),
        }
    }

    fn revoke(&mut self, event: RevocationEvent) {
        if let Some((issuer, scope, issued_before)) = event.as_cutoff() {
            let key = (issuer.map(str::to_owned), scope.clone());
            keep_max(self.cutoffs.entry(key), issued_before, &mut self.seq);
            return;
        }
        match event {
            RevocationEvent::Token { jti, expires_at } => {
                keep_max(self.revoked_tokens.entry(jti), expires_at, &mut self.seq);
            }
            RevocationEvent::Grant {
                grant_id,
                expires_at,
            } => keep_max(
                self.revoked_grants.entry(grant_id),
                expires_at,
                &mut self.seq,
            ),
            // A kind of revocation this store has no map for; the index still enforces it.
            event => tracing::error!(?event, "revocation not kept by the memory store"),
        }
    }

    /// Every stored revocation with its outbox number.
    fn revocations(&self) -> impl Iterator<Item = OutboxEntry> + '_ {
        let tokens = self.revoked_tokens.iter().map(|(jti, s)| OutboxEntry {
            seq: s.seq,
            event: RevocationEvent::Token {
                jti: jti.clone(),
                expires_at: s.at,
            },
        });
        let grants = self.revoked_grants.iter().map(|(grant_id, s)| OutboxEntry {
            seq: s.seq,
            event: RevocationEvent::Grant {
                grant_id: grant_id.clone(),
                expires_at: s.at,
            },
        });
        let cutoffs = self.cutoffs.iter().map(|((issuer, scope), s)| OutboxEntry {
            seq: s.seq,
            event: RevocationEvent::cutoff(issuer.as_deref(), scope.clone(), s.at),
        });
        tokens.chain(grants).chain(cutoffs)
    }

    fn outbox_read(&self, after: u64, limit: usize) -> Vec<OutboxEntry> {
        let mut entries: Vec<OutboxEntry> = self.revocations().filter(|e| e.seq > after).collect();
        entries.sort_unstable_by_key(|e| e.seq);
        entries.truncate(limit);
        entries
    }

    fn outbox_status(&self) -> OutboxStatus {
        let after = self.outbox.published_through;
        OutboxStatus {
            position: self.outbox.clone(),
            pending: self.revocations().filter(|e| e.seq > after).count() as u64,
        }
    }

    fn outbox_mark(&mut self, position: OutboxPosition) {
        if position.epoch != self.outbox.epoch
            || position.published_through > self.outbox.published_through
        {
            self.outbox = position;
        }
    }

    fn load(&self, now: UnixMillis) -> Loaded {
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
            revocations: self.revocations().map(|e| e.event).collect(),
        }
    }

    fn purge(&mut self, horizon: Purge) -> u64 {
        let before = horizon.expired_before;
        retain_count(&mut self.cutoffs, |s| s.at > horizon.cutoffs_before)
            + retain_count(&mut self.access_tokens, |t| t.expires_at >= before)
            + retain_count(&mut self.refresh_tokens, |t| t.expires_at >= before)
            + retain_count(&mut self.revoked_tokens, |s| s.at >= before)
            + retain_count(&mut self.revoked_grants, |s| s.at >= before)
    }
}

/// Refuses an issuer's cutoff without an issuer, as every store must (see
/// [`Record::Revocation`]): stores spell "every issuer" with an empty one.
fn storable(record: &Record) -> Result<(), StoreError> {
    match record {
        Record::Revocation(event) if matches!(event.as_cutoff(), Some((Some(""), _, _))) => Err(
            StoreError::new("cannot store an issuer's cutoff without an issuer"),
        ),
        _ => Ok(()),
    }
}

/// Keeps the later instant, so that applying revocations is idempotent and commutative, as in
/// the revocation index. A revocation that is new or moved later takes the next outbox number
/// (it must be published); one that changes nothing keeps its number.
fn keep_max<K>(entry: Entry<'_, K, Stamped>, instant: UnixMillis, seq: &mut u64) {
    match entry {
        Entry::Occupied(stored) if stored.get().at >= instant => {}
        Entry::Occupied(mut stored) => {
            *seq += 1;
            *stored.get_mut() = Stamped {
                at: instant,
                seq: *seq,
            };
        }
        Entry::Vacant(slot) => {
            *seq += 1;
            slot.insert(Stamped {
                at: instant,
                seq: *seq,
            });
        }
    }
}

/// Keeps the values that pass `keep`; returns how many went.
fn retain_count<K, V>(map: &mut HashMap<K, V>, mut keep: impl FnMut(&V) -> bool) -> u64 {
    let len = map.len();
    map.retain(|_, value| keep(value));
    (len - map.len()) as u64
}

impl MemoryStore {
    /// Applies `records` under one lock (readers see all of them or none), unless one cannot be
    /// kept: then none is.
    fn write(&self, records: Vec<Record>) -> Result<(), StoreError> {
        records.iter().try_for_each(storable)?;
        self.with_state(|state| records.into_iter().for_each(|r| state.apply(r)))
    }
}

impl Store for MemoryStore {
    fn commit(&self, records: Vec<Record>) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(self.write(records)))
    }

    fn write_behind(&self, records: Vec<Record>) -> Result<(), StoreError> {
        self.write(records)
    }

    fn load(&self, now: UnixMillis) -> StoreFuture<'_, Loaded> {
        Box::pin(std::future::ready(self.with_state(|state| state.load(now))))
    }

    fn purge(&self, horizon: Purge) -> StoreFuture<'_, u64> {
        Box::pin(std::future::ready(
            self.with_state(|state| state.purge(horizon)),
        ))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn outbox(self: Arc<Self>) -> Option<Arc<dyn Outbox>> {
        Some(self)
    }

    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>> {
        None
    }
}

impl Outbox for MemoryStore {
    fn outbox_status(&self) -> StoreFuture<'_, OutboxStatus> {
        Box::pin(std::future::ready(self.with_state(|s| s.outbox_status())))
    }

    fn outbox_read(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(std::future::ready(
            self.with_state(|s| s.outbox_read(after, limit)),
        ))
    }

    fn outbox_mark(&self, position: OutboxPosition) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(
            self.with_state(|s| s.outbox_mark(position)),
        ))
    }

    fn publisher_lease(&self) -> StoreFuture<'_, bool> {
        // In one process only: nobody else reads this outbox.
        Box::pin(std::future::ready(Ok(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    #[tokio::test]
    async fn keeps_the_store_contract() {
        crate::testing::check_store(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test]
    async fn keeps_the_outbox_contract() {
        crate::testing::check_outbox(|| async { MemoryStore::new() }).await;
    }
}
