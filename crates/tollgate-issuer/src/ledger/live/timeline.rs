//! Live access tokens, as compact records grouped by their exact expiry instant.
//!
//! Nothing looks an access token up by its id here: the batch count walks them all, the purge
//! forgets them by expiry, and the one removal (an issuance that failed after its token was
//! registered) knows the token's expiry. So there is no hash table, and none of its per-entry
//! control bytes and load-factor slack: records sit densely in the bucket of their expiry
//! instant, and the purge drops whole buckets, oldest first, a bounded number per step.
//!
//! # Size
//!
//! A token whose id (and grant, if any) are tollgate ids takes a 32-byte [`Plain`] record (48 with
//! a grant: [`Granted`]); owners are 4-byte numbers ([`super::owners`]). Records are stored in
//! chunks of at most [`CHUNK`] that grow by an eighth, so unused capacity is at most an eighth of
//! a bucket's last chunk (Vec's doubling would leave up to half of it unused right after a
//! growth step). Each bucket (one per second of expiry, tollgate's `exp` being whole seconds)
//! adds about 300 bytes (its share of the map's nodes, chunk headers, a partly filled chunk),
//! spread over the tokens that expire in that second. Tokens with any other id take a
//! [`Foreign`] record: their text on the heap (the worst case).
//!
//! Measured (`benches/live_memory.rs`, counting allocator, 1,000,000 tokens): 32.1 bytes per
//! token at 15,000 tokens/s, 36.4 at 278/s, 62.4 at 10/s, 48.2 with grants, 88.7 with UUID ids;
//! 32.8 at 10,000,000 tokens.

use super::id::Id128;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// At most this many records per chunk (32 KiB of plain records): a bucket's unused capacity is
/// bounded by an eighth of one chunk, and growing a chunk never copies more than that.
const CHUNK: usize = 1024;

/// The smallest capacity a chunk grows by.
const MIN_GROWTH: usize = 4;

/// A token whose id is a tollgate id and which has no grant.
#[derive(Debug, Clone, Copy)]
struct Plain {
    id: Id128,
    issued_at: i64,
    owner: u32,
}

/// A token whose id and grant are tollgate ids.
#[derive(Debug, Clone, Copy)]
struct Granted {
    id: Id128,
    grant: Id128,
    issued_at: i64,
    owner: u32,
}

/// A token whose id or grant is not a tollgate id (another issuer's, or loaded from an older
/// store): kept as text.
#[derive(Debug, Clone)]
struct Foreign {
    id: Box<str>,
    grant: Option<Box<str>>,
    issued_at: i64,
    owner: u32,
}

/// An id as the batch count sees it.
#[derive(Debug, Clone, Copy)]
pub(super) enum IdRef<'a> {
    /// A tollgate id.
    Native(Id128),
    /// Any other id.
    Text(&'a str),
}

impl IdRef<'_> {
    /// Calls `f` with the id's text (encoded on the stack for a tollgate id).
    pub(super) fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            IdRef::Native(id) => id.with_text(f),
            IdRef::Text(text) => f(text),
        }
    }
}

/// What the batch count needs to know about one live access token.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fact<'a> {
    pub(super) id: IdRef<'a>,
    pub(super) grant: Option<IdRef<'a>>,
    pub(super) issued_at: i64,
    /// Its number in [`super::owners::Owners`].
    pub(super) owner: u32,
}

/// A token to register.
#[derive(Debug, Clone, Copy)]
pub(super) struct NewToken<'a> {
    pub(super) id: &'a str,
    pub(super) grant: Option<&'a str>,
    pub(super) issued_at: i64,
    pub(super) expires_at: i64,
    pub(super) owner: u32,
}

/// A list that grows chunk by chunk, each chunk by an eighth (see the [module docs](self)). The
/// chunk being filled is held inline: a bucket of a few tokens allocates one small chunk and
/// nothing else.
#[derive(Debug)]
struct Chunks<T> {
    /// The chunk being filled (never more than [`CHUNK`]).
    tail: Vec<T>,
    /// Chunks of exactly [`CHUNK`] records.
    full: Vec<Vec<T>>,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks {
            tail: Vec::new(),
            full: Vec::new(),
        }
    }
}

