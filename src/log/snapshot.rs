//! The log position a consistent read is at: inside the read's own transaction, with
//! every writer or relay held off, number the committed rows the relay has not
//! numbered yet (Postgres; SQLite numbers each row as it is inserted) and read
//! `last_seq`. The read then shows exactly the writes whose events are at or
//! before that position, and every event after it is a write the read does not show:
//! subscribing with `since` = that cursor yields exactly the changes after the read.
//!
//! Why sequencing here rather than waiting for the relay: a row committed before the
//! read but not yet numbered will get a seq after the current `last_seq`, so
//! `last_seq` alone would make the replay repeat it; and waiting for the relay to
//! catch up never ends under a steady write load.
//!
//! - SQLite: the read runs in a `BEGIN IMMEDIATE` transaction, which holds the one
//!   write lock: no write commits until it ends. SQLite numbers each row as it is
//!   inserted, so there is nothing to number here: the newest seq is the position.
//! - Postgres: a `REPEATABLE READ` transaction takes `realtime_meta` in `EXCLUSIVE`
//!   mode before its first query, so relays (which lock the meta row `FOR UPDATE`)
//!   wait, and its snapshot is taken after the lock: rows committed before it are
//!   numbered here, rows committed after it are invisible to it and get later seqs.
//!
//! Rows numbered here are not published on the broker: the caller asks this node to
//! read the log at once ([`crate::hub::Hub::reach_position`]); other nodes find them by
//! polling or at the relay's next doorbell, whose gap they fill from the log.

use std::time::Duration;

use sqlx::{PgConnection, SqliteConnection};

use crate::event::Cursor;

/// The log position on SQLite, read inside the caller's `BEGIN IMMEDIATE` transaction.
/// Nothing is left to number: each row got its seq from the statement that inserted
/// it (its row id).
pub(crate) async fn position_sqlite(conn: &mut SqliteConnection) -> sqlx::Result<Cursor> {
    let (epoch, seq) = super::reader::load_meta_sqlite(conn).await?;
    Ok(Cursor {
        epoch: epoch.into(),
        seq,
    })
}

/// Statements that open a Postgres snapshot transaction: `REPEATABLE READ`, every wait
/// bounded by `timeout` (like the relay's, so a stuck reader cannot hold the relays
/// off for longer), and the meta lock taken before the snapshot exists. Its numbering
/// commits with a flush, as the relay's of unsettled rows does: the rows it numbers
/// need not be settled, so a crash must not lose it.
pub(crate) fn postgres_begin(timeout: Duration) -> String {
    let ms = timeout.as_micros().div_ceil(1000).max(1);
    // The first query takes the snapshot, so the one that reads the setting comes
    // after the lock.
    format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; \
         SET LOCAL lock_timeout = {ms}; \
         SET LOCAL statement_timeout = {ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {ms}; \
         LOCK TABLE realtime_meta IN EXCLUSIVE MODE; \
         {DURABLE_COMMIT}"
    )
}

/// Raises `synchronous_commit` from `off` to `local` for the transaction it runs in,
/// and leaves any other setting alone.
pub(crate) const DURABLE_COMMIT: &str = "SELECT set_config('synchronous_commit', 'local', true) \
     WHERE current_setting('synchronous_commit') = 'off';";

/// Numbers every row committed before this transaction's snapshot (opened with
/// [`postgres_begin`]) and returns the log position.
///
/// In (xid, id) order, as the relay numbers: rows whose numbering a crash lost
/// (`src/log/relay.rs`) were settled, so they sort before every other unnumbered row
/// and get the seqs they had.
pub(crate) async fn position_postgres(conn: &mut PgConnection) -> sqlx::Result<Cursor> {
    let row: (String, i64) = sqlx::query_as(
        "WITH batch AS ( \
           SELECT id, row_number() OVER (ORDER BY xid, id) AS n FROM realtime_outbox \
           WHERE seq IS NULL \
         ), numbered AS ( \
           UPDATE realtime_outbox o \
           SET seq = (SELECT last_seq FROM realtime_meta WHERE id = 1) + batch.n \
           FROM batch WHERE o.id = batch.id RETURNING o.seq \
         ), meta AS ( \
           UPDATE realtime_meta \
           SET last_seq = greatest(last_seq, coalesce((SELECT max(seq) FROM numbered), 0)) \
           WHERE id = 1 RETURNING epoch, last_seq \
         ) \
         SELECT epoch, last_seq FROM meta",
    )
    .fetch_one(conn)
    .await?;
    read_position(row)
}

fn read_position((epoch, last): (String, i64)) -> sqlx::Result<Cursor> {
    Ok(Cursor {
        epoch: epoch.into(),
        seq: u64::try_from(last).unwrap_or(0),
    })
}
