//! SQLite: a node's broadcasts are written to the log by one task, as many as are
//! waiting in one statement.
//!
//! SQLite lets one writer in at a time, so broadcasts made at once queue for their
//! write turn (`write_turns`). Each waiter used to get in, make its round trip to the
//! connection's thread and commit on its own: with 16 broadcasts in flight, the queue's
//! hand-offs between tasks cost 16% of what the node published without it
//! (`docs/benchmarks.md`, "SQLite writers take turns"). Here the broadcasts waiting at
//! once share one turn, one statement and one commit, and the next batch forms while
//! this one is written.
//!
//! The writing runs in a task of its own rather than in one of the waiting callers, so
//! a caller that is dropped mid-write (an HTTP client that hung up) cannot leave the
//! others without an answer.

use std::io;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{
    RelaySignal,
    outbox::{self, SQLITE_MAX_BATCH},
};
use crate::{event::LogEntry, write_turns::WriteTurns};

/// Broadcasts that may wait for the appender at once; a caller past them waits for
/// room. Each is an event its caller already holds, so this bounds a queue of events
/// in memory that the callers' own limits (publish rate, payload size) bound in bytes.
const QUEUE_CAPACITY: usize = 1024;

/// A broadcast waiting to be written, and where its outcome goes.
struct Pending {
    event: LogEntry,
    written: oneshot::Sender<Result<(), Failure>>,
}

/// Why a batch was not written, told to each of its callers (`sqlx::Error` is not
/// `Clone`).
#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    message: String,
}

impl From<&sqlx::Error> for Failure {
    fn from(error: &sqlx::Error) -> Self {
        match error {
            // A turn that never came, or the link to the database: keep the kind.
            sqlx::Error::Io(io) => Self {
                kind: io.kind(),
                message: io.to_string(),
            },
            other => Self {
                kind: io::ErrorKind::Other,
                message: other.to_string(),
            },
        }
    }
}

impl From<Failure> for sqlx::Error {
    fn from(failure: Failure) -> Self {
        sqlx::Error::Io(io::Error::new(failure.kind, failure.message))
    }
}

/// The queue into the node's appender task. Cheap to clone; the task ends once every
/// clone is dropped and the queue is empty.
#[derive(Debug, Clone)]
pub(crate) struct SqliteAppender {
    queue: mpsc::Sender<Pending>,
}

impl SqliteAppender {
    /// Starts the appender task on the current runtime. It writes with `pool` on
    /// `turns` and hands each batch to the relay through `signal`.
    pub(crate) fn spawn(pool: SqlitePool, turns: WriteTurns, signal: RelaySignal) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(append_batches(pool, turns, signal, waiting));
        Self { queue }
    }

    /// Writes `event` to the log; it is durable once this returns `Ok`. Dropping the
    /// future does not withdraw an event already queued.
    pub(crate) async fn append(&self, event: LogEntry) -> sqlx::Result<()> {
        let (written, outcome) = oneshot::channel();
        self.queue
            .send(Pending { event, written })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // No outcome: the task is gone, which happens only as the runtime shuts down.
        outcome.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(())
    }
}

/// The appender task: takes every broadcast waiting (at most a batch's worth), writes
/// them in one statement on one write turn, hands them to the relay with their seqs
/// and tells each caller.
async fn append_batches(
    pool: SqlitePool,
    turns: WriteTurns,
    signal: RelaySignal,
    mut waiting: mpsc::Receiver<Pending>,
) {
    let mut batch = Vec::with_capacity(SQLITE_MAX_BATCH);
    while waiting.recv_many(&mut batch, SQLITE_MAX_BATCH).await > 0 {
        let (events, callers): (Vec<LogEntry>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.event, pending.written))
            .unzip();
        let outcome = match write(&pool, &turns, &events).await {
            Ok(seqs) => {
                signal.hand_off(seqs.into_iter().zip(events).collect());
                Ok(())
            }
            Err(error) => Err(Failure::from(&error)),
        };
        for caller in callers {
            // A caller that stopped waiting needs no answer.
            let _ = caller.send(outcome.clone());
        }
    }
}

/// Writes `events` on a turn of their own; returns their seqs in order.
async fn write(
    pool: &SqlitePool,
    turns: &WriteTurns,
    events: &[LogEntry],
) -> sqlx::Result<Vec<u64>> {
    let _turn = turns.take().await?;
    outbox::insert_sqlite_batch(&mut *pool.acquire().await?, events).await
}
