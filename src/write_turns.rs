//! Turns to write to SQLite, taken in order by a node's own writers.
//!
//! SQLite lets one writer in at a time. A connection that finds the database locked
//! sleeps in SQLite's busy handler and tries again after 1, 2, 5, 10 ms and longer,
//! however soon the lock comes free: with four broadcasts published at once, most of
//! the slowest publishes' time went to those sleeps (`docs/benchmarks.md`, "SQLite
//! writers take turns"). Here the node's writers (broadcasts, the model store's
//! transactions, snapshots and recorded events, the relay's pruning) queue for a turn
//! first and are let in the moment the previous one is done. Writers outside the node
//! (another process, the app's own SQL on the pool) still meet in the busy handler.

use std::{io, sync::Arc, time::Duration};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// One node's queue of SQLite writers. Cheap to clone; clones share the queue.
#[derive(Debug, Clone)]
pub(crate) struct WriteTurns {
    queue: Arc<Semaphore>,
    /// How long a writer waits for its turn before it gives up: the pool's busy
    /// timeout, so a transaction left open fails its waiters as SQLite would.
    patience: Duration,
}

/// The right to write until dropped: held across a whole transaction.
#[derive(Debug)]
pub(crate) struct WriteTurn {
    _permit: OwnedSemaphorePermit,
}

impl WriteTurns {
    pub(crate) fn new(patience: Duration) -> Self {
        Self {
            queue: Arc::new(Semaphore::new(1)),
            patience,
        }
    }

    /// How long a writer waits for its turn at most.
    pub(crate) fn patience(&self) -> Duration {
        self.patience
    }

    /// Waits for this writer's turn (first come, first served), at most `patience`.
    /// A writer that asks while it holds a turn itself waits out the patience: one
    /// task may hold only one transaction on SQLite at a time.
    pub(crate) async fn take(&self) -> sqlx::Result<WriteTurn> {
        self.take_by(Instant::now() + self.patience).await
    }

    /// Waits for a turn until `deadline` at most: for a writer that began waiting
    /// before it asked here (a broadcast queued for the appender).
    pub(crate) async fn take_by(&self, deadline: Instant) -> sqlx::Result<WriteTurn> {
        match tokio::time::timeout_at(deadline, self.queue.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(WriteTurn { _permit: permit }),
            // The queue is never closed; kept as an error rather than a panic.
            Ok(Err(_)) => Err(sqlx::Error::PoolClosed),
            Err(_) => Err(self.no_turn()),
        }
    }

    /// The turn if it is free and nobody waits for it, without waiting: for a writer
    /// that must not wait while it holds something another writer may need.
    pub(crate) fn try_take(&self) -> Option<WriteTurn> {
        let permit = self.queue.clone().try_acquire_owned().ok()?;
        Some(WriteTurn { _permit: permit })
    }

    /// The error of a writer that waited out the patience.
    pub(crate) fn no_turn(&self) -> sqlx::Error {
        sqlx::Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no turn to write to SQLite within {:?}: another write of this node \
                 kept it that long (a transaction left open?)",
                self.patience
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn writers_get_their_turns_in_the_order_they_asked() {
        let turns = WriteTurns::new(Duration::from_secs(5));
        let first = turns.take().await.expect("a free turn");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for writer in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            let (asked, asked_rx) = tokio::sync::oneshot::channel();
            waiting.push(tokio::spawn(async move {
                let take = turns.take();
                tokio::pin!(take);
                // Polled once, so it is queued before the next writer asks.
                assert!(futures::poll!(take.as_mut()).is_pending());
                asked.send(()).expect("the test waits");
                let _turn = take.await.expect("a turn");
                order.lock().unwrap().push(writer);
            }));
            asked_rx.await.expect("the writer asked");
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "nobody writes while a turn is held"
        );
        drop(first);
        for writer in waiting {
            writer.await.expect("the writer ends");
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_kept_waiting_past_the_patience_gets_a_clear_error() {
        let turns = WriteTurns::new(Duration::from_secs(10));
        let _held = turns.take().await.expect("a free turn");
        let error = turns.take().await.expect_err("the turn is never free");
        let message = error.to_string();
        assert!(
            message.contains("no turn to write to SQLite within 10s"),
            "{message}"
        );
        assert!(message.contains("transaction left open"), "{message}");
    }

    #[tokio::test]
    async fn a_turn_given_back_goes_to_a_waiting_writer_before_one_that_tries() {
        let turns = WriteTurns::new(Duration::from_secs(5));
        let held = turns.take().await.expect("a free turn");
        assert!(turns.try_take().is_none(), "the turn is held");
        let waiter = turns.take();
        tokio::pin!(waiter);
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(held);
        assert!(
            turns.try_take().is_none(),
            "the writer that waited is served first"
        );
        drop(waiter.await.expect("the waiting writer's turn"));
        assert!(turns.try_take().is_some(), "nobody else wants it");
    }

    #[tokio::test]
    async fn a_turn_given_back_is_taken_by_the_next_writer() {
        let turns = WriteTurns::new(Duration::from_secs(5));
        drop(turns.take().await.expect("a free turn"));
        turns.take().await.expect("the turn came back");
    }
}
