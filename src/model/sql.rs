//! SQL for model tables: validated identifiers, and one connection type over both
//! backends that moves rows in and out as JSON objects.

mod postgres;
mod sqlite;
mod sqlite_columns;
mod sqlite_schema;

pub(crate) use sqlite_columns::ColumnCache;
pub(super) use sqlite_schema::{InTx, TxSchema};
pub use sqlite_schema::{SQLITE_UNMUTE, SqliteMute, mute_sqlite};

use serde_json::{Map, Value};
use sqlx::{PgConnection, SqliteConnection};

use super::{Model, StoreError};
use crate::{event::LogEntry, log::outbox};

/// A table row (or a serialized record) as a JSON object keyed by column name.
pub(super) type Row = Map<String, Value>;

/// The names one model's statements use, validated once and quoted.
pub(super) struct Target {
    pub collection: &'static str,
    pub table: &'static str,
    pub id_field: &'static str,
    quoted_table: String,
    quoted_id: String,
}

impl Target {
    /// Validates `M`'s table and id column names.
    pub(super) fn of<M: Model>() -> Result<Self, StoreError> {
        let mut target = Self {
            collection: M::COLLECTION,
            table: M::TABLE,
            id_field: M::ID_FIELD,
            quoted_table: String::new(),
            quoted_id: String::new(),
        };
        target.quoted_table = target.quote("table", M::TABLE)?;
        target.quoted_id = target.quote("column", M::ID_FIELD)?;
        Ok(target)
    }

    /// `name` as a quoted column identifier, or an error naming it.
    pub(super) fn column(&self, name: &str) -> Result<String, StoreError> {
        self.quote("column", name)
    }

    fn quote(&self, kind: &'static str, name: &str) -> Result<String, StoreError> {
        // Identifiers cannot be bound as parameters, so they are spliced into SQL: only a
        // conservative alphabet is let through. Postgres silently truncates names beyond
        // 63 bytes, which would address the wrong column, so those are refused too.
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid {
            Ok(format!("\"{name}\""))
        } else {
            Err(StoreError::InvalidIdentifier {
                collection: self.collection.to_owned(),
                kind,
                name: name.to_owned(),
            })
        }
    }

    fn unknown_column(&self, column: &str) -> StoreError {
        StoreError::UnknownColumn {
            collection: self.collection.to_owned(),
            table: self.table.to_owned(),
            column: column.to_owned(),
        }
    }

    /// Wraps a driver error with the operation and the record it concerned.
    pub(super) fn db_error<'a>(
        &'a self,
        op: &'static str,
        id: Option<&'a str>,
    ) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
        move |source| StoreError::Database {
            op,
            collection: self.collection.to_owned(),
            id: id.map(str::to_owned),
            source,
        }
    }
}

/// A connection (pooled or inside a transaction) on either backend.
pub(super) enum Conn<'c> {
    /// Inside a store transaction, with what it knows of the schema, so the table's
    /// column kinds can come from the cache.
    Sqlite(&'c mut SqliteConnection, Option<InTx<'c>>),
    Postgres(&'c mut PgConnection),
}

