//! The entry point for model reads and for transactions that write models.

use std::{sync::Arc, time::Duration};

use super::{
    Model, StoreError, event,
    sql::{ColumnCache, Conn, Target, TxSchema},
    tx::{OpenTx, Tx},
};
use crate::{
    db::{Db, SQLITE_BUSY_TIMEOUT},
    event::LogEntry,
    log::RelaySignal,
    write_turns::{WriteTurn, WriteTurns},
};

/// Begins a Postgres store transaction with capture triggers muted for it alone
/// (`SET LOCAL` ends with the transaction).
pub const POSTGRES_BEGIN: &str = "BEGIN; SET LOCAL tidings.capture = 'off'";

/// Reads models and begins transactions that write them. Cheap to clone.
///
/// Every write in a transaction adds its event to the log in that same transaction:
/// subscribers see the change if and only if it commits.
///
/// ```no_run
/// # use tidings::model::Model;
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Todo { id: String, title: String, done: bool }
/// # impl Model for Todo { const COLLECTION: &'static str = "todos"; fn id(&self) -> String { self.id.clone() } }
/// # async fn f(realtime: tidings::Realtime) -> Result<(), tidings::model::StoreError> {
/// let store = realtime.store();
/// let mut tx = store.begin().await?;
/// let todo = tx.insert(&Todo { id: "1".into(), title: "milk".into(), done: false }).await?;
/// tx.update(&Todo { done: true, ..todo }).await?; // an "update" with changes ["done"]
/// tx.commit().await?; // both events are sent now; a rollback would send neither
/// let saved: Option<Todo> = store.get("1").await?;
/// # let _ = saved; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    signal: RelaySignal,
    /// How long a snapshot may wait for, or hold off, the relays (Postgres).
    snapshot_timeout: Duration,
    /// SQLite: the column kinds of the model tables, shared by every clone.
    columns: Arc<ColumnCache>,
    /// SQLite: the turns its transactions, snapshots and recorded events take, shared
    /// with the node's other writers.
    turns: WriteTurns,
}

impl Store {
    /// A store on `db` that wakes the relay through `signal` after writing events.
    /// Apps get theirs from [`Realtime::store`](crate::Realtime::store); this exists
    /// for the crate's own tests, which drive a store without a gateway.
    #[doc(hidden)]
    pub fn new(db: Db, signal: RelaySignal) -> Self {
        Self {
            db,
            signal,
            snapshot_timeout: Duration::from_secs(5),
            columns: Arc::default(),
            turns: WriteTurns::new(SQLITE_BUSY_TIMEOUT),
        }
    }

    /// Takes its SQLite write turns from `turns`, the node's.
    pub(crate) fn with_write_turns(mut self, turns: WriteTurns) -> Self {
        self.turns = turns;
        self
    }

    /// Waits for a turn to write to SQLite.
    pub(super) async fn write_turn(&self) -> sqlx::Result<WriteTurn> {
        self.turns.take().await
    }

    /// Bounds every wait of a snapshot's transaction (`log.sequencer_timeout`).
    pub(crate) fn with_snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    pub(super) fn snapshot_timeout(&self) -> Duration {
        self.snapshot_timeout
    }

    /// The database the store uses, for the application's own queries.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Begins a transaction.
    ///
    /// On SQLite it begins `IMMEDIATE`, taking the write lock at once: two deferred
    /// transactions that both read and then write would each wait for the other to
    /// release its read lock until one fails with "database is locked".
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let begin_failed = |source| StoreError::Transaction {
            op: "begin",
            source,
        };
        let inner = match &self.db {
            Db::Sqlite(pool) => {
                let turn = self.write_turn().await.map_err(begin_failed)?;
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(begin_failed)?;
                // Capture triggers must skip this transaction's writes, which it records
                // itself: muted now, or proved unneeded by its first model statement.
                let schema = TxSchema::begin(&mut tx, &self.columns)
                    .await
                    .map_err(begin_failed)?;
                OpenTx::Sqlite(tx, schema, turn)
            }
            // `SET LOCAL` mutes capture triggers for this transaction alone.
            Db::Postgres(pool) => pool
                .begin_with(sqlx::AssertSqlSafe(POSTGRES_BEGIN))
                .await
                .map(OpenTx::Postgres)
                .map_err(begin_failed)?,
        };
        Ok(Tx::new(inner, self.signal.clone(), self.columns.clone()))
    }

    /// The record with this id, or `None`.
    pub async fn get<M: Model>(&self, id: &str) -> Result<Option<M>, StoreError> {
        let target = Target::of::<M>()?;
        let row = match &self.db {
            Db::Sqlite(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(target.db_error("get", Some(id)))?;
                Conn::Sqlite(&mut conn, None).get(&target, id).await?
            }
            Db::Postgres(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(target.db_error("get", Some(id)))?;
                Conn::Postgres(&mut conn).get(&target, id).await?
            }
        };
        row.map(|row| event::from_row(row, id)).transpose()
    }

    /// Up to `limit` records, ordered by id.
    pub async fn list<M: Model>(&self, limit: u32) -> Result<Vec<M>, StoreError> {
        let target = Target::of::<M>()?;
        let rows = match &self.db {
            Db::Sqlite(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(target.db_error("list", None))?;
                Conn::Sqlite(&mut conn, None).list(&target, limit).await?
            }
            Db::Postgres(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(target.db_error("list", None))?;
                Conn::Postgres(&mut conn).list(&target, limit).await?
            }
        };
        event::from_rows(rows, target.id_field)
    }

    /// Installs capture on `M`'s table: from now on a write to it with plain SQL, from
    /// any connection, emits the event a store write would. For quick starts and tests;
    /// in production commit [`crate::capture::sql`]'s output as a migration instead.
    pub async fn install_capture<M: Model>(&self) -> Result<(), crate::capture::CaptureError> {
        crate::capture::install::<M>(&self.db).await
    }

    /// Writes an event directly (own autocommit), then wakes the relay.
    pub async fn record(&self, event: &LogEntry) -> Result<(), StoreError> {
        let acquire_error = |source| StoreError::Database {
            op: "record",
            collection: event.collection.clone(),
            id: event.key.clone(),
            source,
        };
        match &self.db {
            Db::Sqlite(pool) => {
                let turn = self.write_turn().await.map_err(acquire_error)?;
                let mut conn = pool.acquire().await.map_err(acquire_error)?;
                let recorded = Conn::Sqlite(&mut conn, None).record(event).await;
                drop((conn, turn));
                match recorded? {
                    Some(seq) => self.signal.hand_off(vec![(seq, event.clone())]),
                    None => self.signal.read_the_log(),
                }
            }
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(acquire_error)?;
                Conn::Postgres(&mut conn).record(event).await?;
                self.signal.wake();
            }
        }
        Ok(())
    }
}
