//! The distinct glob patterns of a whole node, across its hub shards. The node's glob
//! budget counts each pattern once however many shards hold it, so a glob in use on
//! one shard is accepted on another as it would be on a node of one shard.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

/// Each distinct glob pattern's text with the number of shards holding it.
#[derive(Debug, Default)]
pub(super) struct NodeGlobs(Mutex<HashMap<Box<str>, usize>>);

/// The node's globs, locked: taken under a shard's lock, never the other way round,
/// and held by every subscribe from its admission to its indexing, so that two
/// shards cannot both take the last place of the node's budget or of a user's.
pub(super) struct Held<'a>(MutexGuard<'a, HashMap<Box<str>, usize>>);

impl NodeGlobs {
    pub(super) fn lock(&self) -> Held<'_> {
        // Counts left half-moved by a panic elsewhere are still the best there are.
        Held(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Held<'_> {
    /// Distinct globs on the node.
    pub(super) fn count(&self) -> usize {
        self.0.len()
    }

    /// Whether some shard holds `glob`.
    pub(super) fn holds(&self, glob: &str) -> bool {
        self.0.contains_key(glob)
    }

    /// A shard began to hold `glob`.
    pub(super) fn gained(&mut self, glob: &str) {
        *self.0.entry(Box::from(glob)).or_default() += 1;
    }

    /// A shard no longer holds `glob`.
    pub(super) fn lost(&mut self, glob: &str) {
        if let Some(shards) = self.0.get_mut(glob) {
            *shards -= 1;
            if *shards == 0 {
                self.0.remove(glob);
            }
        }
    }
}
