//! Frames to this node's presence subscribers. Each connection has one bounded queue
//! of presence frames, read by its connection task next to its event queue; a full
//! queue ends the connection (4008) like a full event queue, because a subscriber that
//! missed a `join` or a `leave` would show the wrong members from then on.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::mpsc;

use super::grace::Announcement;
use crate::{close::CloseReason, hub::ReceiverKey, protocol::ServerFrame};

/// The sending side of one connection's presence queue.
#[derive(Debug, Clone)]
pub(crate) struct Outlet {
    sender: mpsc::Sender<String>,
    overflowed: Arc<AtomicBool>,
}

/// The receiving side of one connection's presence queue.
#[derive(Debug)]
pub(crate) struct PresenceFrames {
    receiver: mpsc::Receiver<String>,
    overflowed: Arc<AtomicBool>,
}

/// A queue of `capacity` frames for one connection.
pub(super) fn queue(capacity: usize) -> (Outlet, PresenceFrames) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let overflowed = Arc::new(AtomicBool::new(false));
    (
        Outlet {
            sender,
            overflowed: overflowed.clone(),
        },
        PresenceFrames {
            receiver,
            overflowed,
        },
    )
}

impl Outlet {
    /// Queues `frame` without waiting; a full queue marks the connection for closing.
    fn send(&self, frame: String) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(frame) {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }
}

impl PresenceFrames {
    /// Waits for the next frames (at most `max` at once), or the close a full queue
    /// asks for. Never ends while the connection holds its [`Outlet`].
    pub(crate) async fn next(&mut self, max: usize) -> Result<Vec<String>, CloseReason> {
        let first = self.receiver.recv().await;
        if self.overflowed.load(Ordering::Relaxed) {
            return Err(CloseReason::SlowConsumer);
        }
        let Some(first) = first else {
            return std::future::pending().await;
        };
        let mut frames = vec![first];
        while frames.len() < max {
            match self.receiver.try_recv() {
                Ok(frame) => frames.push(frame),
                Err(_) => break,
            }
        }
        Ok(frames)
    }

    /// Whatever is queued now, without waiting.
    #[cfg(test)]
    pub(super) fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.receiver.try_recv().ok()).collect()
    }
}

/// A local presence subscription: its connection and its id.
type Subscriber = (ReceiverKey, Arc<str>);

/// Who is told about each topic: the local presence subscriptions and their queues.
#[derive(Debug, Default)]
pub(super) struct Outlets {
    by_topic: HashMap<Arc<str>, HashMap<Subscriber, Outlet>>,
}

impl Outlets {
    /// Subscription `sub` of connection `key` hears about `topic` through `outlet`.
    pub(super) fn add(&mut self, topic: Arc<str>, key: ReceiverKey, sub: Arc<str>, outlet: Outlet) {
        self.by_topic
            .entry(topic)
            .or_default()
            .insert((key, sub), outlet);
    }

    /// Subscription `sub` of connection `key` no longer hears about `topic`.
    pub(super) fn remove(&mut self, topic: &str, key: ReceiverKey, sub: Arc<str>) {
        if let Some(outlets) = self.by_topic.get_mut(topic) {
            outlets.remove(&(key, sub));
            if outlets.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    /// Tells every subscriber of the announcement's topic.
    pub(super) fn announce(&self, announcement: &Announcement) {
        let (topic, user, join) = match announcement {
            Announcement::Join { topic, user } => (topic, user, true),
            Announcement::Leave { topic, user } => (topic, user, false),
        };
        let Some(outlets) = self.by_topic.get(topic) else {
            return;
        };
        for ((_, sub), outlet) in outlets {
            let (id, topic, user_id) = (sub.to_string(), topic.to_string(), user.to_string());
            let frame = if join {
                ServerFrame::Join { id, topic, user_id }
            } else {
                ServerFrame::Leave { id, topic, user_id }
            };
            outlet.send(frame.to_text());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(user: &str) -> Announcement {
        Announcement::Join {
            topic: Arc::from("chat"),
            user: Arc::from(user),
        }
    }

    #[tokio::test]
    async fn subscribers_of_the_topic_get_frames_with_their_own_id() {
        let mut outlets = Outlets::default();
        let (outlet, mut frames) = queue(8);
        outlets.add(Arc::from("chat"), 1, Arc::from("p1"), outlet.clone());
        outlets.add(Arc::from("news"), 1, Arc::from("p2"), outlet);
        outlets.announce(&join("ann"));
        let got = frames.next(10).await.unwrap();
        assert_eq!(
            got,
            [r#"{"type":"join","id":"p1","topic":"chat","user_id":"ann"}"#]
        );
        outlets.remove("chat", 1, Arc::from("p1"));
        outlets.announce(&join("bob"));
        assert!(frames.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_asks_to_close_the_connection() {
        let mut outlets = Outlets::default();
        let (outlet, mut frames) = queue(1);
        outlets.add(Arc::from("chat"), 1, Arc::from("p"), outlet);
        outlets.announce(&join("ann"));
        outlets.announce(&join("bob"));
        assert_eq!(frames.next(10).await, Err(CloseReason::SlowConsumer));
    }
}
