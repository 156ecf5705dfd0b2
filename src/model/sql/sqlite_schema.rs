//! What a SQLite store transaction knows of the schema it writes under: whether a
//! capture trigger heeds the mute (so the mute row must be written) and which
//! `schema_version` the cached column kinds hold for.
//!
//! Reading that is a round trip to the connection's thread, and on SQLite a round trip
//! (a context switch each way) costs about as much as a small statement. Most
//! transactions skip it: when the cache knows that no trigger heeded the mute at the
//! last version seen, the transaction assumes that version still holds, and its first
//! model statement carries a guard on it (`schema_version = ?`) that makes the
//! statement do nothing if the schema changed. A guarded statement that returns its
//! row proves the assumption; one that returns nothing is followed by the real check,
//! and run again if the schema did change.

use std::sync::Arc;

use sqlx::SqliteConnection;

use super::sqlite_columns::{ColumnCache, Columns, KnownSchema};
use crate::model::StoreError;

/// Reads, under the write lock (`BEGIN IMMEDIATE`), whether any trigger heeds the
/// capture mute, and the schema version, which tells whether the cached column kinds
/// of the model tables still hold. Both stay as read until the transaction ends: no
/// other connection can change the schema meanwhile.
const SQLITE_SCHEMA: &str = "SELECT schema_version, EXISTS (SELECT 1 FROM sqlite_master \
       WHERE type = 'trigger' AND sql LIKE '%realtime_capture_off%') \
     FROM pragma_schema_version";
/// Mutes capture triggers for this connection's transaction (see `capture`). Written
/// only when some trigger heeds it: most databases have none, and the row would cost
/// every store transaction a statement and a page in the WAL.
const SQLITE_MUTE: &str = "INSERT OR REPLACE INTO realtime_capture_off (id) VALUES (1)";
/// Unmutes them before the commit, so the row is never committed.
pub const SQLITE_UNMUTE: &str = "DELETE FROM realtime_capture_off";
/// The condition a guarded statement adds, with the assumed version bound to it.
pub(super) const GUARD: &str = "(SELECT schema_version FROM pragma_schema_version) = ?";

/// What [`mute_sqlite`] found and did.
#[derive(Debug, Clone, Copy)]
pub struct SqliteMute {
    /// Whether the mute row was written (some trigger heeds it), so it must be deleted
    /// with [`SQLITE_UNMUTE`] before the commit.
    pub wrote: bool,
    /// The database's `schema_version`, fixed until the transaction ends.
    pub schema_version: i64,
}

/// Mutes capture triggers, if there are any, for the transaction that holds the write
/// lock on `conn`, and reads the schema version: one round trip to the connection's
/// thread when no trigger heeds the mute, two when one does.
pub async fn mute_sqlite(conn: &mut SqliteConnection) -> sqlx::Result<SqliteMute> {
    let (schema_version, heeded): (i64, bool) =
        sqlx::query_as(SQLITE_SCHEMA).fetch_one(&mut *conn).await?;
    if heeded {
        sqlx::query(SQLITE_MUTE).execute(conn).await?;
    }
    Ok(SqliteMute {
        wrote: heeded,
        schema_version,
    })
}

/// The schema a SQLite store transaction runs under, as far as it knows it.
#[derive(Debug)]
pub(in crate::model) struct TxSchema {
    state: State,
    /// Whether the cached column kinds may be used: not once the app ran its own SQL
    /// in the transaction, which may have altered a table.
    kinds_cached: bool,
    /// Whether the app ran its own SQL before the assumption was proved, so the commit
    /// must prove it (that SQL carried no guard).
    unguarded_sql: bool,
    /// Whether that SQL ran unmuted under a trigger that heeds the mute, which
    /// appeared since the cache was filled: it may have been captured.
    own_sql_captured: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// The cache says no trigger heeded the mute at this version; not yet proved in
    /// this transaction, so model statements carry the guard.
    Assumed(i64),
    /// Read under the write lock, or proved by a guarded statement: fixed until the
    /// transaction ends.
    Known { version: i64, muted: bool },
}

impl TxSchema {
    /// For a transaction that just took the write lock: assumes the cached version
    /// when the cache can vouch for it, else checks (and mutes) now.
    pub(in crate::model) async fn begin(
        conn: &mut SqliteConnection,
        cache: &ColumnCache,
    ) -> sqlx::Result<Self> {
        let state = match cache.unmuted_version() {
            Some(version) => State::Assumed(version),
            None => {
                let (version, muted) = read_under_lock(conn, cache).await?;
                State::Known { version, muted }
            }
        };
        Ok(Self {
            state,
            kinds_cached: true,
            unguarded_sql: false,
            own_sql_captured: false,
        })
    }

