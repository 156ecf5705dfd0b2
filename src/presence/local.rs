//! This node's presence subscriptions: which connection is on which topic through
//! which subscriptions. A connection counts once per topic however many of its
//! subscriptions name it, so only its first arrival and last departure matter.

use std::{collections::HashMap, sync::Arc};

use crate::hub::ReceiverKey;

/// A connection arrived on or departed from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    /// The topic.
    pub topic: Arc<str>,
    /// The connection's user; `None` when anonymous.
    pub user: Option<Arc<str>>,
    /// Arrived (true) or departed (false).
    pub arrived: bool,
}

/// What a closed connection leaves behind.
#[derive(Debug, Default)]
pub(super) struct Disconnected {
    /// Its presence subscriptions: id to topic.
    pub subscriptions: HashMap<Arc<str>, Arc<str>>,
    /// The topics it departed from.
    pub steps: Vec<Step>,
}

#[derive(Debug)]
struct Member {
    user: Option<Arc<str>>,
    /// The connection's presence subscriptions to the topic.
    subscriptions: u32,
}

/// Every local presence subscription.
#[derive(Debug, Default)]
pub(super) struct LocalMembers {
    /// Per connection, the topic of each presence subscription.
    by_connection: HashMap<ReceiverKey, HashMap<Arc<str>, Arc<str>>>,
    /// Per topic, the connections on it.
    by_topic: HashMap<Arc<str>, HashMap<ReceiverKey, Member>>,
}

impl LocalMembers {
    /// Subscription `sub` of connection `key` (of `user`) joins `topic`. The step, if
    /// the connection was not on the topic yet; nothing for a subscription id the
    /// connection already uses.
    pub(super) fn add(
        &mut self,
        key: ReceiverKey,
        sub: Arc<str>,
        topic: Arc<str>,
        user: Option<Arc<str>>,
    ) -> Option<Step> {
        let subs = self.by_connection.entry(key).or_default();
        if subs.contains_key(&sub) {
            return None;
        }
        subs.insert(sub, topic.clone());
        let member = self
            .by_topic
            .entry(topic.clone())
            .or_default()
            .entry(key)
            .or_insert(Member {
                user: user.clone(),
                subscriptions: 0,
            });
        member.subscriptions += 1;
        (member.subscriptions == 1).then_some(Step {
            topic,
            user,
            arrived: true,
        })
    }

    /// Subscription `sub` of connection `key` ends. The topic it was on (if it was a
    /// presence subscription) and the step, if it was the connection's last on it.
    pub(super) fn remove(
        &mut self,
        key: ReceiverKey,
        sub: &str,
    ) -> Option<(Arc<str>, Option<Step>)> {
        let subs = self.by_connection.get_mut(&key)?;
        let topic = subs.remove(sub)?;
        if subs.is_empty() {
            self.by_connection.remove(&key);
        }
        let step = self.depart(key, &topic);
        Some((topic, step))
    }

    /// Connection `key` is gone: every presence subscription it had, and the steps.
    pub(super) fn remove_connection(&mut self, key: ReceiverKey) -> Disconnected {
        let subscriptions = self.by_connection.remove(&key).unwrap_or_default();
        let steps = subscriptions
            .values()
            .filter_map(|topic| self.depart(key, topic))
            .collect();
        Disconnected {
            subscriptions,
            steps,
        }
    }

    /// One subscription of `key` on `topic` ended.
    fn depart(&mut self, key: ReceiverKey, topic: &Arc<str>) -> Option<Step> {
        let members = self.by_topic.get_mut(topic)?;
        let member = members.get_mut(&key)?;
        member.subscriptions = member.subscriptions.saturating_sub(1);
        if member.subscriptions > 0 {
            return None;
        }
        let member = members.remove(&key)?;
        if members.is_empty() {
            self.by_topic.remove(topic);
        }
        Some(Step {
            topic: topic.clone(),
            user: member.user,
            arrived: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn a_connection_counts_once_per_topic_however_many_subscriptions() {
        let mut local = LocalMembers::default();
        let ann = Some(s("ann"));
        let first = local.add(1, s("a"), s("chat"), ann.clone());
        assert_eq!(
            first,
            Some(Step {
                topic: s("chat"),
                user: ann.clone(),
                arrived: true
            })
        );
        assert_eq!(local.add(1, s("b"), s("chat"), ann.clone()), None);
        assert_eq!(
            local.add(1, s("b"), s("chat"), ann.clone()),
            None,
            "same id"
        );
        assert_eq!(local.remove(1, "a"), Some((s("chat"), None)));
        let (topic, step) = local.remove(1, "b").unwrap();
        assert_eq!(topic, s("chat"));
        assert!(step.is_some_and(|step| !step.arrived));
        assert_eq!(local.remove(1, "b"), None, "already gone");
        assert!(local.by_topic.is_empty() && local.by_connection.is_empty());
    }

    #[test]
    fn a_closed_connection_departs_from_every_topic() {
        let mut local = LocalMembers::default();
        local.add(7, s("a"), s("chat"), None);
        local.add(7, s("b"), s("news"), None);
        local.add(7, s("c"), s("news"), None);
        let gone = local.remove_connection(7);
        assert_eq!(gone.subscriptions.len(), 3);
        assert_eq!(gone.steps.len(), 2);
        assert!(gone.steps.iter().all(|step| !step.arrived));
        assert!(local.remove_connection(7).subscriptions.is_empty());
    }
}