impl<T> Chunks<T> {
    fn push(&mut self, record: T) {
        if self.tail.len() == CHUNK {
            self.full.push(std::mem::take(&mut self.tail));
        }
        if self.tail.len() == self.tail.capacity() {
            let len = self.tail.len();
            self.tail
                .reserve_exact((len / 8).max(MIN_GROWTH).min(CHUNK - len));
        }
        self.tail.push(record);
    }

    /// Removes the first record `is_it` picks, filling its place with the last record.
    fn remove(&mut self, is_it: impl Fn(&T) -> bool) -> bool {
        if self.tail.is_empty() {
            let Some(chunk) = self.full.pop() else {
                return false;
            };
            self.tail = chunk;
        }
        if let Some(i) = self.tail.iter().position(&is_it) {
            self.tail.swap_remove(i);
            return true;
        }
        for chunk in &mut self.full {
            if let Some(slot) = chunk.iter_mut().find(|r| is_it(r)) {
                // The tail is not empty (see above): its last record fills the hole, so full
                // chunks stay full.
                if let Some(last) = self.tail.pop() {
                    *slot = last;
                }
                return true;
            }
        }
        false
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.full.iter().flatten().chain(&self.tail)
    }

    fn len(&self) -> usize {
        self.full.len() * CHUNK + self.tail.len()
    }
}

/// The tokens that expire at one instant.
#[derive(Debug, Default)]
struct Bucket {
    plain: Chunks<Plain>,
    granted: Chunks<Granted>,
    foreign: Vec<Foreign>,
}

impl Bucket {
    fn len(&self) -> usize {
        self.plain.len() + self.granted.len() + self.foreign.len()
    }
}

#[derive(Debug, Default)]
struct Buckets {
    by_expiry: BTreeMap<i64, Bucket>,
    len: usize,
}

/// Live access tokens by expiry (see the [module docs](self)).
///
/// One lock: registering a token holds it for one push (tens of nanoseconds), far below what
/// signing the token costs, and the batch count, which holds it while it walks every token,
/// already stops issuance with the issue gate.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    buckets: Mutex<Buckets>,
}

/// What one purge step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PurgeStep {
    /// Tokens forgotten.
    pub(crate) removed: usize,
    /// Whether expired tokens remain for another step.
    pub(crate) more: bool,
}

impl Timeline {
    fn lock(&self) -> MutexGuard<'_, Buckets> {
        // Buckets stay consistent across a panic (every change is one push, pop or swap).
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a token until it expires. Each id is registered once (ids are random).
    pub(super) fn insert(&self, token: NewToken<'_>) {
        let id = Id128::parse(token.id);
        let grant = token.grant.map(|g| (g, Id128::parse(g)));
        let mut buckets = self.lock();
        let bucket = buckets.by_expiry.entry(token.expires_at).or_default();
        match (id, grant) {
            (Some(id), None) => bucket.plain.push(Plain {
                id,
                issued_at: token.issued_at,
                owner: token.owner,
            }),
            (Some(id), Some((_, Some(grant)))) => bucket.granted.push(Granted {
                id,
                grant,
                issued_at: token.issued_at,
                owner: token.owner,
            }),
            _ => bucket.foreign.push(Foreign {
                id: token.id.into(),
                grant: token.grant.map(Into::into),
                issued_at: token.issued_at,
                owner: token.owner,
            }),
        }
        buckets.len += 1;
    }

    /// Forgets the token `id` that expires at `expires_at`; returns whether it was there. Walks
    /// that one bucket.
    pub(super) fn remove(&self, id: &str, expires_at: i64) -> bool {
        let native = Id128::parse(id);
        let mut buckets = self.lock();
        let Some(bucket) = buckets.by_expiry.get_mut(&expires_at) else {
            return false;
        };
        let removed = match native {
            Some(native) => {
                bucket.plain.remove(|r| r.id == native) || bucket.granted.remove(|r| r.id == native)
            }
            None => false,
        } || match bucket.foreign.iter().position(|r| *r.id == *id) {
            Some(i) => {
                bucket.foreign.swap_remove(i);
                true
            }
            None => false,
        };
        if bucket.len() == 0 {
            buckets.by_expiry.remove(&expires_at);
        }
        if removed {
            buckets.len -= 1;
        }
        removed
    }