    /// The version a model statement must guard on, while the assumption is unproved.
    pub(super) fn assumed(&self) -> Option<i64> {
        match self.state {
            State::Assumed(version) => Some(version),
            State::Known { .. } => None,
        }
    }

    /// A guarded statement took effect: the assumed version is the real one, and at it
    /// no trigger heeds the mute.
    pub(super) fn proved(&mut self) {
        if let State::Assumed(version) = self.state {
            self.state = State::Known {
                version,
                muted: false,
            };
        }
    }

    /// Reads the schema version and mutes capture if a trigger heeds it (see
    /// [`mute_sqlite`]); returns the version. Only the first call does anything.
    pub(super) async fn check(
        &mut self,
        conn: &mut SqliteConnection,
        cache: &ColumnCache,
    ) -> sqlx::Result<i64> {
        let assumed = match self.state {
            State::Known { version, .. } => return Ok(version),
            State::Assumed(version) => version,
        };
        let (version, muted) = read_under_lock(conn, cache).await?;
        self.state = State::Known { version, muted };
        // At the assumed version no trigger heeded the mute; at another one, a trigger
        // that does may have captured the app's own SQL run before now.
        self.own_sql_captured = self.unguarded_sql && muted && version != assumed;
        Ok(version)
    }

    /// The version the column cache may be used at, when it may. A guarded statement
    /// uses it at the assumed version; an unguarded one runs only after `check`.
    pub(super) fn known<'c>(&self, cache: &'c ColumnCache) -> Option<KnownSchema<'c>> {
        let (State::Assumed(version) | State::Known { version, .. }) = self.state;
        self.kinds_cached.then_some(KnownSchema { cache, version })
    }

    /// The app is about to run its own SQL in the transaction.
    pub(in crate::model) fn own_sql(&mut self) {
        self.kinds_cached = false;
        if matches!(self.state, State::Assumed(_)) {
            self.unguarded_sql = true;
        }
    }

    /// Whether the mute row was written, so the commit must delete it.
    pub(in crate::model) fn muted(&self) -> bool {
        matches!(self.state, State::Known { muted: true, .. })
    }

    /// Before the commit: if the app's own SQL ran while the schema was only assumed,
    /// proves the assumption now (unless a later check did). Had a trigger that heeds
    /// the mute appeared, that SQL ran unmuted and may have been captured as well as
    /// recorded by the app, so the transaction must not commit.
    pub(in crate::model) async fn before_commit(
        &mut self,
        conn: &mut SqliteConnection,
        cache: &ColumnCache,
    ) -> Result<(), StoreError> {
        if self.unguarded_sql {
            self.check(conn, cache)
                .await
                .map_err(|source| StoreError::Transaction {
                    op: "commit",
                    source,
                })?;
        }
        if self.own_sql_captured {
            return Err(StoreError::CaptureAppeared);
        }
        Ok(())
    }
}

/// Checks (and mutes) under the write lock, and tells the cache what it found:
/// returns the schema version and whether the mute row was written.
async fn read_under_lock(
    conn: &mut SqliteConnection,
    cache: &ColumnCache,
) -> sqlx::Result<(i64, bool)> {
    let mute = mute_sqlite(conn).await?;
    cache.note_schema(mute.schema_version, mute.wrote);
    Ok((mute.schema_version, mute.wrote))
}

/// A statement's view of the store transaction it runs in.
pub(in crate::model) struct InTx<'c> {
    pub schema: &'c mut TxSchema,
    pub cache: &'c ColumnCache,
}

impl<'c> InTx<'c> {
    /// The same view for one statement, leaving this one usable after it.
    pub(super) fn reborrow(&mut self) -> InTx<'_> {
        InTx {
            schema: self.schema,
            cache: self.cache,
        }
    }

    /// The version to guard on and the columns cached for it, when a guarded attempt
    /// can be made: the schema is still assumed and the table's kinds are cached.
    pub(super) fn attempt(&self, table: &str) -> Option<(i64, Arc<Columns>)> {
        let version = self.schema.assumed()?;
        let known = self.schema.known(self.cache)?;
        Some((version, known.cache.get(table, version)?))
    }

    /// After a guarded statement found nothing: checks the schema, and says whether
    /// the guard stopped it (the schema changed), so it must run again unguarded.
    pub(super) async fn guard_stopped(
        &mut self,
        conn: &mut SqliteConnection,
        version: i64,
    ) -> sqlx::Result<bool> {
        Ok(self.schema.check(conn, self.cache).await? != version)
    }

    /// Before an unguarded statement: checks the schema if it was only assumed, and
    /// returns the version the column cache may be used at.
    pub(super) async fn known(
        self,
        conn: &mut SqliteConnection,
    ) -> sqlx::Result<Option<KnownSchema<'c>>> {
        self.schema.check(conn, self.cache).await?;
        Ok(self.schema.known(self.cache))
    }
}
