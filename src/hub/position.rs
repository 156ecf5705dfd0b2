//! The node's delivery position seen from outside the shards' locks: a watch that
//! resumers wait on, and a request that wakes whoever feeds the hub (the node's
//! ingest) to read the log now instead of at its next poll.
//!
//! The positions themselves stay in the shards' locked states, where registering a
//! subscription reads them; this watch mirrors the lowest, updated after a shard's
//! moved, so it never runs ahead of what any subscriber was handed.

use std::time::Duration;

use tokio::sync::{Notify, watch};

/// A mirror of the hub's delivery position, and catch-up requests to its feeder.
#[derive(Debug)]
pub(super) struct PositionWatch {
    position: watch::Sender<u64>,
    catch_up: Notify,
}

impl PositionWatch {
    /// A watch starting at `position`.
    pub(super) fn new(position: u64) -> Self {
        Self {
            position: watch::Sender::new(position),
            catch_up: Notify::new(),
        }
    }

    /// Records the position `read` gives, waking waiters only when it changed, so the
    /// per-event cost stays one comparison when nobody waits. `read` runs under the
    /// watch's lock: of two shards reporting at once, the later reads both updates.
    pub(super) fn set_with(&self, read: impl FnOnce() -> u64) {
        self.position.send_if_modified(|current| {
            let position = read();
            let changed = *current != position;
            *current = position;
            changed
        });
    }

    /// Asks the feeder to read the log, then waits, at most `timeout`, for the position
    /// to reach `seq`. True once it has.
    pub(super) async fn reach(&self, seq: u64, timeout: Duration) -> bool {
        let mut position = self.position.subscribe();
        if *position.borrow_and_update() >= seq {
            return true;
        }
        // A stored permit: a feeder busy elsewhere sees it on its next turn.
        self.catch_up.notify_one();
        let reached = tokio::time::timeout(timeout, position.wait_for(|p| *p >= seq)).await;
        // `Err` inside means the sender is gone, which cannot happen while `self` lives.
        matches!(reached, Ok(Ok(_)))
    }

    /// Waits, at most `timeout`, for the position to move past `seq`, without asking
    /// the feeder for anything (a long poll waiting for news). True once it has.
    pub(super) async fn beyond(&self, seq: u64, timeout: Duration) -> bool {
        let mut position = self.position.subscribe();
        let moved = tokio::time::timeout(timeout, position.wait_for(|p| *p > seq)).await;
        matches!(moved, Ok(Ok(_)))
    }

    /// Resolves when someone asked for a catch-up (at once if a request is pending).
    pub(super) async fn catch_up_requested(&self) {
        self.catch_up.notified().await;
    }
}
