//! The event log: the outbox written with each write, the relay that sequences it,
//! the hot ring of recent events and the replay that serves resumes.

pub mod outbox;

use std::sync::Arc;

use tokio::sync::Notify;

/// Wakes the relay after a commit that wrote outbox rows. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RelaySignal(Arc<Notify>);

impl RelaySignal {
    /// Tells the relay that new rows may be waiting.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Waits for the next wake-up (or returns at once if one is pending).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}
