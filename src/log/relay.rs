//! The relay: sees that committed outbox rows have a gapless `seq`, in the order they
//! became visible, then rings the broker's doorbell.
//!
//! On Postgres it numbers them itself. It selects *unsequenced* rows, never `id >
//! last`: ids are assigned at insert, not at commit, so a row with a smaller id can
//! become visible later. The meta row is locked for the whole sequencing transaction,
//! so several nodes running a relay on one database take turns and never hand out a
//! seq twice; a node that dies, hangs or is cut off while holding it holds the others
//! up for at most `log.sequencer_timeout` (see `sequence_postgres`).
//!
//! A Postgres relay numbers *settled* rows without waiting for its own flush to disk:
//! rows whose writer's xid is below every transaction still running, in (xid, id)
//! order. No later commit can add a row that sorts before a settled one, so that order
//! is fixed once a row is settled, and a crash that loses the last numberings (their
//! commits were not flushed yet) loses a suffix of them, which the relay then numbers
//! again with the same seqs: whoever saw them saw what the log will hold. Rows are
//! flushed by their own commit (a trigger keeps `synchronous_commit` from being off
//! in a transaction that writes events). Rows that stay unsettled for
//! `log.relay_settle` (a long transaction elsewhere holds the horizon back) are
//! numbered the old way: every visible row, committed with a flush, which also makes
//! every numbering before it durable.
//!
//! On SQLite writes are serialized, so the insert itself numbers each row (its seq is
//! the row id) and the relay never writes: no second write per event, and no turn at
//! the write lock. The crate's writers hand it their committed events with their seqs
//! (`RelaySignal::hand_off`), and it publishes them as they are when they follow on
//! from the last one it published; only when one is missing (a row written by the
//! app's own SQL or a capture trigger, or a writer that has not handed off yet) does
//! it read the rows after that one from the log.
//!
//! On Postgres, commits that keep coming share batches: after a batch with rows the
//! relay lingers for the rest of `log.relay_linger` before the next, so a busy writer
//! does not pay a sequencing transaction per commit (measured: without the linger a
//! lone writer's store writes fell by about 15%, flush or not). SQLite's
//! relay only reads, which costs little enough that lingering would only add latency.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{Broker, BrokerMessage},
    config::LogConfig,
    db::Db,
    event::LogEntry,
    log::{
        RelaySignal,
        reader::{self, to_i64},
        snapshot,
    },
    metrics::Metrics,
    write_turns::WriteTurns,
};

/// Why the relay looks for rows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cue {
    /// At start, on a poll, at shutdown: nothing says rows are waiting.
    Poll,
    /// A commit woke it (on SQLite, having handed off its events or said it could not).
    Commit,
    /// The last batch was full, so more rows may be waiting in the log.
    MoreWaiting,
    /// Postgres: number every visible row, with a flush of its own: rows have waited
    /// `log.relay_settle` without settling, or the node is stopping.
    Unsettled,
}

/// What one turn of the relay found.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The log's epoch (empty when no events were found).
    pub(crate) epoch: String,
    /// The events to publish, in seq order.
    pub(crate) events: Vec<(u64, LogEntry)>,
    /// Postgres: visible rows were left unnumbered because they are not settled yet.
    pub(crate) unsettled: bool,
}

/// Sequences and publishes committed outbox rows.
pub(crate) struct Relay {
    db: Db,
    broker: Arc<dyn Broker>,
    signal: RelaySignal,
    config: LogConfig,
    metrics: Arc<Metrics>,
    /// SQLite: the node's writers' turns, which pruning takes.
    turns: WriteTurns,
    /// SQLite: the last seq this relay published. Rows up to the log's position when
    /// the node started are the hub's already (it starts there), or a resume's.
    published: AtomicU64,
    /// SQLite: the log's epoch as last read, which events handed off are published
    /// under (it changes only when the log is reset, which a read notices).
    epoch: Mutex<String>,
}

