//! A transaction in which every model write also writes its event.

use std::sync::Arc;

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use super::{
    Model, StoreError, event,
    marks::EventMarks,
    sql::{
        ColumnCache, Conn, EventRowId, InTx, PredictEvent, Row, SQLITE_UNMUTE, Target, TxSchema,
    },
};
use crate::{
    event::{Action, LogEntry},
    log::RelaySignal,
    mutation::MutationId,
    source::Attribution,
    write_turns::WriteTurn,
};

/// An open transaction from [`Store::begin`](super::Store::begin).
///
/// Each [`insert`](Tx::insert), [`update`](Tx::update) and [`delete`](Tx::delete) writes
/// the record and exactly one outbox row; both become visible on [`commit`](Tx::commit)
/// or not at all. Dropping a `Tx` without committing rolls it back, so nothing is
/// emitted.
pub struct Tx {
    inner: OpenTx,
    signal: RelaySignal,
    /// Whether an outbox row was written, so commit knows to wake the relay.
    wrote: bool,
    /// SQLite: the events written, with the seqs their inserts gave them, handed to
    /// the relay on commit so it need not read them back; `None` once there are more
    /// than it takes (`log.relay_batch`), and then it reads them.
    numbered: Option<Vec<(u64, LogEntry)>>,
    /// SQLite: the column kinds of model tables, shared by the store's transactions.
    columns: Arc<ColumnCache>,
    /// Work that may happen only once the transaction committed (non-logged events).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// The mutation id and attribution every event of this transaction carries.
    marks: EventMarks,
}

/// The database transaction a [`Tx`] wraps, on whichever backend the store uses.
pub(super) enum OpenTx {
    /// With what the transaction knows of the schema (whether capture is muted, and
    /// the version the column cache holds for), and the node's write turn, held until
    /// the transaction ends.
    Sqlite(Transaction<'static, Sqlite>, TxSchema, WriteTurn),
    Postgres(Transaction<'static, Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner {
            OpenTx::Sqlite(..) => "sqlite",
            OpenTx::Postgres(_) => "postgres",
        };
        f.debug_struct("Tx")
            .field("backend", &backend)
            .field("wrote", &self.wrote)
            .finish_non_exhaustive()
    }
}

impl Tx {
    pub(super) fn new(inner: OpenTx, signal: RelaySignal, columns: Arc<ColumnCache>) -> Self {
        Self {
            inner,
            signal,
            wrote: false,
            numbered: Some(Vec::new()),
            columns,
            after_commit: Vec::new(),
            marks: EventMarks::default(),
        }
    }

    /// Tags every event this transaction writes from now on (its inserts, updates,
    /// deletes, recorded events and broadcasts without an id of their own) with the
    /// client's mutation id; subscribers see it as the event's `"mutation"`.
    pub fn set_mutation(&mut self, mutation: MutationId) {
        self.marks.mutation = Some(mutation);
    }

    /// The mutation id set with [`Tx::set_mutation`].
    pub fn mutation(&self) -> Option<&MutationId> {
        self.marks.mutation.as_ref()
    }

    /// Attributes every event this transaction writes from now on to a client: its
    /// `source` becomes `client` (see [`crate::Source`]).
    pub(crate) fn attribute(&mut self, attribution: Attribution) {
        self.marks.attribution = Some(attribution);
    }

    /// Runs `f` after a successful commit, never after a rollback or a drop. Used for
    /// events that are not logged (user and connection broadcasts).
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            OpenTx::Sqlite(tx, schema, _) => Conn::Sqlite(
                tx,
                Some(InTx {
                    schema,
                    cache: &self.columns,
                }),
            ),
            OpenTx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    /// Inserts `record` and returns the row as stored, column defaults included.
    ///
    /// Fields that serialize to `null` are left out of the insert, so a column default
    /// applies to them.
    pub async fn insert<M: Model>(&mut self, record: &M) -> Result<M, StoreError> {
        let target = Target::of::<M>()?;
        let id = record.id();
        let fields = event::to_row(record)?;
        // On Postgres the event the record would have if stored as given rides with
        // the insert, saving the event row a round trip of its own (see
        // `write_event`). SQLite has no statement that writes two tables (sqlx's
        // multi-statement queries are deprecated, launchbadge/sqlx#3108), so there the
        // event row follows.
        let predicted = if self.writes_with_event() {
            let event = event::for_write(Action::Create, record, &fields, None)?;
            Some(self.marks.apply(event))
        } else {
            None
        };
        let (row, event_row) = self
            .conn()
            .insert(&target, &id, &fields, predicted.as_ref())
            .await?;
        let stored: M = event::from_row(row.clone(), &id)?;
        let event = event::for_write(Action::Create, &stored, &row, None)?;
        self.write_event(event_row.zip(predicted), event).await?;
        Ok(stored)
    }

