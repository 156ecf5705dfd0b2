//! The node's socket writers: a few tasks (one per runtime worker thread) that write
//! out the WebSocket connections the fan-out queued events for.
//!
//! A connection is on one writer's list from the first frame queued for it until that
//! writer's next visit, so everything queued in between leaves in one write. The
//! writers never wait for a socket (a slow one is parked for its own task, see
//! `outbound`), and each yields to the runtime every few connections, so the publish
//! path (HTTP handler, log, ingest) runs between the writes instead of behind all of
//! them, and the next event's frames join the writes still to come.

use std::{
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;

use super::outbound::Outbound;

/// Connections written between two yields to the runtime.
const CONNECTIONS_PER_TURN: usize = 32;

/// One writer: its list of connections to visit and the task that visits them.
#[derive(Default)]
pub(crate) struct Writer {
    waiting: Mutex<Vec<Arc<Outbound>>>,
    wake: Notify,
    stopped: AtomicBool,
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

    async fn run(self: Arc<Self>) {
        while !self.stopped.load(Ordering::Acquire) {
            let waiting = self.take();
            if waiting.is_empty() {
                self.wake.notified().await;
                continue;
            }
            for (i, outbound) in waiting.into_iter().enumerate() {
                outbound.write_waiting();
                if i % CONNECTIONS_PER_TURN == CONNECTIONS_PER_TURN - 1 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// The writers of one node. Their tasks start with the first connection (inside the
/// runtime) and end when this is dropped.
#[derive(Default)]
pub(crate) struct Writers {
    writers: OnceLock<Vec<Arc<Writer>>>,
    next: AtomicUsize,
}

impl fmt::Debug for Writers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writers").finish_non_exhaustive()
    }
}

impl Writers {
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
                    tokio::spawn(writer.clone().run());
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
        for writer in self.writers.get().into_iter().flatten() {
            writer.stopped.store(true, Ordering::Release);
            writer.wake.notify_one();
        }
    }
}