impl Relay {
    /// A relay over `db` publishing to `broker`; `(epoch, position)` is the log's
    /// epoch and last seq when the node started.
    pub(crate) fn new(
        db: Db,
        broker: Arc<dyn Broker>,
        signal: RelaySignal,
        config: LogConfig,
        metrics: Arc<Metrics>,
        turns: WriteTurns,
        (epoch, position): (&str, u64),
    ) -> Self {
        Self {
            db,
            broker,
            signal,
            config,
            metrics,
            turns,
            published: AtomicU64::new(position),
            epoch: Mutex::new(epoch.to_owned()),
        }
    }

    /// Runs until `shutdown`: sequences whenever woken by a commit, and on every poll
    /// interval, so rows committed by a process that died before relaying (or by
    /// another node) are never stranded.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        // Prune once a tenth of the retention window has been added, in events or in
        // bytes, so the table stays within ~110% of `retention` and `retention_bytes`
        // without a DELETE per batch.
        let prune_every = (self.config.retention / 10).max(1);
        let prune_every_bytes = (self.config.retention_bytes / 10).max(1);
        let mut sequenced_since_prune: u64 = 0;
        let mut bytes_since_prune: u64 = 0;
        // At start nothing says rows are waiting.
        let mut cue = Cue::Poll;
        // When the last batch that found rows began.
        let mut last_rows: Option<Instant> = None;
        // Postgres: since when rows have been left unsettled, batch after batch.
        let mut unsettled_since: Option<Instant> = None;
        loop {
            let began = Instant::now();
            match self.sequence_batch(cue).await {
                Ok(Batch {
                    epoch,
                    events: batch,
                    unsettled,
                }) => {
                    if !batch.is_empty() {
                        last_rows = Some(began);
                    }
                    // The clock runs from the first batch that left rows unsettled, so
                    // commits that keep coming cannot put their numbering off forever.
                    unsettled_since = unsettled.then(|| unsettled_since.unwrap_or(began));
                    let full = batch.len() >= self.config.relay_batch as usize;
                    sequenced_since_prune += batch.len() as u64;
                    let bytes = self.publish(&epoch, batch).await;
                    bytes_since_prune = bytes_since_prune.saturating_add(bytes as u64);
                    if sequenced_since_prune >= prune_every
                        || bytes_since_prune >= prune_every_bytes
                    {
                        sequenced_since_prune = 0;
                        bytes_since_prune = 0;
                        if let Err(e) = self.prune().await {
                            tracing::warn!(error = %e, "pruning the event log failed");
                        }
                    }
                    if full {
                        cue = Cue::MoreWaiting;
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay: sequencing failed; will retry");
                    // Retried at the next wake-up or poll, not at once: the clock
                    // starts again with the next batch that leaves rows unsettled.
                    unsettled_since = None;
                }
            }
            let settle_by = unsettled_since.map(|since| since + self.config.relay_settle);
            if settle_by.is_some_and(|by| by <= Instant::now()) {
                cue = Cue::Unsettled;
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    // Hand out what was committed up to now before stopping.
                    if let Ok(batch) = self.sequence_batch(Cue::Unsettled).await {
                        self.publish(&batch.epoch, batch.events).await;
                    }
                    return;
                }
                () = self.signal.woken() => cue = Cue::Commit,
                () = tokio::time::sleep(self.config.poll_interval) => cue = Cue::Poll,
                () = sleep_until_some(settle_by) => cue = Cue::Unsettled,
            }
            if let Some(last_rows) = last_rows.filter(|_| cue == Cue::Commit) {
                self.linger(last_rows, &shutdown).await;
            }
        }
    }

    /// On Postgres, waits out the rest of `log.relay_linger` since the last batch that
    /// found rows, so that commits which follow each other closely share one
    /// sequencing transaction. Never holds up shutdown.
    async fn linger(&self, last_rows: Instant, shutdown: &CancellationToken) {
        if !matches!(self.db, Db::Postgres(_)) {
            return;
        }
        let until = last_rows + self.config.relay_linger;
        if until > Instant::now() {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Publishes `batch`; returns the size of its encoding in bytes, which the pruning
    /// schedule counts.
    async fn publish(&self, epoch: &str, batch: Vec<(u64, LogEntry)>) -> usize {
        let count = batch.len() as u64;
        self.metrics
            .events_published
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        // One message per batch: a broker publish is a round trip (Redis PUBLISH,
        // pg_notify), and one per event would keep this relay from sequencing the next
        // batch for a round trip per row. A batch too large for the broker goes as the
        // doorbell of its last seq, and the nodes read it from the log.
        let mut batch = batch;
        let message = match batch.len() {
            0 => return 0,
            1 => {
                let (seq, event) = batch.remove(0);
                BrokerMessage::Logged {
                    epoch: epoch.to_owned(),
                    seq,
                    event,
                }
            }
            _ => BrokerMessage::Batch {
                epoch: epoch.to_owned(),
                events: batch,
            },
        };
        let encoded = message.encode();
        let bytes = encoded.len();
        if let Err(e) = self.broker.publish(encoded).await {
            // Nodes poll the log, so a lost doorbell only delays delivery.
            tracing::warn!(
                error = %e,
                events = count,
                "relay: broker publish failed; the nodes will find these events by polling"
            );
        }
        bytes
    }

    /// Up to `relay_batch` rows to publish: on Postgres the rows it numbers now (the
    /// settled ones, or after `Cue::Unsettled` every visible one), on SQLite the rows
    /// numbered since its last batch. The rows come in seq order, with an empty epoch
    /// when nothing was waiting.
    pub(crate) async fn sequence_batch(&self, cue: Cue) -> sqlx::Result<Batch> {
        match &self.db {
            Db::Sqlite(pool) => {
                let (epoch, events) = self.next_numbered_sqlite(pool, cue).await?;
                Ok(Batch {
                    epoch,
                    events,
                    unsettled: false,
                })
            }
            Db::Postgres(pool) => {
                // Most polls find nothing: check without taking the meta row lock,
                // through the partial index on unsequenced rows. After a commit the
                // check would be a round trip per batch that nearly always says yes
                // (unless another node's relay numbered them first, and then the
                // sequencing transaction finds nothing either).
                if cue == Cue::Poll && !self.has_unsequenced(pool).await? {
                    return Ok(Batch::default());
                }
                let numbering = if cue == Cue::Unsettled {
                    Numbering::Visible
                } else {
                    Numbering::Settled
                };
                let limit = i64::from(self.config.relay_batch);
                // Every wait is bounded (see `sequence_postgres`); the client-side bound
                // only frees this task if the database stops answering altogether.
                let bound = self.config.sequencer_timeout * 4;
                let sequencing = self.sequence_postgres(pool, limit, numbering);
                match tokio::time::timeout(bound, sequencing).await {
                    Ok(result) => result,
                    Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer from the database within {bound:?}"),
                    ))),
                }
            }
        }
    }

    /// One sequencing transaction on Postgres, then the rows it numbered.
    ///
    /// Exactly one seq per row, no gap, whichever node dies whenever: numbering and the
    /// new `last_seq` commit together under the meta row lock, so a relay that dies
    /// before its commit numbered nothing, and one that dies after it numbered its rows
    /// for good (nodes find them by polling). A killed process's connection closes, so
    /// Postgres aborts its transaction and releases the lock at once. A node that hangs,
    /// is stopped or is cut off while holding the lock is bounded by
    /// `log.sequencer_timeout`, set on this transaction only: Postgres ends a session
    /// idle in it that long (`idle_in_transaction_session_timeout`), a statement that
    /// runs that long (`statement_timeout`), and a wait for the lock that long
    /// (`lock_timeout`; the relay then tries again at its next turn). Inside the
    /// transaction the server only ever sends a few bytes, so it can never be stuck
    /// writing to a client that stopped reading, where no timeout would reach it: the
    /// events are read after the commit.
    ///
    /// `Numbering::Settled` commits without waiting for the flush (see the module's
    /// docs for why a lost numbering of settled rows is numbered again the same way);
    /// `Numbering::Visible` waits for it, and never with `synchronous_commit` off.
    async fn sequence_postgres(
        &self,
        pool: &sqlx::PgPool,
        limit: i64,
        numbering: Numbering,
    ) -> sqlx::Result<Batch> {
        // Postgres counts in milliseconds, and 0 would mean "no limit".
        let ms = self
            .config
            .sequencer_timeout
            .as_micros()
            .div_ceil(1000)
            .max(1);
        // Settled rows: the snapshot's xmin is the oldest transaction still running
        // when the numbering statement starts; every row below it is visible or
        // rolled back.
        let (durability, settled_only) = match numbering {
            Numbering::Settled => ("SET LOCAL synchronous_commit = off;", true),
            Numbering::Visible => (snapshot::DURABLE_COMMIT, false),
        };
        // One round trip for the whole transaction: the lock is held while Postgres
        // runs the script, never across this task's wait for its turn on a busy
        // runtime. `realtime_number_batch` (a function, so that each session plans its
        // statements once: see its migration) locks the meta row and then numbers, in
        // a statement of its own whose snapshot (taken when it starts, in READ
        // COMMITTED) comes after the lock is granted and so sees the rows the previous
        // holder numbered as numbered. It returns one row: the meta row as locked, the
        // new last seq (NULL if it numbered nothing) and whether unsequenced rows were
        // left, which a statement sees as its snapshot began, hence the rows of the
        // batch are left out.
        let script = format!(
            "BEGIN; \
             {durability} \
             SET LOCAL idle_in_transaction_session_timeout = {ms}; \
             SET LOCAL statement_timeout = {ms}; \
             SET LOCAL lock_timeout = {ms}; \
             SELECT epoch, last_seq, new_last, left_over \
             FROM realtime_number_batch({limit}, {settled_only}); \
             COMMIT;"
        );
        let mut conn = pool.acquire().await?;
        let rows = match sqlx::raw_sql(sqlx::AssertSqlSafe(script))
            .fetch_all(&mut *conn)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                // Never hand a connection back with the (aborted) transaction open.
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                return Err(e);
            }
        };
        // The numbering's row (`set_config` may answer before it).
        let outcome = rows
            .iter()
            .find(|row| row.try_column("new_last").is_ok())
            .ok_or(sqlx::Error::RowNotFound)?;
        let (epoch, last): (String, i64) =
            (outcome.try_get("epoch")?, outcome.try_get("last_seq")?);
        let new_last: Option<i64> = outcome.try_get("new_last")?;
        let left_over: bool = outcome.try_get("left_over")?;
        // Rows left over from a full batch are the next batch's (`Cue::MoreWaiting`).
        let unsettled = left_over && numbering == Numbering::Settled;
        let Some(new_last) = new_last else {
            // Nothing settled, or another node numbered them first.
            return Ok(Batch {
                epoch,
                events: Vec::new(),
                unsettled,
            });
        };
        let (after, upto) = (to_u64(last), to_u64(new_last));
        if numbering == Numbering::Visible {
            self.metrics
                .events_numbered_unsettled
                .fetch_add(upto.saturating_sub(after), Ordering::Relaxed);
        }
        // Read on the same connection, now that the transaction is over: one checkout
        // per batch.
        let events = match reader::read_range_postgres(&mut conn, last, new_last, limit).await {
            Ok(batch) => {
                self.count_read_back(&batch);
                batch
            }
            Err(e) => {
                // Numbered for good; only this node's doorbells are lost.
                tracing::warn!(
                    error = %e,
                    after,
                    upto,
                    "relay: reading the rows just sequenced failed; nodes will find them by polling"
                );
                Vec::new()
            }
        };
        Ok(Batch {
            epoch,
            events,
            unsettled,
        })
    }

    async fn has_unsequenced(&self, pool: &sqlx::PgPool) -> sqlx::Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM realtime_outbox WHERE seq IS NULL)")
            .fetch_one(pool)
            .await
    }

    /// On SQLite, the events after the last one this relay published: those handed
    /// off, when they follow on from it, or else up to `relay_batch` rows read from
    /// the log. After a commit's wake-up that handed off nothing new (its events went
    /// out with an earlier batch) there is nothing to read: every writer on SQLite
    /// hands off its events, or says it could not (`RelaySignal::read_the_log`).
    async fn next_numbered_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
        cue: Cue,
    ) -> sqlx::Result<(String, Vec<(u64, LogEntry)>)> {
        let published = self.published.load(Ordering::Acquire);
        if let Some(run) = self.signal.take_handed().run_after(published) {
            if let Some(&(last, _)) = run.last() {
                self.published.store(last, Ordering::Release);
                let epoch = self.epoch.lock().unwrap_or_else(|e| e.into_inner()).clone();
                return Ok((epoch, run));
            }
            if cue == Cue::Commit {
                return Ok((String::new(), Vec::new()));
            }
        }
        self.read_numbered_sqlite(pool).await
    }

    /// The rows SQLite numbered since the last batch this relay published, up to
    /// `relay_batch` of them, each with the log's epoch: one read, and a WAL reader
    /// never waits for the writers. Only when there is nothing new does it read the
    /// log's position, to notice a log that was reset under it.
    async fn read_numbered_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
    ) -> sqlx::Result<(String, Vec<(u64, LogEntry)>)> {
        let mut conn = pool.acquire().await?;
        let published = self.published.load(Ordering::Acquire);
        let (epoch, batch) =
            reader::read_after_sqlite(&mut conn, published, self.config.relay_batch).await?;
        self.count_read_back(&batch);
        if let Some((seq, _)) = batch.last() {
            self.published.store(*seq, Ordering::Release);
            epoch.clone_into(&mut self.epoch.lock().unwrap_or_else(|e| e.into_inner()));
            return Ok((epoch, batch));
        }
        let (epoch, last) = reader::load_meta_sqlite(&mut conn).await?;
        if last < published {
            // The log was reset: start again from its new position (the nodes see
            // the new epoch at their next poll).
            self.published.store(last, Ordering::Release);
            *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
        }
        Ok((String::new(), Vec::new()))
    }

    fn count_read_back(&self, batch: &[(u64, LogEntry)]) {
        self.metrics
            .events_read_back
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// Deletes sequenced rows older than the retention window, in events and in bytes.
    async fn prune(&self) -> sqlx::Result<()> {
        let (_, last) = super::reader::load_meta(&self.db).await?;
        let by_count = last.checked_sub(self.config.retention);
        let by_bytes = self.bytes_horizon().await?;
        let Some(horizon) = by_count.max(by_bytes) else {
            return Ok(());
        };
        let horizon = to_i64(horizon);
        match &self.db {
            Db::Sqlite(pool) => {
                let _turn = self.turns.take().await?;
                // The floor first, so the trigger that keeps it (`realtime_outbox_floor`)
                // finds every deleted seq under it instead of raising it row by row.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query("UPDATE realtime_meta SET last_seq = max(last_seq, ?) WHERE id = 1")
                    .bind(horizon)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM realtime_outbox WHERE seq <= ?")
                    .bind(horizon)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                sqlx::query("DELETE FROM realtime_outbox WHERE seq IS NOT NULL AND seq <= $1")
                    .bind(horizon)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Relay {
    /// The newest seq at which the sequenced rows, counted from the newest back,
    /// exceed `retention_bytes`: it and everything older go. `None` while they fit.
    async fn bytes_horizon(&self) -> sqlx::Result<Option<u64>> {
        // Sizes as stored: SQLite's byte length of the text, Postgres's stored size of
        // each JSONB value (after compression, which is what the disk holds).
        const SQLITE: &str = "SELECT max(seq) FROM ( \
               SELECT seq, sum(length(CAST(payload AS BLOB)) \
                              + coalesce(length(CAST(changes AS BLOB)), 0) \
                              + length(CAST(acl AS BLOB))) \
                      OVER (ORDER BY seq DESC) AS total \
               FROM realtime_outbox WHERE seq IS NOT NULL \
             ) WHERE total > ?";
        const POSTGRES: &str = "SELECT max(seq) FROM ( \
               SELECT seq, sum(pg_column_size(payload) \
                              + coalesce(pg_column_size(changes), 0) \
                              + pg_column_size(acl)) \
                      OVER (ORDER BY seq DESC) AS total \
               FROM realtime_outbox WHERE seq IS NOT NULL \
             ) sized WHERE total > $1";
        let budget = i64::try_from(self.config.retention_bytes).unwrap_or(i64::MAX);
        let seq: Option<i64> = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query_scalar(SQLITE)
                    .bind(budget)
                    .fetch_one(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_scalar(POSTGRES)
                    .bind(budget)
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(seq.map(to_u64))
    }
}

/// Which unsequenced rows a Postgres sequencing transaction numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbering {
    /// Settled rows only, committing without waiting for the flush.
    Settled,
    /// Every visible row, committing with a flush.
    Visible,
}

/// Waits until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
