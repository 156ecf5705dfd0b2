//! Join and leave announcements from changes of the merged view, with a grace period
//! on leaves: a user who comes back before the grace ends (a page reload, a reconnect
//! to another node) was never announced as gone, so nothing is announced at all.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use tokio::time::Instant;

use super::cluster::Change;

/// What local presence subscribers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Announcement {
    /// `user` joined `topic`.
    Join {
        /// The topic.
        topic: Arc<str>,
        /// The user.
        user: Arc<str>,
    },
    /// `user` left `topic`.
    Leave {
        /// The topic.
        topic: Arc<str>,
        /// The user.
        user: Arc<str>,
    },
}

/// The leaves waiting for their grace to end.
#[derive(Debug)]
pub(super) struct Grace {
    grace: Duration,
    /// Per topic, the users on their way out and when their leave is due.
    leaving: HashMap<Arc<str>, HashMap<Arc<str>, Instant>>,
    /// The same, ordered by deadline.
    due: BTreeSet<(Instant, Arc<str>, Arc<str>)>,
}

impl Grace {
    /// Leaves wait `grace`.
    pub(super) fn new(grace: Duration) -> Self {
        Self {
            grace,
            leaving: HashMap::new(),
            due: BTreeSet::new(),
        }
    }

    /// What to announce at once for `change`, seen at `now`.
    pub(super) fn on_change(&mut self, change: Change, now: Instant) -> Option<Announcement> {
        match change {
            Change::Appeared { topic, user } => {
                if self.cancel(&topic, &user) {
                    None
                } else {
                    Some(Announcement::Join { topic, user })
                }
            }
            Change::Disappeared { topic, user } if self.grace.is_zero() => {
                Some(Announcement::Leave { topic, user })
            }
            Change::Disappeared { topic, user } => {
                let deadline = now + self.grace;
                self.cancel(&topic, &user);
                self.leaving
                    .entry(topic.clone())
                    .or_default()
                    .insert(user.clone(), deadline);
                self.due.insert((deadline, topic, user));
                None
            }
        }
    }

    /// The leaves whose grace has ended by `now`, in deadline order.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Announcement> {
        let mut announcements = Vec::new();
        while let Some(first) = self.due.first() {
            if first.0 > now {
                break;
            }
            let Some((_, topic, user)) = self.due.pop_first() else {
                break;
            };
            self.forget(&topic, &user);
            announcements.push(Announcement::Leave { topic, user });
        }
        announcements
    }

    /// When the next leave is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.due.first().map(|(deadline, _, _)| *deadline)
    }

    /// The users of `topic` whose leave is pending: still members until it is sent.
    pub(super) fn leaving(&self, topic: &str) -> impl Iterator<Item = &Arc<str>> {
        self.leaving.get(topic).into_iter().flat_map(HashMap::keys)
    }

    /// Drops a pending leave; whether there was one.
    fn cancel(&mut self, topic: &Arc<str>, user: &Arc<str>) -> bool {
        let Some(deadline) = self.forget(topic, user) else {
            return false;
        };
        self.due.remove(&(deadline, topic.clone(), user.clone()));
        true
    }

    fn forget(&mut self, topic: &str, user: &str) -> Option<Instant> {
        let users = self.leaving.get_mut(topic)?;
        let deadline = users.remove(user);
        if users.is_empty() {
            self.leaving.remove(topic);
        }
        deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn appeared(user: &str) -> Change {
        Change::Appeared {
            topic: Arc::from("chat"),
            user: Arc::from(user),
        }
    }

    fn disappeared(user: &str) -> Change {
        Change::Disappeared {
            topic: Arc::from("chat"),
            user: Arc::from(user),
        }
    }

    fn leave(user: &str) -> Announcement {
        Announcement::Leave {
            topic: Arc::from("chat"),
            user: Arc::from(user),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leave_waits_for_the_grace_and_a_return_within_it_is_silent() {
        let mut grace = Grace::new(GRACE);
        let start = Instant::now();
        assert!(matches!(
            grace.on_change(appeared("ann"), start),
            Some(Announcement::Join { .. })
        ));
        // A reload: gone, back within the grace. Nothing at all.
        assert_eq!(grace.on_change(disappeared("ann"), start), None);
        assert_eq!(grace.leaving("chat").count(), 1);
        tokio::time::advance(GRACE - Duration::from_millis(1)).await;
        assert_eq!(grace.on_change(appeared("ann"), Instant::now()), None);
        assert_eq!(grace.next_deadline(), None);
        tokio::time::advance(GRACE).await;
        assert!(grace.take_due(Instant::now()).is_empty());

        // Gone for good: the leave comes when the grace ends, not before.
        let gone = Instant::now();
        grace.on_change(disappeared("ann"), gone);
        assert_eq!(grace.next_deadline(), Some(gone + GRACE));
        tokio::time::advance(GRACE - Duration::from_millis(1)).await;
        assert!(grace.take_due(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(grace.take_due(Instant::now()), [leave("ann")]);
        assert_eq!(grace.leaving("chat").count(), 0);
        // After the leave, coming back is a join again.
        assert!(matches!(
            grace.on_change(appeared("ann"), Instant::now()),
            Some(Announcement::Join { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn leaves_come_in_deadline_order_and_zero_grace_is_immediate() {
        let mut grace = Grace::new(GRACE);
        grace.on_change(disappeared("bob"), Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        grace.on_change(disappeared("ann"), Instant::now());
        tokio::time::advance(GRACE).await;
        assert_eq!(grace.take_due(Instant::now()), [leave("bob"), leave("ann")]);

        let mut none = Grace::new(Duration::ZERO);
        assert_eq!(
            none.on_change(disappeared("ann"), Instant::now()),
            Some(leave("ann"))
        );
        assert_eq!(none.next_deadline(), None);
    }
}
