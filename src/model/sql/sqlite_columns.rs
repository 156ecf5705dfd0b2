//! What a SQLite table's declared column types say about its values, and a cache of
//! them that saves reading `pragma_table_info` on every write.
//!
//! SQLite stores values, not column types, so a row read back carries only storage
//! classes (integer, real, text, blob). The declared types say how to turn them into
//! JSON: a `BOOLEAN` column holds integers that mean `true`/`false`, a `JSON` column
//! holds text to parse.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use sqlx::SqliteConnection;

use super::Target;
use crate::model::StoreError;

/// How a declared column type maps to JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Integer,
    Real,
    Text,
    Json,
    /// Anything else (`NUMERIC`, `DATE`, no type): the stored value decides.
    Other,
}

impl Kind {
    /// Follows SQLite's own affinity rules (first match wins), after two declared types
    /// that SQLite lumps in with NUMERIC but that tell us how to read the value back.
    fn of(declared: &str) -> Self {
        let d = declared.to_ascii_uppercase();
        if d.contains("BOOL") {
            Self::Bool
        } else if d.contains("JSON") {
            Self::Json
        } else if d.contains("INT") {
            Self::Integer
        } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            Self::Text
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            Self::Real
        } else {
            Self::Other
        }
    }
}

/// A table's columns and their kinds, in table order.
#[derive(Debug)]
pub(super) struct Columns(Vec<(String, Kind)>);

impl Columns {
    /// The columns of `t`'s table: from `known`'s cache when it holds them for the
    /// schema the transaction sees, else read (and cached, when the schema is known).
    pub(super) async fn resolve(
        conn: &mut SqliteConnection,
        t: &Target,
        known: Option<KnownSchema<'_>>,
    ) -> Result<Arc<Self>, StoreError> {
        if let Some(cached) = known.and_then(|k| k.cache.get(t.table, k.version)) {
            return Ok(cached);
        }
        let columns = Arc::new(Self::read(conn, t).await?);
        if let Some(k) = known {
            k.cache.put(t.table, k.version, columns.clone());
        }
        Ok(columns)
    }

    async fn read(conn: &mut SqliteConnection, t: &Target) -> Result<Self, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, type FROM pragma_table_info(?1)")
                .bind(t.table)
                .fetch_all(conn)
                .await
                .map_err(t.db_error("read the columns of the table", None))?;
        if rows.is_empty() {
            return Err(StoreError::UnknownTable {
                collection: t.collection.to_owned(),
                table: t.table.to_owned(),
            });
        }
        let columns = Self(
            rows.into_iter()
                .map(|(name, declared)| (name, Kind::of(&declared)))
                .collect(),
        );
        columns.require(t, t.id_field)?;
        Ok(columns)
    }

    pub(super) fn kind(&self, name: &str) -> Option<Kind> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }

    pub(super) fn require(&self, t: &Target, name: &str) -> Result<Kind, StoreError> {
        self.kind(name).ok_or_else(|| t.unknown_column(name))
    }
}

/// The columns of the tables a store wrote, valid for one `schema_version` of the
/// database: SQLite bumps that number on every change to any table, made by any
/// connection or process, so a cached entry never outlives the table it describes.
/// Holds one entry per model table, so it stays as small as the app's list of models.
#[derive(Debug, Default)]
pub(crate) struct ColumnCache {
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// The schema version every entry was read at.
    version: i64,
    /// Whether a trigger heeded the capture mute at that version, when a transaction
    /// read it (see `sqlite_schema`).
    heeded: Option<bool>,
    tables: HashMap<&'static str, Arc<Columns>>,
}

impl CacheState {
    fn move_to(&mut self, version: i64) {
        if self.version != version {
            self.tables.clear();
            self.heeded = None;
            self.version = version;
        }
    }
}

impl ColumnCache {
    pub(super) fn get(&self, table: &str, version: i64) -> Option<Arc<Columns>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.version == version)
            .then(|| state.tables.get(table).cloned())
            .flatten()
    }

    fn put(&self, table: &'static str, version: i64, columns: Arc<Columns>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.move_to(version);
        state.tables.insert(table, columns);
    }

    /// Records what a transaction read under the write lock.
    pub(super) fn note_schema(&self, version: i64, heeded: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.move_to(version);
        state.heeded = Some(heeded);
    }

    /// The last version read, if no trigger heeded the capture mute at it.
    pub(super) fn unmuted_version(&self) -> Option<i64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.heeded == Some(false)).then_some(state.version)
    }
}

/// The schema version a transaction read while holding the write lock: no other
/// connection can change the schema before it ends, so the cache's entries for that
/// version hold for all of its statements.
#[derive(Debug, Clone, Copy)]
pub(in crate::model) struct KnownSchema<'c> {
    pub cache: &'c ColumnCache,
    pub version: i64,
}