    /// Writes the fields of `record` that differ from the stored row (locking it first)
    /// and returns the row as stored with the names of the public fields that changed.
    /// An update that changes nothing still emits an event, with an empty change list.
    ///
    /// Fails with [`StoreError::NotFound`] when no row has the record's id.
    pub async fn update<M: Model>(&mut self, record: &M) -> Result<(M, Vec<String>), StoreError> {
        let target = Target::of::<M>()?;
        let id = record.id();
        let fields = event::to_row(record)?;
        // On Postgres the update's statement writes the event too, predicted from the
        // locked row and the record overlaid on it (see `insert`).
        let marks = self.marks.clone();
        let predict = |old: &Row, new: &Row| {
            event::for_update::<M>(&id, old, new).map(|(_, _, event)| marks.apply(event))
        };
        let predict = self
            .writes_with_event()
            .then_some(&predict as &PredictEvent<'_>);
        let updated = self
            .conn()
            .update(&target, &id, &fields, predict)
            .await?
            .ok_or_else(|| not_found::<M>(&id))?;
        let (stored, changes, event) = event::for_update::<M>(&id, &updated.old, &updated.new)?;
        self.write_event(updated.event_row, event).await?;
        Ok((stored, changes))
    }

    /// Deletes the record with this id and returns it as it was. Its event carries the
    /// public projection and rule fields captured before the row disappeared.
    ///
    /// Fails with [`StoreError::NotFound`] when there is no such record.
    pub async fn delete<M: Model>(&mut self, id: &str) -> Result<M, StoreError> {
        let target = Target::of::<M>()?;
        let row = self
            .conn()
            .delete(&target, id)
            .await?
            .ok_or_else(|| not_found::<M>(id))?;
        let old: M = event::from_row(row.clone(), id)?;
        let event = event::for_write(Action::Delete, &old, &row, None)?;
        self.record_owned(event).await?;
        Ok(old)
    }

    /// The record with this id, as this transaction sees it.
    pub async fn get<M: Model>(&mut self, id: &str) -> Result<Option<M>, StoreError> {
        let target = Target::of::<M>()?;
        let row = self.conn().get(&target, id).await?;
        row.map(|row| event::from_row(row, id)).transpose()
    }

    /// Records an event for a write the user made with their own SQL in this
    /// transaction. It is emitted only if the transaction commits.
    pub async fn record(&mut self, event: &LogEntry) -> Result<(), StoreError> {
        self.record_owned(event.clone()).await
    }

    /// [`Tx::record`] for an event the caller no longer needs.
    async fn record_owned(&mut self, event: LogEntry) -> Result<(), StoreError> {
        let event = self.marks.apply(event);
        let seq = self.conn().record(&event).await?;
        self.recorded(seq, event);
        Ok(())
    }

    /// Whether model writes send their event row in their own statement (Postgres).
    fn writes_with_event(&self) -> bool {
        matches!(self.inner, OpenTx::Postgres(_))
    }

    /// Writes the event of a model write, `event` being what the stored rows make of
    /// it. If the write's own statement already wrote an event row, from the event
    /// predicted before the write, that row is rewritten only where `event` says
    /// otherwise (a column default, a generated id, a value the column type spells
    /// differently, a trigger's change): before the commit, so no one reads the
    /// prediction.
    async fn write_event(
        &mut self,
        written: Option<(EventRowId, LogEntry)>,
        event: LogEntry,
    ) -> Result<(), StoreError> {
        let Some((event_row, predicted)) = written else {
            return self.record_owned(event).await;
        };
        let event = LogEntry {
            ts: predicted.ts,
            ..self.marks.apply(event)
        };
        if event != predicted {
            self.conn().correct(event_row, &event).await?;
        }
        self.recorded(None, event);
        Ok(())
    }

    /// Notes that `event` was written, with the seq its insert gave it (SQLite), so the
    /// commit wakes the relay or hands it the events.
    fn recorded(&mut self, seq: Option<u64>, event: LogEntry) {
        self.wrote = true;
        if let (Some(seq), Some(numbered)) = (seq, &mut self.numbered) {
            if numbered.len() < self.signal.capacity() {
                numbered.push((seq, event));
            } else {
                self.numbered = None; // a big transaction: the relay reads the log
            }
        }
    }

    /// The transaction's connection when on SQLite, for the user's own SQL. Capture
    /// triggers are muted in a store transaction: record that SQL's events with
    /// [`Tx::record`].
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.inner {
            OpenTx::Sqlite(tx, schema, _) => {
                schema.own_sql();
                Some(tx)
            }
            OpenTx::Postgres(_) => None,
        }
    }

    /// The transaction's connection when on Postgres, for the user's own SQL (not
    /// captured either: see [`Tx::sqlite`]).
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.inner {
            OpenTx::Postgres(tx) => Some(tx),
            OpenTx::Sqlite(..) => None,
        }
    }

    /// Commits, then wakes the relay if the transaction wrote any outbox row.
    pub async fn commit(self) -> Result<(), StoreError> {
        let result = match self.inner {
            // The turn is given back once the commit is done.
            OpenTx::Sqlite(mut tx, mut schema, _turn) => {
                schema.before_commit(&mut tx, &self.columns).await?;
                if schema.muted() {
                    match sqlx::query(SQLITE_UNMUTE).execute(&mut *tx).await {
                        Ok(_) => tx.commit().await,
                        Err(e) => Err(e),
                    }
                } else {
                    tx.commit().await
                }
            }
            OpenTx::Postgres(tx) => tx.commit().await,
        };
        result.map_err(|source| StoreError::Transaction {
            op: "commit",
            source,
        })?;
        match self.numbered {
            Some(numbered) if !numbered.is_empty() => self.signal.hand_off(numbered),
            None => self.signal.read_the_log(),
            // Postgres (its relay numbers and reads the rows), or nothing written.
            Some(_) if self.wrote => self.signal.wake(),
            Some(_) => {}
        }
        for f in self.after_commit {
            f();
        }
        Ok(())
    }

    /// Rolls back: neither the writes nor their events happen.
    pub async fn rollback(self) -> Result<(), StoreError> {
        let result = match self.inner {
            OpenTx::Sqlite(tx, _, _turn) => tx.rollback().await,
            OpenTx::Postgres(tx) => tx.rollback().await,
        };
        result.map_err(|source| StoreError::Transaction {
            op: "rollback",
            source,
        })
    }
}

fn not_found<M: Model>(id: &str) -> StoreError {
    StoreError::NotFound {
        collection: M::COLLECTION.to_owned(),
        id: id.to_owned(),
    }
}
