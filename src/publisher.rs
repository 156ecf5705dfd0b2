//! Sending a custom event once it is validated: collection and topic events are
//! appended to the log and the relay is woken; connection and user events go to the
//! broker, which rings every node (they are not logged). Disconnecting a user rides
//! the broker the same way.

use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    broadcast::{BroadcastError, Prepared},
    broker::{Broker, BrokerError, BrokerMessage},
    db::Db,
    event::{DirectEvent, LogEntry},
    log::{RelaySignal, SqliteAppender, outbox},
    model::Tx,
    write_turns::WriteTurns,
};

/// Appends to the log and wakes the relay, or publishes to the broker. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Publisher {
    log: LogWriter,
    signal: RelaySignal,
    broker: Arc<dyn Broker>,
}

/// Where a broadcast outside a transaction is written.
#[derive(Clone)]
enum LogWriter {
    /// The node's appender task, which writes the broadcasts waiting at once together.
    Sqlite(SqliteAppender),
    /// Any pooled connection: Postgres takes many writers at once.
    Postgres(PgPool),
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// On SQLite, starts the node's appender task, which writes on `turns`.
    pub(crate) fn new(
        db: Db,
        signal: RelaySignal,
        broker: Arc<dyn Broker>,
        turns: WriteTurns,
    ) -> Self {
        let log = match db {
            Db::Sqlite(pool) => {
                LogWriter::Sqlite(SqliteAppender::spawn(pool, turns, signal.clone()))
            }
            Db::Postgres(pool) => LogWriter::Postgres(pool),
        };
        Self {
            log,
            signal,
            broker,
        }
    }

    /// Sends `prepared` now. A logged event is durable once this returns.
    pub(crate) async fn send(&self, prepared: Prepared) -> Result<(), BroadcastError> {
        match prepared {
            Prepared::Logged(event) => self.append(event).await?,
            Prepared::Direct(event) => self.send_direct(event).await?,
        }
        Ok(())
    }

    /// Sends `prepared` only if `tx` commits: a logged event is written inside `tx`; a
    /// direct one is published right after the commit, never after a rollback.
    pub(crate) async fn send_in(
        &self,
        tx: &mut Tx,
        prepared: Prepared,
    ) -> Result<(), BroadcastError> {
        match prepared {
            Prepared::Logged(event) => tx.record(&event).await?,
            Prepared::Direct(event) => {
                let publisher = self.clone();
                tx.after_commit(move || {
                    tokio::spawn(async move {
                        if let Err(e) = publisher.send_direct(event).await {
                            tracing::warn!(error = %e, "broadcast after commit failed");
                        }
                    });
                });
            }
        }
        Ok(())
    }

    /// Tells every node, this one included, to end `user`'s connections. At most once,
    /// like every broker message: the caller ends this node's at once itself.
    pub(crate) async fn disconnect_user(&self, user: &str) -> Result<(), BrokerError> {
        let message = BrokerMessage::Disconnect {
            user: user.to_owned(),
        };
        self.broker.publish(message.encode()).await
    }

    async fn send_direct(&self, event: DirectEvent) -> Result<(), BroadcastError> {
        let message = BrokerMessage::Direct { event };
        self.broker.publish(message.encode()).await?;
        Ok(())
    }

    /// Writes `event` to the log in a transaction of its own (on SQLite shared with
    /// the broadcasts made at the same time), and wakes the relay (on SQLite the
    /// appender hands it the event with the seq its insert gave it).
    async fn append(&self, event: LogEntry) -> sqlx::Result<()> {
        match &self.log {
            LogWriter::Sqlite(appender) => appender.append(event).await?,
            LogWriter::Postgres(pool) => {
                outbox::insert_postgres(&mut *pool.acquire().await?, &event).await?;
                self.signal.wake();
            }
        }
        Ok(())
    }
}
