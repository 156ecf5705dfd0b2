//! Writing events into `realtime_outbox`: inside the caller's transaction, or (a
//! SQLite node's broadcasts, `appender.rs`) several in one statement of their own.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{
    Database, Encode, PgConnection, Row, SqliteConnection, Type, query::Query, types::Json,
};

use crate::event::LogEntry;

/// The outbox's columns after `seq`, in the order [`bind_event`] binds them.
macro_rules! event_columns {
    () => {
        "collection, record_key, action, event_name, payload, changes, acl, except_connection, created_at, previous, mutation, source"
    };
}

/// The seq below the next one on SQLite: the newest row's, or the floor that deletions
/// leave in `realtime_meta.last_seq` (see the `seq_is_the_row_id` migration).
macro_rules! sqlite_last_seq {
    () => {
        "max(coalesce((SELECT max(seq) FROM realtime_outbox), 0), \
             (SELECT last_seq FROM realtime_meta WHERE id = 1))"
    };
}

/// On SQLite the insert names its seq: one above the last (`sqlite_last_seq!`).
/// Writers are serialized, so that is the next seq in commit order.
const SQLITE_INSERT: &str = concat!(
    "INSERT INTO realtime_outbox (seq, ",
    event_columns!(),
    ") VALUES (",
    sqlite_last_seq!(),
    " + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq"
);

/// The most events [`insert_sqlite_batch`] writes in one statement: 12 parameters
/// each, far below SQLite's limit of 32,766, and few enough statements (one per batch
/// size) to stay prepared on each connection.
pub(crate) const SQLITE_MAX_BATCH: usize = 64;

macro_rules! postgres_insert {
    ($rows:literal) => {
        concat!(
            "INSERT INTO realtime_outbox (",
            event_columns!(),
            ") ",
            $rows
        )
    };
}
const POSTGRES_INSERT: &str =
    postgres_insert!("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
/// The event row of a model write made by a sibling in the same `WITH` as this: one
/// row per row that `tidings_written` returns, so none if the write found nothing.
const POSTGRES_INSERT_PER_WRITTEN: &str = postgres_insert!(
    "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM tidings_written"
);

/// One statement (a data-modifying CTE) that runs the model write `write` and writes
/// the event row for the row it returns, none if it returned none, then selects the
/// row as stored (`to_jsonb`) and the event row's id. `write` names its table
/// `tidings_row` and numbers its own parameters from `$13`: `$1`-`$12` are the
/// event's, bound by [`bind_event`].
pub fn postgres_write_with_event(write: &str) -> String {
    format!(
        "WITH tidings_written AS ({write} RETURNING to_jsonb(tidings_row.*) AS stored), \
         tidings_event AS ({POSTGRES_INSERT_PER_WRITTEN} RETURNING id) \
         SELECT tidings_written.stored, tidings_event.id \
         FROM tidings_written, tidings_event"
    )
}

/// Inserts `event` as an outbox row on SQLite, where the insert numbers it; returns
/// its seq, which is the event's for good once the transaction commits.
pub async fn insert_sqlite(conn: &mut SqliteConnection, event: &LogEntry) -> sqlx::Result<u64> {
    let seq: i64 = bind_event(sqlx::query(SQLITE_INSERT), event)
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok(u64::try_from(seq).unwrap_or(0))
}

/// The statement that inserts `n` events on SQLite, numbered `last + 1` to `last + n`
/// in their order, `last` read once (a materialized `WITH`) before any row goes in.
fn sqlite_batch_insert(n: usize) -> &'static str {
    static STATEMENTS: OnceLock<Vec<String>> = OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        (1..=SQLITE_MAX_BATCH)
            .map(|n| {
                let rows: Vec<String> = (1..=n)
                    .map(|i| format!("({i}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                    .collect();
                format!(
                    "WITH base(last) AS MATERIALIZED (SELECT {last}), \
                     batch(n, {columns}) AS (VALUES {rows}) \
                     INSERT INTO realtime_outbox (seq, {columns}) \
                     SELECT base.last + batch.n, {columns} FROM base, batch ORDER BY batch.n",
                    last = sqlite_last_seq!(),
                    columns = event_columns!(),
                    rows = rows.join(", "),
                )
            })
            .collect()
    });
    &statements[n - 1]
}

