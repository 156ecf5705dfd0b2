//! One node's whole presence state, kept behind one lock by [`PresenceNode`]: local
//! subscriptions, the merged view, the other nodes, pending leaves, the subscribers
//! to tell, and what to publish next. Time comes in as an argument, so every rule can
//! be tested with plain values.
//!
//! [`PresenceNode`]: super::PresenceNode

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{
    Presence, PresenceUser,
    cluster::{Change, ClusterView, Count},
    grace::Grace,
    local::{LocalMembers, Step},
    outlets::{Outlet, Outlets},
    peers::{Heard, Peers},
    wire::{PresenceEntry, PresenceUpdate, split},
};
use crate::{broker::BrokerMessage, config::PresenceConfig, hub::ReceiverKey};

/// Who is on a topic, possibly cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listing {
    /// The members, at most the limit asked for.
    pub presence: Presence,
    /// Some users were left out.
    pub truncated: bool,
}

/// Everything presence knows on one node.
#[derive(Debug)]
pub(super) struct PresenceState {
    own: Arc<str>,
    node_ttl: Duration,
    max_message_bytes: usize,
    local: LocalMembers,
    cluster: ClusterView,
    grace: Grace,
    outlets: Outlets,
    peers: Peers,
    /// Own counts changed since the last message about them.
    dirty: HashSet<(Arc<str>, Option<Arc<str>>)>,
    /// The seq of the last message this node built.
    seq: u64,
    /// A node appeared: publish the full state now rather than at the next interval,
    /// so it learns this node's members at once.
    sync_soon: bool,
}

impl PresenceState {
    /// The state of node `own`.
    pub(super) fn new(own: Arc<str>, config: &PresenceConfig) -> Self {
        Self {
            own,
            node_ttl: config.node_ttl,
            max_message_bytes: config.max_message_bytes,
            local: LocalMembers::default(),
            cluster: ClusterView::default(),
            grace: Grace::new(config.grace),
            outlets: Outlets::default(),
            peers: Peers::default(),
            dirty: HashSet::new(),
            seq: 0,
            sync_soon: false,
        }
    }

    /// Subscription `sub` of connection `key` (of `user`) joins `topic` and hears
    /// about it through `outlet` from now on.
    pub(super) fn join(
        &mut self,
        key: ReceiverKey,
        sub: Arc<str>,
        topic: Arc<str>,
        user: Option<Arc<str>>,
        outlet: Outlet,
        now: Instant,
    ) {
        let step = self.local.add(key, sub.clone(), topic.clone(), user);
        // Announce before adding the subscriber: it learns of itself from its
        // starting listing, not from a `join`.
        self.step(step, now);
        self.outlets.add(topic, key, sub, outlet);
    }

    /// Subscription `sub` of connection `key` ends.
    pub(super) fn leave(&mut self, key: ReceiverKey, sub: &str, now: Instant) {
        if let Some((topic, step)) = self.local.remove(key, sub) {
            self.outlets.remove(&topic, key, Arc::from(sub));
            self.step(step, now);
        }
    }

    /// Connection `key` is gone with all its subscriptions.
    pub(super) fn disconnect(&mut self, key: ReceiverKey, now: Instant) {
        let gone = self.local.remove_connection(key);
        for (sub, topic) in gone.subscriptions {
            self.outlets.remove(&topic, key, sub);
        }
        for step in gone.steps {
            self.step(Some(step), now);
        }
    }

    /// A message from another node (own messages, echoed by the broker, are ignored).
    pub(super) fn receive(&mut self, node: &str, seq: u64, update: PresenceUpdate, now: Instant) {
        if node == &*self.own {
            return;
        }
        let node: Arc<str> = Arc::from(node);
        if let PresenceUpdate::Goodbye = update {
            self.peers.forget(&node);
            let changes = self.cluster.remove(&node);
            self.apply(changes, now);
            return;
        }
        match self.peers.heard(&node, seq, now) {
            Heard::Stale => return,
            Heard::Fresh { new_node } => self.sync_soon |= new_node,
        }
        let changes = match update {
            PresenceUpdate::Delta { entries } => entries
                .into_iter()
                .filter_map(|entry| self.cluster.set(&node, count(entry)))
                .collect(),
            PresenceUpdate::Sync {
                part,
                parts,
                entries,
            } => match self.peers.assemble(&node, seq, part, parts, entries) {
                Some(state) => self
                    .cluster
                    .replace(&node, state.into_iter().map(count).collect()),
                None => Vec::new(),
            },
            PresenceUpdate::Goodbye => Vec::new(),
        };
        self.apply(changes, now);
    }

