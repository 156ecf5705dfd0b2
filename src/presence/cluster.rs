//! The merged view: every node's counts per topic, and their sums. A change of one
//! node's count turns into "this user appeared on / disappeared from this topic" only
//! when the cluster-wide sum crosses zero, so a user with tabs on two nodes is one
//! member, and moving between nodes is not a change at all.

use std::{collections::HashMap, sync::Arc};

use super::counts::TopicCounts;

/// A user appeared on or disappeared from a topic, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// The user's first connection to the topic, anywhere.
    Appeared {
        /// The topic.
        topic: Arc<str>,
        /// The user.
        user: Arc<str>,
    },
    /// The user's last connection to the topic went away.
    Disappeared {
        /// The topic.
        topic: Arc<str>,
        /// The user.
        user: Arc<str>,
    },
}

/// One count of one node: `connections` of `user` (`None`: anonymous) on `topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Count {
    /// The topic.
    pub topic: Arc<str>,
    /// The user; `None` for anonymous connections.
    pub user: Option<Arc<str>>,
    /// How many connections.
    pub connections: u32,
}

/// Every node's counts and the cluster-wide sums.
#[derive(Debug, Default)]
pub(super) struct ClusterView {
    /// Per node, per topic.
    nodes: HashMap<Arc<str>, HashMap<Arc<str>, TopicCounts>>,
    /// Per topic, summed over the nodes.
    totals: HashMap<Arc<str>, TopicCounts>,
}

impl ClusterView {
    /// The cluster-wide counts of `topic`, if anyone is there.
    pub(super) fn topic(&self, topic: &str) -> Option<&TopicCounts> {
        self.totals.get(topic)
    }

    /// `node`'s connections of `user` on `topic`.
    pub(super) fn get(&self, node: &str, topic: &str, user: Option<&Arc<str>>) -> u32 {
        self.nodes
            .get(node)
            .and_then(|topics| topics.get(topic))
            .map_or(0, |counts| counts.get(user))
    }

    /// Every count `node` has, for its full state.
    pub(super) fn counts_of(&self, node: &str) -> Vec<Count> {
        let Some(topics) = self.nodes.get(node) else {
            return Vec::new();
        };
        topics
            .iter()
            .flat_map(|(topic, counts)| {
                counts.entries().map(|(user, connections)| Count {
                    topic: topic.clone(),
                    user: user.cloned(),
                    connections,
                })
            })
            .collect()
    }

    /// Sets one count of `node`; the change it makes cluster-wide, if any.
    pub(super) fn set(&mut self, node: &Arc<str>, count: Count) -> Option<Change> {
        let Count {
            topic,
            user,
            connections,
        } = count;
        let topics = self.nodes.entry(node.clone()).or_default();
        let node_counts = topics.entry(topic.clone()).or_default();
        let before = node_counts.set(user.as_ref(), connections);
        if node_counts.is_empty() {
            topics.remove(&topic);
        }
        if before == connections {
            return None;
        }
        let totals = self.totals.entry(topic.clone()).or_default();
        let total_before = totals.get(user.as_ref());
        // The sum holds every node's count, `before` included, so this cannot go
        // below zero; saturate anyway rather than trust that with a panic.
        let total_after = total_before
            .saturating_sub(before)
            .saturating_add(connections);
        totals.set(user.as_ref(), total_after);
        if totals.is_empty() {
            self.totals.remove(&topic);
        }
        let user = user?;
        match (total_before, total_after) {
            (0, after) if after > 0 => Some(Change::Appeared { topic, user }),
            (before, 0) if before > 0 => Some(Change::Disappeared { topic, user }),
            _ => None,
        }
    }

    /// Replaces everything `node` has with `counts` (a full state); the changes.
    pub(super) fn replace(&mut self, node: &Arc<str>, counts: Vec<Count>) -> Vec<Change> {
        let mut fresh: HashMap<Arc<str>, TopicCounts> = HashMap::new();
        for count in &counts {
            fresh
                .entry(count.topic.clone())
                .or_default()
                .set(count.user.as_ref(), count.connections);
        }
        let gone: Vec<Count> = self
            .counts_of(node)
            .into_iter()
            .filter(|old| {
                fresh
                    .get(&old.topic)
                    .is_none_or(|counts| counts.get(old.user.as_ref()) == 0)
            })
            .map(|old| Count {
                connections: 0,
                ..old
            })
            .collect();
        let changes = gone
            .into_iter()
            .chain(counts)
            .filter_map(|count| self.set(node, count))
            .collect();
        if self.nodes.get(node).is_some_and(HashMap::is_empty) {
            self.nodes.remove(node);
        }
        changes
    }

    /// Drops `node` and everything it had; the changes.
    pub(super) fn remove(&mut self, node: &Arc<str>) -> Vec<Change> {
        let changes = self.replace(node, Vec::new());
        self.nodes.remove(node);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(topic: &str, user: Option<&str>, connections: u32) -> Count {
        Count {
            topic: Arc::from(topic),
            user: user.map(Arc::from),
            connections,
        }
    }

    fn appeared(topic: &str, user: &str) -> Change {
        Change::Appeared {
            topic: Arc::from(topic),
            user: Arc::from(user),
        }
    }

    fn disappeared(topic: &str, user: &str) -> Change {
        Change::Disappeared {
            topic: Arc::from(topic),
            user: Arc::from(user),
        }
    }

    #[test]
    fn a_user_on_two_nodes_is_one_member_with_the_summed_connections() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut view = ClusterView::default();
        assert_eq!(
            view.set(&a, count("chat", Some("ann"), 2)),
            Some(appeared("chat", "ann"))
        );
        assert_eq!(view.set(&b, count("chat", Some("ann"), 1)), None);
        assert_eq!(view.set(&b, count("chat", None, 4)), None);
        let totals = view.topic("chat").unwrap();
        assert_eq!(totals.get(Some(&Arc::from("ann"))), 3);
        assert_eq!(totals.connections(), 7);
        // Moving off one node is not a change; leaving the last one is.
        assert_eq!(view.set(&a, count("chat", Some("ann"), 0)), None);
        assert_eq!(
            view.set(&b, count("chat", Some("ann"), 0)),
            Some(disappeared("chat", "ann"))
        );
        view.set(&b, count("chat", None, 0));
        assert!(view.topic("chat").is_none(), "empty topics are forgotten");
    }

    #[test]
    fn a_full_state_replaces_what_the_node_had() {
        let b: Arc<str> = Arc::from("b");
        let mut view = ClusterView::default();
        view.set(&b, count("chat", Some("bob"), 1));
        view.set(&b, count("chat", Some("cy"), 1));
        let mut changes = view.replace(
            &b,
            vec![count("chat", Some("cy"), 2), count("news", Some("dee"), 1)],
        );
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            [appeared("news", "dee"), disappeared("chat", "bob")]
        );
        assert_eq!(view.get("b", "chat", Some(&Arc::from("cy"))), 2);
        let mut removed = view.remove(&b);
        removed.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            removed,
            [disappeared("chat", "cy"), disappeared("news", "dee")]
        );
        assert!(view.counts_of("b").is_empty());
        assert!(view.topic("chat").is_none());
    }
}