/// Inserts `events` (1 to [`SQLITE_MAX_BATCH`]) as outbox rows on SQLite in one
/// statement, numbered in their order; returns their seqs in that order.
///
/// The statement returns no rows: the seq is the row id and the rows go in in the
/// events' order, so SQLite's last insert row id is the last event's seq. With
/// `RETURNING`, sqlx's connection thread sends the first row before SQLite has
/// committed, and the caller wakes once for the row and again for the commit; each
/// wake from that thread can cost a parked worker thread's wake-up.
pub(crate) async fn insert_sqlite_batch(
    conn: &mut SqliteConnection,
    events: &[LogEntry],
) -> sqlx::Result<Vec<u64>> {
    debug_assert!((1..=SQLITE_MAX_BATCH).contains(&events.len()));
    let written = events
        .iter()
        .fold(sqlx::query(sqlite_batch_insert(events.len())), bind_event)
        .execute(conn)
        .await?;
    let count = events.len() as u64;
    let last = u64::try_from(written.last_insert_rowid()).unwrap_or(0);
    if written.rows_affected() != count || last < count {
        return Err(sqlx::Error::Protocol(format!(
            "an outbox batch of {count} wrote {} rows, the last numbered {last}",
            written.rows_affected()
        )));
    }
    Ok((last - count + 1..=last).collect())
}

/// Inserts `event` as an unsequenced outbox row on Postgres.
pub(crate) async fn insert_postgres(conn: &mut PgConnection, event: &LogEntry) -> sqlx::Result<()> {
    bind_event(sqlx::query(POSTGRES_INSERT), event)
        .execute(conn)
        .await?;
    Ok(())
}

/// Binds the twelve insert parameters in column order, on either backend.
pub fn bind_event<'q, DB>(
    query: Query<'q, DB, DB::Arguments>,
    event: &LogEntry,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t Value>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Json<&'t Vec<String>>>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t Map<String, Value>>: Encode<'t, DB> + Type<DB>,
    for<'t> DateTime<Utc>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<Json<&'t Map<String, Value>>>: Encode<'t, DB> + Type<DB>,
{
    query
        .bind(event.collection.as_str())
        .bind(event.key.as_deref())
        .bind(event.action.as_str())
        .bind(event.event.as_deref())
        .bind(Json(&event.payload))
        .bind(event.changes.as_ref().map(Json))
        .bind(Json(&event.acl))
        .bind(event.except.as_deref())
        .bind(event.ts)
        .bind(event.previous.as_deref().map(Json))
        .bind(event.mutation.as_deref())
        .bind(event.source.to_column())
}

/// Rewrites what a record event takes from the stored rows (its key, payload, changes,
/// rule fields and previous values) in the outbox row that a model write's own
/// statement wrote from the event predicted before it (see `model::tx`).
const POSTGRES_CORRECT: &str = "UPDATE realtime_outbox \
     SET record_key = $1, payload = $2, changes = $3, acl = $4, previous = $5 WHERE id = $6";

/// Rewrites the event row with id `id` to say `event` (see [`POSTGRES_CORRECT`]).
pub(crate) async fn correct_postgres(
    conn: &mut PgConnection,
    id: i64,
    event: &LogEntry,
) -> sqlx::Result<()> {
    sqlx::query(POSTGRES_CORRECT)
        .bind(event.key.as_deref())
        .bind(Json(&event.payload))
        .bind(event.changes.as_ref().map(Json))
        .bind(Json(&event.acl))
        .bind(event.previous.as_deref().map(Json))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
