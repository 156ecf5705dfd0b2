//! Connections on one topic: per signed-in user, and anonymous ones.

use std::{collections::HashMap, sync::Arc};

/// Connections on one topic, as one node or the whole cluster has them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct TopicCounts {
    users: HashMap<Arc<str>, u32>,
    anonymous: u32,
}

impl TopicCounts {
    /// The connections of `user`; `None` asks for the anonymous ones.
    pub(super) fn get(&self, user: Option<&Arc<str>>) -> u32 {
        match user {
            Some(user) => self.users.get(user).copied().unwrap_or(0),
            None => self.anonymous,
        }
    }

    /// Sets the connections of `user` (`None`: anonymous) to `count`; returns the
    /// previous count. A user with 0 connections is forgotten.
    pub(super) fn set(&mut self, user: Option<&Arc<str>>, count: u32) -> u32 {
        match user {
            None => std::mem::replace(&mut self.anonymous, count),
            Some(user) if count == 0 => self.users.remove(user).unwrap_or(0),
            Some(user) => self.users.insert(user.clone(), count).unwrap_or(0),
        }
    }

    /// No connection at all.
    pub(super) fn is_empty(&self) -> bool {
        self.users.is_empty() && self.anonymous == 0
    }

    /// Every non-zero count, anonymous last.
    pub(super) fn entries(&self) -> impl Iterator<Item = (Option<&Arc<str>>, u32)> {
        self.users
            .iter()
            .map(|(user, count)| (Some(user), *count))
            .chain((self.anonymous > 0).then_some((None, self.anonymous)))
    }

    /// The users with at least one connection, and their counts.
    pub(super) fn users(&self) -> impl Iterator<Item = (&Arc<str>, u32)> {
        self.users.iter().map(|(user, count)| (user, *count))
    }

    /// Every connection, anonymous ones included.
    pub(super) fn connections(&self) -> usize {
        self.users.values().map(|&n| n as usize).sum::<usize>() + self.anonymous as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_forget_users_at_zero_and_sum_every_connection() {
        let ann: Arc<str> = Arc::from("ann");
        let mut counts = TopicCounts::default();
        assert_eq!(counts.set(Some(&ann), 2), 0);
        assert_eq!(counts.set(None, 1), 0);
        assert_eq!(counts.connections(), 3);
        assert_eq!(counts.entries().count(), 2);
        assert_eq!(counts.set(Some(&ann), 0), 2);
        assert_eq!(counts.users().count(), 0);
        assert!(!counts.is_empty());
        counts.set(None, 0);
        assert!(counts.is_empty());
    }
}
