//! A transaction in which every model write also writes its event.

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use super::{
    Model, StoreError, event,
    sql::{Conn, Target},
};
use crate::{
    event::{Action, LogEntry},
    log::RelaySignal,
    mutation::MutationId,
    source::{Attribution, Source},
};

/// Mutes capture triggers for this connection's transaction (see `capture`), if the
/// database has any trigger that heeds the mute. Most have none, and then nothing is
/// written: the mute row would cost every store transaction a page in the WAL. Read
/// under the write lock (`BEGIN IMMEDIATE`), so no trigger can appear before the
/// commit.
pub const SQLITE_MUTE: &str = "INSERT OR REPLACE INTO realtime_capture_off (id) \
     SELECT 1 WHERE EXISTS (SELECT 1 FROM sqlite_master \
       WHERE type = 'trigger' AND sql LIKE '%realtime_capture_off%')";
/// Unmutes them before the commit, so the row is never committed.
pub const SQLITE_UNMUTE: &str = "DELETE FROM realtime_capture_off";

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
    /// SQLite: whether the capture mute row was written, so commit must delete it.
    muted: bool,
    /// Work that may happen only once the transaction committed (non-logged events).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// The client mutation id every event of this transaction carries.
    mutation: Option<MutationId>,
    /// The client every event of this transaction is attributed to, if any (a
    /// handler's transaction, `Call::begin`).
    attribution: Option<Attribution>,
}

/// The database transaction a [`Tx`] wraps, on whichever backend the store uses.
pub(super) enum OpenTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner {
            OpenTx::Sqlite(_) => "sqlite",
            OpenTx::Postgres(_) => "postgres",
        };
        f.debug_struct("Tx")
            .field("backend", &backend)
            .field("wrote", &self.wrote)
            .finish_non_exhaustive()
    }
}

impl Tx {
    pub(super) fn new(inner: OpenTx, signal: RelaySignal) -> Self {
        Self {
            inner,
            signal,
            wrote: false,
            muted: false,
            after_commit: Vec::new(),
            mutation: None,
            attribution: None,
        }
    }

    /// Tags every event this transaction writes from now on (its inserts, updates,
    /// deletes, recorded events and broadcasts without an id of their own) with the
    /// client's mutation id; subscribers see it as the event's `"mutation"`.
    pub fn set_mutation(&mut self, mutation: MutationId) {
        self.mutation = Some(mutation);
    }

    /// The mutation id set with [`Tx::set_mutation`].
    pub fn mutation(&self) -> Option<&MutationId> {
        self.mutation.as_ref()
    }

    /// Attributes every event this transaction writes from now on to a client: its
    /// `source` becomes `client` (see [`crate::Source`]).
    pub(crate) fn attribute(&mut self, attribution: Attribution) {
        self.attribution = Some(attribution);
    }

    /// Runs `f` after a successful commit, never after a rollback or a drop. Used for
    /// events that are not logged (user and connection broadcasts).
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(f));
    }

    /// Keeps capture triggers from recording this transaction's writes, which it records
    /// itself. Postgres did so in `BEGIN`; SQLite needs a row in `realtime_capture_off`
    /// (when any trigger heeds it) that [`Tx::commit`] deletes again and a rollback
    /// takes away.
    pub(super) async fn mute_capture(&mut self) -> Result<(), StoreError> {
        if let OpenTx::Sqlite(tx) = &mut self.inner {
            let done = sqlx::query(SQLITE_MUTE)
                .execute(&mut **tx)
                .await
                .map_err(|source| StoreError::Transaction {
                    op: "begin",
                    source,
                })?;
            self.muted = done.rows_affected() > 0;
        }
        Ok(())
    }

    fn conn(&mut self) -> Conn<'_> {
        match &mut self.inner {
            OpenTx::Sqlite(tx) => Conn::Sqlite(tx),
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
        let row = self.conn().insert(&target, &id, &fields).await?;
        let stored: M = event::from_row(row.clone(), &id)?;
        let event = event::for_write(Action::Create, &stored, &row, None)?;
        self.record(&event).await?;
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
        let (old, new) = self
            .conn()
            .update(&target, &id, &fields)
            .await?
            .ok_or_else(|| not_found::<M>(&id))?;
        let stored: M = event::from_row(new.clone(), &id)?;
        let changes = event::changed_fields(&stored, &old, &new);
        // The record as it was, in the same form as the payload (serde's, not the
        // driver's: timestamps with `Z`, floats with `.0`), so filters judge both alike.
        let was = event::to_row(&event::from_row::<M>(old.clone(), &id)?)?;
        let previous = event::previous_values::<M>(&changes, &old, &new, &was);
        let event = event::for_write(Action::Update, &stored, &new, Some(changes.clone()))?
            .with_previous(Some(previous));
        self.record(&event).await?;
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
        self.record(&event).await?;
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
        let untagged_mutation = self.mutation.is_some() && event.mutation.is_none();
        let unattributed = self.attribution.is_some() && event.source == Source::Server;
        let tagged;
        let event = if untagged_mutation || unattributed {
            let mut copy = event.clone();
            if untagged_mutation {
                copy = copy.with_mutation(self.mutation.clone());
            }
            if let Some(attribution) = self.attribution.as_ref().filter(|_| unattributed) {
                copy.source = attribution.source_for(&copy.collection);
            }
            tagged = copy;
            &tagged
        } else {
            event
        };
        self.conn().record(event).await?;
        self.wrote = true;
        Ok(())
    }

    /// The transaction's connection when on SQLite, for the user's own SQL. Capture
    /// triggers are muted in a store transaction: record that SQL's events with
    /// [`Tx::record`].
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.inner {
            OpenTx::Sqlite(tx) => Some(tx),
            OpenTx::Postgres(_) => None,
        }
    }

    /// The transaction's connection when on Postgres, for the user's own SQL (not
    /// captured either: see [`Tx::sqlite`]).
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.inner {
            OpenTx::Postgres(tx) => Some(tx),
            OpenTx::Sqlite(_) => None,
        }
    }

    /// Commits, then wakes the relay if the transaction wrote any outbox row.
    pub async fn commit(self) -> Result<(), StoreError> {
        let result = match self.inner {
            OpenTx::Sqlite(mut tx) if self.muted => {
                match sqlx::query(SQLITE_UNMUTE).execute(&mut *tx).await {
                    Ok(_) => tx.commit().await,
                    Err(e) => Err(e),
                }
            }
            OpenTx::Sqlite(tx) => tx.commit().await,
            OpenTx::Postgres(tx) => tx.commit().await,
        };
        result.map_err(|source| StoreError::Transaction {
            op: "commit",
            source,
        })?;
        if self.wrote {
            self.signal.wake();
        }
        for f in self.after_commit {
            f();
        }
        Ok(())
    }

    /// Rolls back: neither the writes nor their events happen.
    pub async fn rollback(self) -> Result<(), StoreError> {
        let result = match self.inner {
            OpenTx::Sqlite(tx) => tx.rollback().await,
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
