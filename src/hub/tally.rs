//! A count per name, shared by every shard of a hub: the glob subscriptions of each
//! user (a user's connections may sit in any shard), and the shards holding each
//! distinct glob pattern (the node's budget counts a pattern once however many
//! shards hold it, so a glob in use on one shard is accepted on another).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

/// Counts by name; a name whose count falls to zero is forgotten.
#[derive(Debug, Default)]
pub(super) struct Tally(Mutex<HashMap<Arc<str>, usize>>);

/// A tally, locked: taken under a shard's lock, never the other way round. A subscribe
/// holds the node's globs from its admission to its indexing, so that two shards
/// cannot both take the last place of the node's budget or of a user's.
pub(super) struct Held<'a>(MutexGuard<'a, HashMap<Arc<str>, usize>>);

impl Tally {
    pub(super) fn lock(&self) -> Held<'_> {
        // Counts left half-moved by a panic elsewhere are still the best there are.
        Held(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Held<'_> {
    /// `name`'s count (zero if it has none).
    pub(super) fn get(&self, name: &str) -> usize {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// How many names have a count.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Moves `name`'s count by `delta`, forgetting it at zero.
    pub(super) fn add(&mut self, name: &str, delta: isize) {
        let count = match self.0.get_mut(name) {
            Some(count) => count,
            None => self.0.entry(Arc::from(name)).or_default(),
        };
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            self.0.remove(name);
        }
    }
}