    /// Forgets tokens that expired before `before`, oldest first, whole buckets at a time, until
    /// at least `budget` are gone. A step handles at most `budget` tokens plus one bucket, and the
    /// memory is released after the lock (freeing a bucket costs one call per chunk).
    pub(super) fn purge(&self, before: i64, budget: usize) -> PurgeStep {
        let mut expired = Vec::new();
        let mut removed = 0;
        let more = {
            let mut buckets = self.lock();
            while removed < budget {
                let Some(entry) = buckets.by_expiry.first_entry() else {
                    break;
                };
                if *entry.key() >= before {
                    break;
                }
                let bucket = entry.remove();
                removed += bucket.len();
                expired.push(bucket);
            }
            buckets.len -= removed;
            buckets
                .by_expiry
                .first_key_value()
                .is_some_and(|(&expiry, _)| expiry < before)
        };
        drop(expired);
        PurgeStep { removed, more }
    }

    /// Calls `f` with every token that expires after `now`, holding the lock throughout.
    pub(super) fn for_each_live(&self, now: i64, mut f: impl FnMut(Fact<'_>)) {
        let buckets = self.lock();
        for bucket in buckets
            .by_expiry
            .range(now.saturating_add(1)..)
            .map(|(_, b)| b)
        {
            for r in bucket.plain.iter() {
                f(Fact {
                    id: IdRef::Native(r.id),
                    grant: None,
                    issued_at: r.issued_at,
                    owner: r.owner,
                });
            }
            for r in bucket.granted.iter() {
                f(Fact {
                    id: IdRef::Native(r.id),
                    grant: Some(IdRef::Native(r.grant)),
                    issued_at: r.issued_at,
                    owner: r.owner,
                });
            }
            for r in &bucket.foreign {
                f(Fact {
                    id: IdRef::Text(&r.id),
                    grant: r.grant.as_deref().map(IdRef::Text),
                    issued_at: r.issued_at,
                    owner: r.owner,
                });
            }
        }
    }

    /// How many tokens are registered (expired ones included until purged).
    pub(super) fn len(&self) -> usize {
        self.lock().len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token<'a>(id: &'a str, grant: Option<&'a str>, expires_at: i64) -> NewToken<'a> {
        NewToken {
            id,
            grant,
            issued_at: 1,
            expires_at,
            owner: 0,
        }
    }

    fn ids(timeline: &Timeline, now: i64) -> Vec<(String, Option<String>)> {
        let mut ids = Vec::new();
        timeline.for_each_live(now, |f| {
            ids.push((
                f.id.with_text(str::to_owned),
                f.grant.map(|g| g.with_text(str::to_owned)),
            ));
        });
        ids.sort();
        ids
    }

    #[test]
    fn records_keep_their_ids_whatever_their_kind() {
        let timeline = Timeline::default();
        let (a, g) = (tollgate_core::random::id(), tollgate_core::random::id());
        let uuid = "0b7c6a1e-2f3d-4c5b-8a9e-1f2e3d4c5b6a";
        timeline.insert(token(&a, None, 10));
        timeline.insert(token(&g, Some(&a), 10));
        timeline.insert(token(uuid, Some(&g), 20));
        timeline.insert(token(&a, Some(uuid), 20));
        let mut expected = vec![
            (a.clone(), None),
            (g.clone(), Some(a.clone())),
            (uuid.to_owned(), Some(g.clone())),
            (a.clone(), Some(uuid.to_owned())),
        ];
        expected.sort();
        assert_eq!(ids(&timeline, 0), expected);
        assert_eq!(timeline.len(), 4);
        // Expiring at `now` is expired.
        assert_eq!(ids(&timeline, 10).len(), 2);
    }

    #[test]
    fn removal_finds_the_token_in_its_bucket() {
        let timeline = Timeline::default();
        let all: Vec<String> = (0..3000).map(|_| tollgate_core::random::id()).collect();
        for id in &all {
            timeline.insert(token(id, None, 10));
        }
        timeline.insert(token("foreign", None, 10));
        assert!(!timeline.remove(&all[5], 11), "wrong expiry: not found");
        for id in all.iter().step_by(7) {
            assert!(timeline.remove(id, 10));
            assert!(!timeline.remove(id, 10));
        }
        assert!(timeline.remove("foreign", 10));
        let mut left: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 0)
            .map(|(_, id)| id.clone())
            .collect();
        left.sort();
        let seen: Vec<String> = ids(&timeline, 0).into_iter().map(|(id, _)| id).collect();
        assert_eq!(seen, left);
        assert_eq!(timeline.len(), left.len());
        for id in &left {
            assert!(timeline.remove(id, 10));
        }
        assert_eq!(timeline.len(), 0);
        assert!(timeline.lock().by_expiry.is_empty(), "empty buckets go");
        // Emptying a bucket whose tail chunk is empty takes records from its full chunks.
        let many: Vec<String> = (0..CHUNK + 1)
            .map(|_| tollgate_core::random::id())
            .collect();
        for id in &many {
            timeline.insert(token(id, None, 20));
        }
        for id in many.iter().rev() {
            assert!(timeline.remove(id, 20));
        }
        assert_eq!(timeline.len(), 0);
    }

    #[test]
    fn purge_forgets_only_the_expired_a_bounded_step_at_a_time() {
        let timeline = Timeline::default();
        // Ten buckets of 100 tokens, expiring at 1..=10.
        for expiry in 1..=10 {
            for _ in 0..100 {
                timeline.insert(token(&tollgate_core::random::id(), None, expiry));
            }
        }
        // Expired before 6: five buckets; a budget of 150 takes two per step.
        let step = timeline.purge(6, 150);
        assert_eq!(
            step,
            PurgeStep {
                removed: 200,
                more: true
            }
        );
        assert_eq!(
            timeline.purge(6, 150),
            PurgeStep {
                removed: 200,
                more: true
            }
        );
        assert_eq!(
            timeline.purge(6, 150),
            PurgeStep {
                removed: 100,
                more: false
            }
        );
        assert_eq!(
            timeline.purge(6, 150),
            PurgeStep {
                removed: 0,
                more: false
            }
        );
        assert_eq!(timeline.len(), 500);
        assert_eq!(
            ids(&timeline, 5).len(),
            500,
            "tokens expiring at 6 and later stay"
        );
        // A budget smaller than a bucket still makes progress, one bucket per step.
        assert_eq!(
            timeline.purge(8, 1),
            PurgeStep {
                removed: 100,
                more: true
            }
        );
        assert_eq!(
            timeline.purge(8, 1),
            PurgeStep {
                removed: 100,
                more: false
            }
        );
        assert_eq!(timeline.len(), 300);
    }

    #[test]
    fn records_are_as_small_as_documented() {
        assert_eq!(std::mem::size_of::<Plain>(), 32);
        assert_eq!(std::mem::size_of::<Granted>(), 48);
    }

    #[test]
    fn chunks_never_hold_more_than_an_eighth_unused() {
        let mut chunks = Chunks::default();
        for n in 1..=5 * CHUNK + 100 {
            chunks.push(n);
            let tail = chunks.tail.len();
            assert!(
                chunks
                    .full
                    .iter()
                    .all(|c| c.len() == CHUNK && c.capacity() == CHUNK)
            );
            assert!(
                chunks.tail.capacity() <= tail + (tail / 8).max(MIN_GROWTH),
                "{n}"
            );
            assert_eq!(chunks.len(), n);
        }
        // Removal keeps full chunks full, whichever chunk the record was in.
        for n in [1, 2000, 5 * CHUNK + 100, 3000, 5 * CHUNK + 50] {
            assert!(chunks.remove(|&r| r == n), "{n}");
            assert!(!chunks.remove(|&r| r == n));
            assert!(chunks.full.iter().all(|c| c.len() == CHUNK));
        }
        assert_eq!(chunks.len(), 5 * CHUNK + 95);
        let mut left: Vec<usize> = chunks.iter().copied().collect();
        left.sort_unstable();
        assert_eq!(left.len(), chunks.len());
        assert!(!left.contains(&2000) && left.contains(&2001));
    }
}
