//! Model statements on Postgres.
//!
//! Values travel as one `jsonb` parameter and are turned into a row of the table's own
//! type with `jsonb_populate_record(NULL::"table", $n)`, so every column gets its
//! declared type (boolean, timestamptz, integer...) without the model spelling it out.
//! Rows come back as `to_jsonb(row)`.

use serde_json::{Value, json};
use sqlx::{
    AssertSqlSafe, PgConnection, Postgres, Row as _, postgres::PgArguments, query::Query,
    types::Json,
};

use super::{EventRowId, PredictEvent, Row, Target, Updated, fields};
use crate::{event::LogEntry, log::outbox, model::StoreError};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The alias of the model's table in every statement (and the one
/// `outbox::postgres_write_with_event` expects). `alias.*` is used wherever the
/// whole row is meant, because a bare alias would name a column of the same name.
const ROW: &str = "tidings_row";

/// `WHERE` condition on the id, with the id as `$1`. The id arrives as text and is
/// converted by `jsonb_populate_record` to whatever type the id column has; the
/// function is stable, so the primary key index is still used.
fn id_condition(t: &Target) -> String {
    id_condition_at(t, 1)
}

/// [`id_condition`] with the id as parameter `$n`.
fn id_condition_at(t: &Target, n: usize) -> String {
    format!(
        "{ROW}.{id} = (jsonb_populate_record(NULL::{table}, ${n}::jsonb)).{id}",
        id = t.quoted_id,
        table = t.quoted_table,
    )
}

fn id_param(t: &Target, id: &str) -> Json<Value> {
    Json(json!({ t.id_field: id }))
}

fn into_row(value: Value) -> Row {
    match value {
        Value::Object(row) => row,
        // to_jsonb of a whole row is always an object.
        _ => Row::new(),
    }
}

pub(super) async fn get(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    let sql = format!(
        "SELECT to_jsonb({ROW}.*) FROM {table} AS {ROW} WHERE {cond}",
        table = t.quoted_table,
        cond = id_condition(t),
    );
    one_row_by_id(conn, t, id, sql, "get").await
}

/// Runs `sql`, whose only parameter is the id and whose only column is a row as
/// `jsonb`, and returns that row if there was one.
async fn one_row_by_id(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
    sql: String,
    op: &'static str,
) -> Result<Option<Row>, StoreError> {
    let row: Option<Value> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(id_param(t, id))
        .fetch_optional(conn)
        .await
        .map_err(t.db_error(op, Some(id)))?;
    Ok(row.map(into_row))
}

pub(super) async fn list(
    conn: &mut PgConnection,
    t: &Target,
    limit: u32,
) -> Result<Vec<Row>, StoreError> {
    let sql = format!(
        "SELECT to_jsonb({ROW}.*) FROM {table} AS {ROW} ORDER BY {ROW}.{id} LIMIT $1",
        table = t.quoted_table,
        id = t.quoted_id,
    );
    let rows: Vec<Value> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(t.db_error("list", None))?;
    Ok(rows.into_iter().map(into_row).collect())
}

pub(super) async fn insert(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
    record: &Row,
) -> Result<Row, StoreError> {
    let fields = fields(t, record)?;
    let sql = if fields.is_empty() {
        format!(
            "INSERT INTO {table} AS {ROW} DEFAULT VALUES RETURNING to_jsonb({ROW}.*)",
            table = t.quoted_table,
        )
    } else {
        let list = fields
            .iter()
            .map(|f| f.quoted.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {table} AS {ROW} ({list}) \
             SELECT {list} FROM jsonb_populate_record(NULL::{table}, $1::jsonb) \
             RETURNING to_jsonb({ROW}.*)",
            table = t.quoted_table,
        )
    };
    let row: Value = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(Json(record))
        .fetch_one(conn)
        .await
        .map_err(t.db_error("insert", Some(id)))?;
    Ok(into_row(row))
}

