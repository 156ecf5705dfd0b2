//! One shard of the hub: a share of the node's receivers, with their subscription
//! index, their registry and the shard's delivery position under one lock.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{
    Counts, ReceiverKey,
    index::{SubscriptionIndex, is_glob},
    registry::Registry,
    runners::Jobs,
    tally::{Held, Tally},
};
use crate::{metrics::Metrics, topic::Pattern};

/// Everything a shard's one lock guards: the index and the registry change together
/// (a disconnect takes a receiver's subscriptions out of both), and the position must
/// be read in the same critical section that registers a subscription.
pub(super) struct State {
    pub(super) index: SubscriptionIndex,
    pub(super) registry: Registry,
    pub(super) position: u64,
    /// One shared copy of each subscription id in use. Most clients name their
    /// subscriptions alike (`s1`, `b`), so the fan-out compares ids by pointer and
    /// touches one copy, not one per receiver.
    pub(super) ids: HashSet<Arc<str>>,
    /// The node's distinct globs (by the shards holding each), told when this shard
    /// starts or stops holding one.
    pub(super) node_globs: Arc<Tally>,
}

impl State {
    /// Unregisters a receiver and takes its subscriptions out of the index.
    pub(super) fn remove_receiver(&mut self, key: ReceiverKey, metrics: &Metrics) {
        let Some(subscriptions) = self.registry.remove(key) else {
            return;
        };
        for (sub_id, pattern) in subscriptions {
            self.unindex(key, sub_id, &pattern, metrics);
        }
    }

    /// Takes subscription `id` of `key` out of the index, telling the node when the
    /// shard no longer holds its glob.
    pub(super) fn unindex(
        &mut self,
        key: ReceiverKey,
        id: Arc<str>,
        pattern: &Pattern,
        metrics: &Metrics,
    ) {
        let sub = (key, id);
        self.index.remove(&sub, pattern);
        self.release(sub.1);
        Metrics::dec(&metrics.subscriptions);
        if is_glob(pattern) && !self.index.holds_glob(pattern) {
            let mut node_globs = self.node_globs.lock();
            node_globs.add(pattern.as_str(), -1);
            report_globs(&node_globs, metrics);
        }
    }

    /// The shared copy of `id` (made if it is the first).
    pub(super) fn intern(&mut self, id: &str) -> Arc<str> {
        if let Some(shared) = self.ids.get(id) {
            return shared.clone();
        }
        // A copy of its own: the caller's may live on in the session.
        let shared: Arc<str> = Arc::from(id);
        self.ids.insert(shared.clone());
        shared
    }

    /// Gives back a shared id taken out of the index and the registry, forgetting it
    /// once nothing else holds it.
    pub(super) fn release(&mut self, id: Arc<str>) {
        // The set's copy and this one are all that is left.
        if Arc::strong_count(&id) <= 2 {
            self.ids.remove(&id);
        }
    }
}

/// A share of the node's receivers, with their subscriptions and delivery position.
///
/// Aligned so that no two shards share a cache line: each is written by its own
/// runner, on its own core.
#[repr(align(128))]
pub(super) struct Shard {
    pub(super) state: Mutex<State>,
    /// `state.position`, readable without the lock (the node's position is the lowest).
    pub(super) position: AtomicU64,
    /// Work waiting for the shard's runner, when the hub has runners.
    pub(super) jobs: Jobs,
}

impl Shard {
    pub(super) fn new(index: usize, shards: usize, position: u64, counts: &Counts) -> Self {
        Self {
            state: Mutex::new(State {
                index: SubscriptionIndex::default(),
                registry: Registry::new(index, shards, counts.users.clone()),
                position,
                ids: HashSet::new(),
                node_globs: counts.node.clone(),
            }),
            position: AtomicU64::new(position),
            jobs: Jobs::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-updated in a way
        // that matters more than stopping all delivery would, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the shard's position (its lock held, as `state`).
    pub(super) fn set_position(&self, state: &mut State, position: u64) {
        state.position = position;
        self.position.store(position, Ordering::Release);
    }
}

/// Sets the node's glob gauge from its tally of distinct globs (locked, as `node_globs`).
pub(super) fn report_globs(node_globs: &Held<'_>, metrics: &Metrics) {
    let count = u64::try_from(node_globs.len()).unwrap_or(u64::MAX);
    Metrics::set(&metrics.glob_patterns, count);
}
