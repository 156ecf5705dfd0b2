//! The node's socket writers: a few tasks (one per runtime worker thread) that write
//! out the WebSocket connections the fan-out queued events for.
//!
//! In a node each writer is also its hub shard's runner: it fans each event out to
//! the shard's receivers itself, then writes them, so a connection's queue and socket
//! stay with one task (see `hub::runners`). A connection is given the writer of the
//! shard it is registered in.
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
use crate::hub::Hub;

/// Connections written between two yields to the runtime.
const CONNECTIONS_PER_TURN: usize = 32;

/// One writer: its list of connections to visit and the task that visits them.
#[derive(Default)]
pub(crate) struct Writer {
    /// Its place among the node's writers: the hub shard it runs.
    index: usize,
    waiting: Mutex<Vec<Arc<Outbound>>>,
    /// Notified when a connection joins the list or the shard has work.
    wake: Arc<Notify>,
    /// The hub whose shard `index` this writer runs, in a node.
    hub: Option<Arc<Hub>>,
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

    /// The hub shard this writer runs: its connections are registered there.
    pub(crate) fn shard(&self) -> usize {
        self.index
    }

    fn take(&self) -> Vec<Arc<Outbound>> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs the shard's waiting fan-outs, which queue frames for its connections;
    /// whether there were any.
    fn fan_out(&self) -> bool {
        self.hub
            .as_ref()
            .is_some_and(|hub| hub.run_queued(self.index))
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        // However the task ends, a shutdown or a panic, the hub stops queueing work
        // for it: a feeder waiting for room would otherwise wait for ever.
        let _detach = Detach(self.hub.clone());
        while !stop.is_cancelled() {
            let fanned_out = self.fan_out();
            let waiting = self.take();
            if waiting.is_empty() {
                if !fanned_out {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = stop.cancelled() => {}
                    }
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
                // Events given meanwhile join the writes still to come.
                self.fan_out();
            }
        }
    }
}

/// Tells the hub, when dropped, that its shard's runner is gone: the hub then does the
/// shards' work at once.
struct Detach(Option<Arc<Hub>>);

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(hub) = &self.0 {
            hub.detach_runners();
        }
    }
}

/// The writers of one node. Their tasks start at once (a node's, [`Writers::running`])
/// or with the first connection (inside the runtime), and end at the node's shutdown
/// or when this is dropped.
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
    /// Writers whose tasks run on `tasks` until `shutdown`, started with the first
    /// connection, one per worker thread.
    pub(crate) fn new(tasks: TaskTracker, shutdown: &CancellationToken) -> Self {
        Self {
            writers: OnceLock::new(),
            next: AtomicUsize::new(0),
            tasks,
            stop: shutdown.child_token(),
        }
    }

    /// One writer per shard of `hub`, each running its shard's fan-out (see
    /// `hub::runners`), started now: SSE streams need the fan-out before any
    /// WebSocket connects. Must be called inside the runtime.
    pub(crate) fn running(
        hub: &Arc<Hub>,
        tasks: TaskTracker,
        shutdown: &CancellationToken,
    ) -> Self {
        let writers = Self::new(tasks, shutdown);
        let started: Vec<Arc<Writer>> = (0..hub.shard_count())
            .map(|index| {
                Arc::new(Writer {
                    index,
                    hub: Some(hub.clone()),
                    ..Writer::default()
                })
            })
            .collect();
        hub.attach_runners(started.iter().map(|w| w.wake.clone()).collect());
        for writer in &started {
            writers
                .tasks
                .spawn(writer.clone().run(writers.stop.clone()));
        }
        let _ = writers.writers.set(started);
        writers
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
                .map(|index| {
                    let writer = Arc::new(Writer {
                        index,
                        ..Writer::default()
                    });
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn running_writers_fan_out_their_shards_from_the_start_until_the_shutdown() {
        use std::sync::Arc;

        use serde_json::json;
        use tokio::sync::mpsc;

        use crate::{
            auth::Principal,
            close::Closer,
            event::{Cursor, Event, LogEntry},
            hub::{Hub, Inbox, Receiver, ReceiverKind},
            metrics::Metrics,
            rules::{Rule, Rules},
            topic::Pattern,
        };

        let rules = Rules::new().collection("todos", Rule::Public, Rule::Deny);
        let hub =
            Arc::new(Hub::new(Arc::new(rules), Arc::new(Metrics::default()), 0).with_shards(2));
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let _writers = Writers::running(&hub, tasks.clone(), &shutdown);
        assert_eq!(tasks.len(), 2, "one per shard, before any connection");
        // Two SSE streams, one per shard: no WebSocket ever connects.
        let mut queues = Vec::new();
        for id in ["c1", "c2"] {
            let (queue, far_end) = mpsc::channel(8);
            let key = hub.connect_as(
                Receiver {
                    id: Arc::from(id),
                    principal: Arc::new(Principal::anonymous()),
                    inbox: Inbox::Queue(queue),
                    closer: Closer::default(),
                },
                ReceiverKind::Sse,
            );
            let pattern = Arc::new(Pattern::parse("todos:*").expect("valid"));
            hub.subscribe(key, Arc::from("s"), pattern).expect("fresh");
            queues.push(far_end);
        }
        let event = |seq| {
            let cursor = Cursor {
                epoch: Arc::from("e1"),
                seq,
            };
            let entry: LogEntry = serde_json::from_value(json!({
                "collection": "todos", "key": "1", "action": "update", "payload": {}, "acl": {},
                "ts": "2026-12-02T00:00:00Z"
            }))
            .expect("a log entry");
            Event::logged(&cursor, entry)
        };

        hub.publish(&event(1));
        for queue in &mut queues {
            let got = tokio::time::timeout(Duration::from_secs(5), queue.recv()).await;
            assert_eq!(got.expect("delivered").expect("open").event.seq, Some(1));
        }
        assert!(hub.reach_position(1, Duration::from_secs(5)).await);

        shutdown.cancel();
        assert!(all_ended(&tasks).await, "the writers outlived the shutdown");
        // Nobody runs the shards now: the hub delivers at once.
        hub.publish(&event(2));
        assert_eq!(hub.position(), 2);
        assert_eq!(queues[0].try_recv().expect("delivered").event.seq, Some(2));
    }
}