/// [`insert`] with the outbox row of `event` written by the same statement, as a
/// data-modifying CTE: both happen or neither, in one round trip. Returns the row as
/// stored and the event row's id; no event row for a record without fields.
pub(super) async fn insert_recording(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
    record: &Row,
    event: &LogEntry,
) -> Result<(Row, Option<EventRowId>), StoreError> {
    let fields = fields(t, record)?;
    if fields.is_empty() {
        // `DEFAULT VALUES` binds no record, and the event's parameters are numbered
        // before it: such a rare insert takes its own statement.
        return Ok((insert(conn, t, id, record).await?, None));
    }
    let list = fields
        .iter()
        .map(|f| f.quoted.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let write = format!(
        "INSERT INTO {table} AS {ROW} ({list}) \
         SELECT {list} FROM jsonb_populate_record(NULL::{table}, $13::jsonb)",
        table = t.quoted_table,
    );
    let written = write_with_event(conn, t, id, "insert", &write, event, |query| {
        query.bind(Json(record))
    })
    .await?;
    // An insert that succeeds always returns its row.
    written
        .map(|(row, event_row)| (row, Some(event_row)))
        .ok_or_else(|| t.db_error("insert", Some(id))(sqlx::Error::RowNotFound))
}

/// Runs `write` (a model write whose own parameters start at `$13`, which `bind_write`
/// binds) and, in the same statement, writes the event row of `event` for the row it
/// returns: none if it returned none. Returns the row as stored and the event row's
/// id. The event's parameters are `$1`-`$12`, as `outbox::bind_event` binds them.
async fn write_with_event<'q>(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
    op: &'static str,
    write: &str,
    event: &LogEntry,
    bind_write: impl FnOnce(PgQuery<'q>) -> PgQuery<'q>,
) -> Result<Option<(Row, EventRowId)>, StoreError> {
    let sql = outbox::postgres_write_with_event(write);
    let query = bind_write(outbox::bind_event(sqlx::query(AssertSqlSafe(sql)), event));
    let written = query
        .fetch_optional(conn)
        .await
        .and_then(|row| {
            row.map(|row| Ok((row.try_get::<Value, _>(0)?, row.try_get::<i64, _>(1)?)))
                .transpose()
        })
        .map_err(t.db_error(op, Some(id)))?;
    Ok(written.map(|(stored, event_id)| (into_row(stored), EventRowId(event_id))))
}

pub(super) async fn update(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
    record: &Row,
    predict: Option<&PredictEvent<'_>>,
) -> Result<Option<Updated>, StoreError> {
    let fields = fields(t, record)?;
    // Overlaying the record on the locked row lets Postgres do the type conversions, so
    // the comparison below sees both sides exactly as they would be stored.
    let lock = format!(
        "SELECT to_jsonb({ROW}.*), to_jsonb(jsonb_populate_record({ROW}.*, $2::jsonb)) \
         FROM {table} AS {ROW} WHERE {cond} FOR UPDATE",
        table = t.quoted_table,
        cond = id_condition(t),
    );
    let found: Option<(Value, Value)> = sqlx::query_as(AssertSqlSafe(lock))
        .bind(id_param(t, id))
        .bind(Json(record))
        .fetch_optional(&mut *conn)
        .await
        .map_err(t.db_error("update", Some(id)))?;
    let Some((old, overlaid)) = found else {
        return Ok(None);
    };
    let (old, overlaid) = (into_row(old), into_row(overlaid));
    // jsonb_populate_record ignores keys that are not columns; the model must not.
    if let Some(f) = fields.iter().find(|f| !old.contains_key(f.name)) {
        return Err(t.unknown_column(f.name));
    }
    let changed: Vec<&String> = fields
        .iter()
        .filter(|f| old.get(f.name) != overlaid.get(f.name))
        .map(|f| &f.quoted)
        .collect();
    if changed.is_empty() {
        return Ok(Some(Updated {
            new: old.clone(),
            old,
            event_row: None,
        }));
    }
    let assignments = changed
        .iter()
        .map(|q| format!("{q} = new_values.{q}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The id and the record follow the event's twelve parameters when it rides along.
    let (id_at, record_at) = if predict.is_some() { (13, 14) } else { (1, 2) };
    let write = format!(
        "UPDATE {table} AS {ROW} SET {assignments} \
         FROM jsonb_populate_record(NULL::{table}, ${record_at}::jsonb) AS new_values \
         WHERE {cond}",
        table = t.quoted_table,
        cond = id_condition_at(t, id_at),
    );
    if let Some(predict) = predict {
        let predicted = predict(&old, &overlaid)?;
        let written = write_with_event(conn, t, id, "update", &write, &predicted, |query| {
            query.bind(id_param(t, id)).bind(Json(record))
        })
        .await?;
        return Ok(written.map(|(new, event_row)| Updated {
            old,
            new,
            event_row: Some((event_row, predicted)),
        }));
    }
    let new: Option<Value> = sqlx::query_scalar(AssertSqlSafe(format!(
        "{write} RETURNING to_jsonb({ROW}.*)"
    )))
    .bind(id_param(t, id))
    .bind(Json(record))
    .fetch_optional(conn)
    .await
    .map_err(t.db_error("update", Some(id)))?;
    Ok(new.map(|new| Updated {
        old,
        new: into_row(new),
        event_row: None,
    }))
}

pub(super) async fn delete(
    conn: &mut PgConnection,
    t: &Target,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    let sql = format!(
        "DELETE FROM {table} AS {ROW} WHERE {cond} RETURNING to_jsonb({ROW}.*)",
        table = t.quoted_table,
        cond = id_condition(t),
    );
    one_row_by_id(conn, t, id, sql, "delete").await
}
