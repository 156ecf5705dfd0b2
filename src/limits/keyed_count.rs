//! A count per key of things held right now (open sockets of an IP, connections of
//! a user), each released by dropping its guard, so a panic never leaks a slot. The
//! map holds only keys with something open: its size is bounded by what is open.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

/// Counts per key, at most `max` each.
#[derive(Debug)]
pub(crate) struct KeyedCount<K: Hash + Eq + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    max: usize,
}

/// One unit held for a key; dropping it gives the unit back.
#[derive(Debug)]
pub(crate) struct CountGuard<K: Hash + Eq + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> KeyedCount<K> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            counts: Arc::default(),
            max,
        }
    }

    /// One more for `key`, unless it already holds `max`.
    pub(crate) fn acquire(&self, key: &K) -> Option<CountGuard<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(CountGuard {
            counts: self.counts.clone(),
            key: key.clone(),
        })
    }

    /// How many `key` holds.
    #[cfg(test)]
    pub(crate) fn count(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }

    /// Keys holding anything.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<K: Hash + Eq + Clone> CountGuard<K> {
    /// The key this unit is held for.
    pub(crate) fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Hash + Eq + Clone> Drop for CountGuard<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_per_key_and_dropping_gives_back() {
        let count = KeyedCount::new(2);
        let a1 = count.acquire(&"a").unwrap();
        let a2 = count.acquire(&"a").unwrap();
        assert!(count.acquire(&"a").is_none());
        let _b = count.acquire(&"b").unwrap();
        drop(a1);
        let a3 = count.acquire(&"a").unwrap();
        assert_eq!(count.count(&"a"), 2);
        drop((a2, a3));
        assert_eq!(count.count(&"a"), 0);
        assert_eq!(count.keys(), 1, "a key with nothing open is forgotten");
    }
}