impl Conn<'_> {
    /// The row with this id.
    pub(super) async fn get(&mut self, t: &Target, id: &str) -> Result<Option<Row>, StoreError> {
        match self {
            Self::Sqlite(c, tx) => sqlite::get(c, t, tx.as_mut().map(InTx::reborrow), id).await,
            Self::Postgres(c) => postgres::get(c, t, id).await,
        }
    }

    /// Up to `limit` rows in id order.
    pub(super) async fn list(&mut self, t: &Target, limit: u32) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Sqlite(c, tx) => sqlite::list(c, t, tx.as_mut().map(InTx::reborrow), limit).await,
            Self::Postgres(c) => postgres::list(c, t, limit).await,
        }
    }

    /// Inserts the record's fields and returns the row as stored.
    ///
    /// Null fields are left out of the column list, so column defaults apply to them.
    /// On Postgres the same statement writes the outbox row of `event` when given (the
    /// event predicted from the record as given), and its id is returned so that
    /// [`Conn::correct`] can rewrite it; SQLite has no single statement that writes
    /// two tables, so there the caller records the event itself.
    pub(super) async fn insert(
        &mut self,
        t: &Target,
        id: &str,
        record: &Row,
        event: Option<&LogEntry>,
    ) -> Result<(Row, Option<EventRowId>), StoreError> {
        let present: Row = record
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match self {
            Self::Sqlite(c, tx) => {
                let row =
                    sqlite::insert(c, t, tx.as_mut().map(InTx::reborrow), id, &present).await?;
                Ok((row, None))
            }
            Self::Postgres(c) => match event {
                Some(event) => postgres::insert_recording(c, t, id, &present, event).await,
                None => Ok((postgres::insert(c, t, id, &present).await?, None)),
            },
        }
    }

    /// Rewrites the event row a write's statement wrote (Postgres) to say `event`: what
    /// the rows as stored made of it.
    pub(super) async fn correct(
        &mut self,
        event_row: EventRowId,
        event: &LogEntry,
    ) -> Result<(), StoreError> {
        let result = match self {
            Self::Postgres(c) => outbox::correct_postgres(c, event_row.0, event).await,
            // Only a Postgres write's statement writes an event row.
            Self::Sqlite(..) => Err(sqlx::Error::Protocol(
                "no SQLite write writes an event row to correct".to_owned(),
            )),
        };
        result.map_err(|source| StoreError::Database {
            op: "record",
            collection: event.collection.clone(),
            id: event.key.clone(),
            source,
        })
    }

    /// Writes the record's fields that differ from the stored row, which is locked
    /// first. Returns the row before and after, or `None` if there is no such row.
    ///
    /// On Postgres, given `predict`, the statement that writes the row also writes
    /// the event row of the event `predict` makes of the locked row and the record
    /// overlaid on it, as [`Conn::insert`] does; an update that changes nothing runs
    /// no such statement, and the caller records its event itself.
    pub(super) async fn update(
        &mut self,
        t: &Target,
        id: &str,
        record: &Row,
        predict: Option<&PredictEvent<'_>>,
    ) -> Result<Option<Updated>, StoreError> {
        let rows = match self {
            Self::Sqlite(c, tx) => {
                sqlite::update(c, t, tx.as_mut().map(InTx::reborrow), id, record).await?
            }
            Self::Postgres(c) => return postgres::update(c, t, id, record, predict).await,
        };
        Ok(rows.map(|(old, new)| Updated {
            old,
            new,
            event_row: None,
        }))
    }

    /// Deletes the row and returns it as it was, or `None` if there is no such row.
    pub(super) async fn delete(&mut self, t: &Target, id: &str) -> Result<Option<Row>, StoreError> {
        match self {
            Self::Sqlite(c, tx) => sqlite::delete(c, t, tx.as_mut().map(InTx::reborrow), id).await,
            Self::Postgres(c) => postgres::delete(c, t, id).await,
        }
    }

    /// Writes an outbox row; returns its seq on SQLite, where the insert numbers it.
    pub(super) async fn record(&mut self, event: &LogEntry) -> Result<Option<u64>, StoreError> {
        let result = match self {
            Self::Sqlite(c, _) => outbox::insert_sqlite(c, event).await.map(Some),
            Self::Postgres(c) => outbox::insert_postgres(c, event).await.map(|()| None),
        };
        result.map_err(|source| StoreError::Database {
            op: "record",
            collection: event.collection.clone(),
            id: event.key.clone(),
            source,
        })
    }
}

/// Builds the event of a write from the row before it (for an update) and the row it
/// is expected to store.
pub(super) type PredictEvent<'a> =
    dyn Fn(&Row, &Row) -> Result<LogEntry, StoreError> + Send + Sync + 'a;

/// What [`Conn::update`] did.
pub(super) struct Updated {
    /// The row before the update.
    pub old: Row,
    /// The row as stored after it.
    pub new: Row,
    /// The event row the update's statement wrote, with the event predicted for it.
    pub event_row: Option<(EventRowId, LogEntry)>,
}

/// The id of an outbox row that a Postgres write wrote with its record.
#[derive(Debug, Clone, Copy)]
pub(super) struct EventRowId(pub(super) i64);

/// One field of a record about to be written, with its column name quoted.
struct Field<'r> {
    name: &'r str,
    quoted: String,
    value: &'r Value,
}

/// The record's fields, checking that each name is a valid identifier.
fn fields<'r>(t: &Target, record: &'r Row) -> Result<Vec<Field<'r>>, StoreError> {
    record
        .iter()
        .map(|(name, value)| {
            Ok(Field {
                name,
                quoted: t.column(name)?,
                value,
            })
        })
        .collect()
}
