//! The node's socket writers: a few tasks (one per runtime worker thread) that write
//! out the WebSocket connections the fan-out queued events for.
//!
//! A connection is on one writer's list from the first frame queued for it until that
//! writer's next visit, so everything queued in between leaves in one write. The
//! writers never wait for a socket (a slow one is parked for its own task, see
//! `outbound`), and each yields to the runtime every few connections, so the publish
//! path (HTTP handler, log, ingest) runs between the writes instead of behind all of
//! them, and the next event's frames join the writes still to come.
//!
//! The writers are the node's tasks like the relay and the ingest: spawned on its
//! task tracker and ended by its shutdown (or when the node is dropped), so a
//! graceful shutdown waits for them too. A connection closing at shutdown writes its
//! own queue, events included, with its close frame.

use std::{
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::outbound::Outbound;

/// Connections written between two yields to the runtime.
const CONNECTIONS_PER_TURN: usize = 32;

/// One writer: its list of connections to visit and the task that visits them.
#[derive(Default)]
pub(crate) struct Writer {
    waiting: Mutex<Vec<Arc<Outbound>>>,
    wake: Notify,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Puts `outbound` on the list (it just went from nothing queued to something).
    pub(crate) fn enqueue(&self, outbound: Arc<Outbound>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = waiting.is_empty();
        waiting.push(outbound);
        drop(waiting);
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> Vec<Arc<Outbound>> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let waiting = self.take();
            if waiting.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = stop.cancelled() => {}
                }
                continue;
            }
            for turn in waiting.chunks(CONNECTIONS_PER_TURN) {
                // Plain reads first, whose cache misses overlap, before the writes'
                // locks and system calls, which would wait for each in turn.
                for outbound in turn {
                    outbound.warm();
                }
                for outbound in turn {
                    outbound.write_waiting();
                }
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The writers of one node. Their tasks start with the first connection (inside the
/// runtime) and end at the node's shutdown or when this is dropped.
pub(crate) struct Writers {
    writers: OnceLock<Vec<Arc<Writer>>>,
    next: AtomicUsize,
    /// Where the writer tasks are spawned.
    tasks: TaskTracker,
    /// Cancelled at the node's shutdown (its parent) or when this is dropped.
    stop: CancellationToken,
}

impl fmt::Debug for Writers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writers").finish_non_exhaustive()
    }
}

impl Writers {
    /// Writers whose tasks run on `tasks` until `shutdown`.
    pub(crate) fn new(tasks: TaskTracker, shutdown: &CancellationToken) -> Self {
        Self {
            writers: OnceLock::new(),
            next: AtomicUsize::new(0),
            tasks,
            stop: shutdown.child_token(),
        }
    }

    /// The writer for a new connection (round robin).
    pub(crate) fn assign(&self) -> Arc<Writer> {
        let writers = self.writers.get_or_init(|| {
            // One per worker thread: more would only take turns on the same threads.
            let count = tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .max(1);
            (0..count)
                .map(|_| {
                    let writer = Arc::new(Writer::default());
                    self.tasks.spawn(writer.clone().run(self.stop.clone()));
                    writer
                })
                .collect()
        });
        let i = self.next.fetch_add(1, Ordering::Relaxed) % writers.len();
        writers[i].clone()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::{sync::CancellationToken, task::TaskTracker};

    use super::Writers;

    /// Waits for every task on `tasks`, at most 5 s; whether they all ended.
    async fn all_ended(tasks: &TaskTracker) -> bool {
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .is_ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writers_are_the_nodes_tasks_and_end_at_its_shutdown() {
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let writers = Writers::new(tasks.clone(), &shutdown);
        assert!(tasks.is_empty(), "no writer before the first connection");
        writers.assign();
        writers.assign();
        assert_eq!(
            tasks.len(),
            2,
            "one writer per worker thread, on the tracker"
        );
        shutdown.cancel();
        assert!(all_ended(&tasks).await, "the writers outlived the shutdown");
        // A connection that races the shutdown still gets a writer (and, closing at
        // once, writes its own queue with its close frame).
        writers.assign();
    }

    #[tokio::test]
    async fn the_writers_end_when_the_node_is_dropped_without_a_shutdown() {
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let writers = Writers::new(tasks.clone(), &shutdown);
        writers.assign();
        assert_eq!(tasks.len(), 1);
        drop(writers);
        assert!(all_ended(&tasks).await, "the writer outlived its node");
        assert!(
            !shutdown.is_cancelled(),
            "the node's own token is left alone"
        );
    }
}
