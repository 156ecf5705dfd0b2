//! Reading the sequenced log: its meta row, ranges of events, the oldest retained seq.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{ColumnIndex, Decode, PgConnection, Row, SqliteConnection, Type, types::Json};

use crate::{db::Db, event::LogEntry, source::Source};

/// The columns every log read selects, in the order `decode_row` expects.
pub(crate) const EVENT_COLUMNS: &str = "seq, collection, record_key, action, event_name, payload, \
     changes, acl, except_connection, created_at, previous, mutation, source";

/// How many columns `EVENT_COLUMNS` names.
const EVENT_COLUMN_COUNT: usize = 13;

/// On SQLite, the log's position: its newest row's seq, or the floor that deletions
/// leave in `last_seq` when it is higher (the `seq_is_the_row_id` migration).
const SQLITE_META: &str = "SELECT epoch, \
       max(last_seq, coalesce((SELECT max(seq) FROM realtime_outbox), 0)) \
     FROM realtime_meta WHERE id = 1";

/// The log's epoch and last assigned seq.
pub(crate) async fn load_meta(db: &Db) -> sqlx::Result<(String, u64)> {
    match db {
        Db::Sqlite(pool) => load_meta_sqlite(&mut *pool.acquire().await?).await,
        Db::Postgres(pool) => {
            let (epoch, last): (String, i64) =
                sqlx::query_as("SELECT epoch, last_seq FROM realtime_meta WHERE id = 1")
                    .fetch_one(pool)
                    .await?;
            Ok((epoch, u64::try_from(last).unwrap_or(0)))
        }
    }
}

/// [`load_meta`] on a SQLite connection, so a caller's transaction sees it as of its
/// own snapshot.
pub(crate) async fn load_meta_sqlite(conn: &mut SqliteConnection) -> sqlx::Result<(String, u64)> {
    let (epoch, last): (String, i64) = sqlx::query_as(SQLITE_META).fetch_one(conn).await?;
    Ok((epoch, u64::try_from(last).unwrap_or(0)))
}

/// The smallest seq still in the table, if any.
pub(crate) async fn oldest_seq(db: &Db) -> sqlx::Result<Option<u64>> {
    const SQL: &str = "SELECT min(seq) FROM realtime_outbox WHERE seq IS NOT NULL";
    let (min,): (Option<i64>,) = match db {
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_one(pool).await?,
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_one(pool).await?,
    };
    Ok(min.and_then(|m| u64::try_from(m).ok()))
}

/// Events with `after < seq <= upto`, in seq order, at most `limit` of them (public
/// only for the crate's own tests, through `__private`).
pub async fn read_range(
    db: &Db,
    after: u64,
    upto: u64,
    limit: u32,
) -> sqlx::Result<Vec<(u64, LogEntry)>> {
    let sql = range_sql();
    let (after, upto, limit) = (to_i64(after), to_i64(upto), i64::from(limit));
    match db {
        Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode_row)
            .collect(),
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            read_range_postgres(&mut conn, after, upto, limit).await
        }
    }
}

/// [`read_range`] on a Postgres connection the caller holds (the relay reads what it
/// just numbered on the connection it numbered with: one checkout per batch).
pub(crate) async fn read_range_postgres(
    conn: &mut PgConnection,
    after: i64,
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<(u64, LogEntry)>> {
    sqlx::query(sqlx::AssertSqlSafe(range_sql()))
        .bind(after)
        .bind(upto)
        .bind(limit)
        .fetch_all(conn)
        .await?
        .iter()
        .map(decode_row)
        .collect()
}

/// The events with `$1 < seq <= $2`, in seq order, at most `$3`. `$n` placeholders:
/// SQLite takes them as numbered parameters too, so one text serves both backends.
fn range_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM realtime_outbox \
         WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"
    )
}

/// On SQLite: the log's epoch and up to `limit` events with `seq > after`, in seq
/// order, in one read (the epoch is an empty string when there are none).
pub(crate) async fn read_after_sqlite(
    conn: &mut SqliteConnection,
    after: u64,
    limit: u32,
) -> sqlx::Result<(String, Vec<(u64, LogEntry)>)> {
    // The epoch rides along as the last column, after the ones `decode_row` reads.
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, (SELECT epoch FROM realtime_meta WHERE id = 1) \
         FROM realtime_outbox WHERE seq > ? ORDER BY seq LIMIT ?"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?;
    let epoch = match rows.first() {
        Some(row) => row.try_get(EVENT_COLUMN_COUNT)?,
        None => String::new(),
    };
    let events = rows.iter().map(decode_row).collect::<sqlx::Result<_>>()?;
    Ok((epoch, events))
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Decodes one row selected with `EVENT_COLUMNS`, on either backend.
pub(crate) fn decode_row<'r, R>(row: &'r R) -> sqlx::Result<(u64, LogEntry)>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Json<Value>: Decode<'r, R::Database> + Type<R::Database>,
    Json<Map<String, Value>>: Decode<'r, R::Database> + Type<R::Database>,
    Json<Vec<String>>: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    let seq: i64 = row.try_get(0)?;
    let action: String = row.try_get(3)?;
    let action = action
        .parse()
        .map_err(|e: String| sqlx::Error::ColumnDecode {
            index: "action".into(),
            source: e.into(),
        })?;
    let payload: Json<Value> = row.try_get(5)?;
    let changes: Option<Json<Vec<String>>> = row.try_get(6)?;
    let acl: Json<Map<String, Value>> = row.try_get(7)?;
    let previous: Option<Json<Map<String, Value>>> = row.try_get(10)?;
    let event = LogEntry {
        collection: row.try_get(1)?,
        key: row.try_get(2)?,
        action,
        event: row.try_get(4)?,
        payload: payload.0,
        changes: changes.map(|c| c.0),
        acl: acl.0,
        previous: previous.map(|p| Box::new(p.0)),
        mutation: row.try_get(11)?,
        source: Source::from_column(row.try_get::<Option<String>, _>(12)?.as_deref()),
        except: row.try_get(8)?,
        ts: row.try_get(9)?,
    };
    Ok((u64::try_from(seq).unwrap_or(0), event))
}

#[cfg(test)]
mod tests {
    use super::{EVENT_COLUMN_COUNT, EVENT_COLUMNS};

    #[test]
    fn the_column_count_matches_the_columns() {
        assert_eq!(EVENT_COLUMNS.split(',').count(), EVENT_COLUMN_COUNT);
    }
}