    /// Drops the nodes silent for `node_ttl` and sends the leaves now due.
    pub(super) fn tick(&mut self, now: Instant) {
        for node in self.peers.expire(now, self.node_ttl) {
            tracing::info!(%node, "presence: a node went silent; dropping its members");
            let changes = self.cluster.remove(&node);
            self.apply(changes, now);
        }
        for leave in self.grace.take_due(now) {
            self.outlets.announce(&leave);
        }
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let expiry = self.peers.next_expiry(self.node_ttl);
        match (expiry, self.grace.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a full state should go out now; asking clears the request.
    pub(super) fn take_sync_request(&mut self) -> bool {
        std::mem::take(&mut self.sync_soon)
    }

    /// The delta of the own counts changed since the last message, in parts that fit.
    pub(super) fn take_delta(&mut self) -> Vec<BrokerMessage> {
        if self.dirty.is_empty() {
            return Vec::new();
        }
        let entries: Vec<PresenceEntry> = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(topic, user)| PresenceEntry {
                connections: self.cluster.get(&self.own, &topic, user.as_ref()),
                topic,
                user,
            })
            .collect();
        split(&self.own, entries, self.max_message_bytes)
            .into_iter()
            .filter(|entries| !entries.is_empty())
            .map(|entries| self.message(PresenceUpdate::Delta { entries }))
            .collect()
    }

    /// The full own state, in parts that fit. It covers every pending delta.
    pub(super) fn take_sync(&mut self) -> Vec<BrokerMessage> {
        self.dirty.clear();
        let entries = self
            .cluster
            .counts_of(&self.own)
            .into_iter()
            .map(|count| PresenceEntry {
                topic: count.topic,
                user: count.user,
                connections: count.connections,
            })
            .collect();
        let groups = split(&self.own, entries, self.max_message_bytes);
        let parts = u32::try_from(groups.len()).unwrap_or(u32::MAX);
        groups
            .into_iter()
            .zip(0..parts)
            .map(|(entries, part)| {
                self.message(PresenceUpdate::Sync {
                    part,
                    parts,
                    entries,
                })
            })
            .collect()
    }

    /// The message telling the others this node is leaving.
    pub(super) fn goodbye(&mut self) -> BrokerMessage {
        self.message(PresenceUpdate::Goodbye)
    }

    /// Who is on `topic`, at most `limit` users (sorted by user id).
    pub(super) fn listing(&self, topic: &str, limit: usize) -> Listing {
        let totals = self.cluster.topic(topic);
        // Sorted by reference, so only the users listed are copied.
        let mut users: Vec<(&Arc<str>, u32)> = totals
            .into_iter()
            .flat_map(|counts| counts.users())
            .chain(self.grace.leaving(topic).map(|user| (user, 0)))
            .collect();
        users.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let truncated = users.len() > limit;
        users.truncate(limit);
        Listing {
            presence: Presence {
                users: users
                    .into_iter()
                    .map(|(user, connections)| PresenceUser {
                        user_id: user.to_string(),
                        connections: connections as usize,
                    })
                    .collect(),
                connections: totals.map_or(0, |counts| counts.connections()),
            },
            truncated,
        }
    }

    fn message(&mut self, update: PresenceUpdate) -> BrokerMessage {
        self.seq += 1;
        BrokerMessage::Presence {
            node: self.own.to_string(),
            seq: self.seq,
            update,
        }
    }

    /// A local connection arrived or departed: update the own count and tell.
    fn step(&mut self, step: Option<Step>, now: Instant) {
        let Some(Step {
            topic,
            user,
            arrived,
        }) = step
        else {
            return;
        };
        let before = self.cluster.get(&self.own, &topic, user.as_ref());
        let connections = if arrived {
            before.saturating_add(1)
        } else {
            before.saturating_sub(1)
        };
        self.dirty.insert((topic.clone(), user.clone()));
        let own = self.own.clone();
        let change = self.cluster.set(
            &own,
            Count {
                topic,
                user,
                connections,
            },
        );
        self.apply(change, now);
    }

    fn apply(&mut self, changes: impl IntoIterator<Item = Change>, now: Instant) {
        for change in changes {
            if let Some(announcement) = self.grace.on_change(change, now) {
                self.outlets.announce(&announcement);
            }
        }
    }
}

fn count(entry: PresenceEntry) -> Count {
    Count {
        topic: entry.topic,
        user: entry.user,
        connections: entry.connections,
    }
}
