//! The node's presence, as the transports, the ingest and the façade use it: the
//! state behind one lock, and a wake-up for the sync task whenever something changed
//! that it must publish or time.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::{sync::Notify, time::Instant};

use super::{
    Presence,
    outlets::{Outlet, PresenceFrames, queue},
    state::{Listing, PresenceState},
    wire::PresenceUpdate,
};
use crate::{
    broker::BrokerMessage, config::PresenceConfig, hub::ReceiverKey, protocol::ServerFrame,
};

/// One node's presence.
#[derive(Debug)]
pub(crate) struct PresenceNode {
    state: Mutex<PresenceState>,
    /// Woken on every change; the sync task publishes deltas and re-arms its timer.
    changed: Notify,
    config: PresenceConfig,
}

impl PresenceNode {
    /// The presence of a new node, with a random id (so a restarted process is a new
    /// node and its old self expires).
    pub(crate) fn new(config: PresenceConfig) -> Self {
        let own: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        Self {
            state: Mutex::new(PresenceState::new(own, &config)),
            changed: Notify::new(),
            config,
        }
    }

    /// The settings.
    pub(crate) fn config(&self) -> &PresenceConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, PresenceState> {
        // Every update leaves the state consistent between statements that matter;
        // stopping presence on a panic elsewhere would be worse than going on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A presence frame queue for one connection.
    pub(crate) fn queue(&self) -> (Outlet, PresenceFrames) {
        queue(self.config.queue_capacity)
    }

    /// Subscription `sub` of connection `key` (of `user`) joins `topic`; the frame
    /// that starts it: who is there, itself included. Later changes go to `outlet`.
    pub(crate) fn join(
        &self,
        key: ReceiverKey,
        sub: Arc<str>,
        topic: &str,
        user: Option<Arc<str>>,
        outlet: Outlet,
    ) -> ServerFrame {
        let listing = {
            let mut state = self.lock();
            let topic: Arc<str> = Arc::from(topic);
            state.join(
                key,
                sub.clone(),
                topic.clone(),
                user,
                outlet,
                Instant::now(),
            );
            state.listing(&topic, self.config.max_users_listed)
        };
        self.changed.notify_one();
        frame(Some(sub.to_string()), topic, listing, None)
    }

    /// Subscription `sub` of connection `key` ended (a no-op if it had no presence).
    pub(crate) fn leave(&self, key: ReceiverKey, sub: &str) {
        self.lock().leave(key, sub, Instant::now());
        self.changed.notify_one();
    }

    /// Connection `key` is gone.
    pub(crate) fn disconnect(&self, key: ReceiverKey) {
        self.lock().disconnect(key, Instant::now());
        self.changed.notify_one();
    }

    /// The reply to a `presence` frame, at most `presence.max_users_listed` users.
    pub(crate) fn reply(&self, topic: &str, reference: Option<Value>) -> ServerFrame {
        let listing = self.lock().listing(topic, self.config.max_users_listed);
        frame(None, topic, listing, reference)
    }

    /// Everyone on `topic`, unabridged.
    pub(crate) fn presence(&self, topic: &str) -> Presence {
        self.lock().listing(topic, usize::MAX).presence
    }

    /// A presence message from the broker.
    pub(crate) fn receive(&self, node: &str, seq: u64, update: PresenceUpdate) {
        self.lock().receive(node, seq, update, Instant::now());
        self.changed.notify_one();
    }

    /// Waits until something changed since the last call.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Expiry and due leaves at `now`; when to call again.
    pub(super) fn tick(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        state.tick(now);
        state.next_deadline()
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.lock().next_deadline()
    }

    /// What to publish after a change: the full state if a node appeared, else the
    /// changed counts.
    pub(super) fn take_changes(&self) -> Vec<BrokerMessage> {
        let mut state = self.lock();
        if state.take_sync_request() {
            state.take_sync()
        } else {
            state.take_delta()
        }
    }

    /// The full state, for the periodic sync.
    pub(super) fn take_sync(&self) -> Vec<BrokerMessage> {
        self.lock().take_sync()
    }

    /// The goodbye message, for shutdown.
    pub(super) fn goodbye(&self) -> BrokerMessage {
        self.lock().goodbye()
    }
}

fn frame(
    id: Option<String>,
    topic: &str,
    listing: Listing,
    reference: Option<Value>,
) -> ServerFrame {
    ServerFrame::Presence {
        id,
        topic: topic.to_owned(),
        users: listing.presence.users,
        connections: listing.presence.connections,
        truncated: listing.truncated,
        reference,
    }
}
