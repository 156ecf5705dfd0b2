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
//!
//! Each caller waits for its write turn as long as any writer does (the pool's busy
//! timeout), counted from its call: a broadcast still waiting for the turn when its
//! time is up is failed and left out of the batch, so a transaction left open fails
//! each broadcast after that long, however many batches were queued before it.
//!
//! The task keeps the connection it wrote with while broadcasts keep coming: giving a
//! connection back to sqlx's pool costs a spawned task and a round trip to the
//! connection's thread (the pool pings it), 8-15% of the throughput with broadcasts
//! back to back (`docs/benchmarks.md`). It never waits for a turn with that connection
//! in hand, since the writer holding the turn may be waiting for a connection, and it
//! gives the connection back once no broadcast came for [`KEEP_IDLE`], and after each
//! batch if the pool has only one (an in-memory database) or is being closed.

use std::{io, time::Duration};

use sqlx::{Sqlite, SqlitePool, pool::PoolConnection};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{
    RelaySignal,
    outbox::{self, SQLITE_MAX_BATCH},
};
use crate::{
    event::LogEntry,
    write_turns::{WriteTurn, WriteTurns},
};

/// Broadcasts that may wait for the appender at once; a caller past them waits for
/// room. Each is an event its caller already holds, so this bounds a queue of events
/// in memory that the callers' own limits (publish rate, payload size) bound in bytes.
const QUEUE_CAPACITY: usize = 1024;

/// How long the task keeps its connection once no broadcast is waiting: longer than
/// the gaps between broadcasts published steadily, short enough that a pool closed
/// at shutdown waits no longer than this for it.
const KEEP_IDLE: Duration = Duration::from_millis(50);

/// A broadcast waiting to be written, and where its outcome goes.
struct Pending {
    event: LogEntry,
    /// When its caller's wait for a turn runs out.
    deadline: Instant,
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
    turns: WriteTurns,
}

