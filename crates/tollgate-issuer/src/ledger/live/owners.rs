//! Who live access tokens belong to: (tenant, subject, client) triples, stored once and referred
//! to by a 4-byte number, so that a token pays 4 bytes for its owner however long the names are.
//!
//! One number for the whole triple rather than one per name, because the batch count judges a
//! token by its triple (scope and effective cutoff depend on nothing else): it can remember its
//! verdict per owner in a plain vector.
//!
//! Never shrinks: bounded by the distinct names and triples ever seen, which for a service with a
//! fixed set of clients is its users times their clients.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

type Hasher = foldhash::fast::RandomState;

/// The interned owners (see the [module docs](self)).
#[derive(Debug, Default)]
pub(super) struct Owners {
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    name_ids: HashMap<Arc<str>, u32, Hasher>,
    names: Vec<Arc<str>>,
    /// (tenant, subject, client) name numbers.
    owner_ids: HashMap<[u32; 3], u32, Hasher>,
    owners: Vec<[u32; 3]>,
}

/// A token's owner, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner<'a> {
    pub(super) tenant: &'a str,
    pub(super) subject: &'a str,
    pub(super) client_id: &'a str,
}

/// A consistent view of the owners, for the batch count.
pub(super) struct OwnersView<'a>(RwLockReadGuard<'a, Table>);

/// Numbers past `u32::MAX` would take 4 billion distinct names (over 100 GB of them): memory is
/// exhausted first, so a plain saturating conversion is enough.
fn next_id(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Table {
    fn owner_id(&self, owner: Owner<'_>) -> Option<u32> {
        let names = [owner.tenant, owner.subject, owner.client_id].map(|n| self.name_ids.get(n));
        let [Some(&t), Some(&s), Some(&c)] = names else {
            return None;
        };
        self.owner_ids.get(&[t, s, c]).copied()
    }

    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = next_id(self.names.len());
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.name_ids.insert(name, id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }
}

impl Owners {
    /// The number of `owner`, given one the first time it is seen.
    pub(super) fn intern(&self, owner: Owner<'_>) -> u32 {
        // Almost always known already: one shared lock, four lookups.
        if let Some(id) = self.read().0.owner_id(owner) {
            return id;
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let key = [owner.tenant, owner.subject, owner.client_id].map(|n| table.name_id(n));
        if let Some(&id) = table.owner_ids.get(&key) {
            return id;
        }
        let id = next_id(table.owners.len());
        table.owners.push(key);
        table.owner_ids.insert(key, id);
        id
    }

    /// Reads the owners; interning waits meanwhile.
    pub(super) fn read(&self) -> OwnersView<'_> {
        OwnersView(self.table.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl OwnersView<'_> {
    /// How many owners there are: every number given out is below it.
    pub(super) fn len(&self) -> usize {
        self.0.owners.len()
    }

    /// The owner with number `id` (empty names for a number never given out).
    pub(super) fn get(&self, id: u32) -> Owner<'_> {
        let [t, s, c] = self
            .0
            .owners
            .get(id as usize)
            .copied()
            .unwrap_or([u32::MAX; 3]);
        Owner {
            tenant: self.0.name(t),
            subject: self.0.name(s),
            client_id: self.0.name(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner<'a>(tenant: &'a str, subject: &'a str, client_id: &'a str) -> Owner<'a> {
        Owner {
            tenant,
            subject,
            client_id,
        }
    }

    #[test]
    fn one_number_per_triple_and_names_shared() {
        let owners = Owners::default();
        let a = owners.intern(owner("/Org", "alice", "web"));
        let b = owners.intern(owner("/Org", "bob", "web"));
        // Same names in other roles are another owner.
        let c = owners.intern(owner("/Org", "web", "alice"));
        assert_eq!(owners.intern(owner("/Org", "alice", "web")), a);
        assert_eq!(
            [a, b, c].len(),
            [a, b, c]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
        let view = owners.read();
        assert_eq!(view.len(), 3);
        assert_eq!(view.get(b), owner("/Org", "bob", "web"));
        assert_eq!(view.get(c), owner("/Org", "web", "alice"));
        assert_eq!(view.get(99), owner("", "", ""));
        assert_eq!(
            view.0.names.len(),
            4,
            "/Org, alice, web, bob: each stored once"
        );
    }
}