impl SqliteAppender {
    /// Starts the appender task on the current runtime. It writes with `pool` on
    /// `turns` and hands each batch to the relay through `signal`.
    pub(crate) fn spawn(pool: SqlitePool, turns: WriteTurns, signal: RelaySignal) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(append_batches(pool, turns.clone(), signal, waiting));
        Self { queue, turns }
    }

    /// Writes `event` to the log; it is durable once this returns `Ok`, and not
    /// written if this fails. Dropping the future does not withdraw an event already
    /// queued.
    pub(crate) async fn append(&self, event: LogEntry) -> sqlx::Result<()> {
        let deadline = Instant::now() + self.turns.patience();
        let (written, outcome) = oneshot::channel();
        let pending = Pending {
            event,
            deadline,
            written,
        };
        tokio::time::timeout_at(deadline, self.queue.send(pending))
            .await
            .map_err(|_| self.turns.no_turn())?
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
    // A pool of one connection (an in-memory database) has none to spare.
    let may_keep = pool.options().get_max_connections() > 1;
    let mut kept: Option<PoolConnection<Sqlite>> = None;
    let mut batch = Vec::with_capacity(SQLITE_MAX_BATCH);
    while next_batch(&mut waiting, &mut batch, &mut kept).await {
        let Some(turn) = turn_for(&turns, &mut batch, &mut kept).await else {
            continue;
        };
        let (events, callers): (Vec<LogEntry>, Vec<_>) = batch
            .drain(..)
            .map(|pending| (pending.event, pending.written))
            .unzip();
        let outcome = match write(&pool, &mut kept, turn, &events).await {
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
        // A pool being closed waits for every connection to come back.
        if !may_keep || pool.is_closed() {
            kept = None;
        }
    }
}

/// Waits for broadcasts and takes those waiting, a batch's worth at most; `false` once
/// the queue is closed and empty. A kept connection is given back if none comes for
/// [`KEEP_IDLE`].
async fn next_batch(
    waiting: &mut mpsc::Receiver<Pending>,
    batch: &mut Vec<Pending>,
    kept: &mut Option<PoolConnection<Sqlite>>,
) -> bool {
    if kept.is_some() {
        // `recv_many` is cancel safe: nothing is lost when the wait runs out.
        match tokio::time::timeout(KEEP_IDLE, waiting.recv_many(batch, SQLITE_MAX_BATCH)).await {
            Ok(received) => return received > 0,
            Err(_) => *kept = None,
        }
    }
    waiting.recv_many(batch, SQLITE_MAX_BATCH).await > 0
}

/// The write turn for `batch`. With a connection in hand only a turn that is free at
/// once: otherwise the connection goes back to the pool first, since the writer
/// holding the turn may be waiting for one.
async fn turn_for(
    turns: &WriteTurns,
    batch: &mut Vec<Pending>,
    kept: &mut Option<PoolConnection<Sqlite>>,
) -> Option<WriteTurn> {
    if kept.is_some() {
        if let Some(turn) = turns.try_take() {
            return Some(turn);
        }
        *kept = None;
    }
    take_turn(turns, batch).await
}

/// Waits for a write turn for `batch`, failing and removing each broadcast whose
/// deadline passes first; `None` once none is left.
async fn take_turn(turns: &WriteTurns, batch: &mut Vec<Pending>) -> Option<WriteTurn> {
    loop {
        let earliest = batch.iter().map(|pending| pending.deadline).min()?;
        match turns.take_by(earliest).await {
            Ok(turn) => return Some(turn),
            Err(error) => {
                let now = Instant::now();
                let failure = Failure::from(&error);
                let before = batch.len();
                for expired in batch.extract_if(.., |pending| pending.deadline <= now) {
                    let _ = expired.written.send(Err(failure.clone()));
                }
                // Not the wait running out (the queue closed, which it never does):
                // nobody in the batch can get a turn.
                if batch.len() == before {
                    for pending in batch.drain(..) {
                        let _ = pending.written.send(Err(failure.clone()));
                    }
                }
            }
        }
    }
}

/// Writes `events` on `turn` with the kept connection, or one from the pool that is
/// kept from then on; returns their seqs in order. A connection whose statement
/// failed goes back to the pool, which checks it.
async fn write(
    pool: &SqlitePool,
    kept: &mut Option<PoolConnection<Sqlite>>,
    turn: WriteTurn,
    events: &[LogEntry],
) -> sqlx::Result<Vec<u64>> {
    let conn = match kept {
        Some(conn) => conn,
        None => kept.insert(pool.acquire().await?),
    };
    let seqs = outbox::insert_sqlite_batch(conn, events).await;
    drop(turn);
    if seqs.is_err() {
        *kept = None;
    }
    seqs
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    /// Appends `name` and says when it was answered.
    fn append_at(
        appender: &SqliteAppender,
        name: &str,
    ) -> tokio::task::JoinHandle<(Instant, sqlx::Result<()>)> {
        let (appender, event) = (
            appender.clone(),
            LogEntry::broadcast("todos", None, name, json!(null)),
        );
        tokio::spawn(async move {
            let outcome = appender.append(event).await;
            (Instant::now(), outcome)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn each_broadcast_waits_for_a_turn_as_long_as_the_patience_from_its_own_call() {
        let turns = WriteTurns::new(Duration::from_secs(10));
        let _held = turns.take().await.expect("a free turn");
        // Never connected: no broadcast gets a turn, so none reaches the database.
        let pool = SqlitePool::connect_lazy("sqlite::memory:").expect("a lazy pool");
        let appender = SqliteAppender::spawn(pool, turns, RelaySignal::with_capacity(8));
        let start = Instant::now();
        let first = append_at(&appender, "first");
        tokio::time::sleep(Duration::from_secs(4)).await;
        let second = append_at(&appender, "second");

        let (first_at, first_outcome) = first.await.expect("the first caller");
        let (second_at, second_outcome) = second.await.expect("the second caller");
        for outcome in [first_outcome, second_outcome] {
            let message = outcome.expect_err("no turn came").to_string();
            assert!(
                message.contains("no turn to write to SQLite within 10s"),
                "{message}"
            );
        }
        // Each after its own 10 s: the second is not held up by the first's failure.
        let waited = |at: Instant| at.duration_since(start).as_secs();
        assert_eq!(waited(first_at), 10);
        assert_eq!(waited(second_at), 14);
    }
}
