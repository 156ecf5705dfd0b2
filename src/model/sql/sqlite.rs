//! Model statements on SQLite, moving values in and out by the kinds of the table's
//! declared column types (`sqlite_columns`).

use serde_json::{Number, Value};
use sqlx::{
    AssertSqlSafe, Column as _, Row as _, Sqlite, SqliteConnection, Type, ValueRef as _,
    query::Query,
    sqlite::{SqliteArguments, SqliteRow},
};

use std::sync::Arc;

use super::{
    Row, Target, fields,
    sqlite_columns::{Columns, Kind},
    sqlite_schema::{GUARD, InTx},
};
use crate::model::StoreError;

/// Converts a row read with `SELECT *` or `RETURNING *`.
fn read(columns: &Columns, row: &SqliteRow) -> Result<Row, sqlx::Error> {
    let mut out = Row::new();
    for (index, column) in row.columns().iter().enumerate() {
        let kind = columns.kind(column.name()).unwrap_or(Kind::Other);
        out.insert(column.name().to_owned(), read_value(row, index, kind)?);
    }
    Ok(out)
}

fn read_value(row: &SqliteRow, index: usize, kind: Kind) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().into_owned();
    Ok(if storage == <i64 as Type<Sqlite>>::type_info() {
        let i: i64 = row.try_get_unchecked(index)?;
        match kind {
            Kind::Bool => Value::Bool(i != 0),
            Kind::Real => float(i as f64),
            _ => Value::from(i),
        }
    } else if storage == <f64 as Type<Sqlite>>::type_info() {
        float(row.try_get_unchecked(index)?)
    } else if storage == <Vec<u8> as Type<Sqlite>>::type_info() {
        let bytes: Vec<u8> = row.try_get_unchecked(index)?;
        Value::from(bytes)
    } else {
        let text: String = row.try_get_unchecked(index)?;
        match kind {
            Kind::Json => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            _ => Value::String(text),
        }
    })
}

fn float(f: f64) -> Value {
    // SQLite turns NaN into NULL on the way in; infinities have no JSON form either.
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Binds a field value by its JSON type. `JSON` columns get every value as JSON text,
/// so a string survives the round trip as a string rather than being re-parsed.
fn bind<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    t: &Target,
    column: &str,
    kind: Kind,
    value: &Value,
) -> Result<Query<'q, Sqlite, SqliteArguments>, StoreError> {
    Ok(match value {
        Value::Null => query.bind(None::<String>),
        _ if kind == Kind::Json => query.bind(value.to_string()),
        Value::Bool(b) => query.bind(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                query.bind(i)
            } else if n.is_u64() {
                return Err(StoreError::UnsupportedValue {
                    collection: t.collection.to_owned(),
                    column: column.to_owned(),
                    reason: format!("{n} does not fit a 64-bit signed integer"),
                });
            } else {
                query.bind(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => query.bind(s.clone()),
        Value::Array(_) | Value::Object(_) => query.bind(value.to_string()),
    })
}

/// The value as [`read_value`] would return it after storing it, as far as that can be
/// told without SQLite: used only to skip writing columns that would not change.
fn as_stored(kind: Kind, value: &Value) -> Value {
    match (kind, value) {
        (_, Value::Null) | (Kind::Json, _) => value.clone(),
        (Kind::Bool, Value::Number(n)) => Value::Bool(n.as_f64() != Some(0.0)),
        (Kind::Bool, Value::Bool(_)) => value.clone(),
        (Kind::Real, Value::Number(n)) => n.as_f64().map_or(Value::Null, float),
        (Kind::Real, Value::Bool(b)) => float(f64::from(u8::from(*b))),
        (_, Value::Bool(b)) => Value::from(i64::from(*b)),
        (_, Value::Array(_) | Value::Object(_)) => Value::String(value.to_string()),
        _ => value.clone(),
    }
}

pub(super) async fn get(
    conn: &mut SqliteConnection,
    t: &Target,
    tx: Option<InTx<'_>>,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    Ok(locate(conn, t, tx, id).await?.1)
}

/// The row with this id and the table's columns (see [`by_id`]).
async fn locate(
    conn: &mut SqliteConnection,
    t: &Target,
    tx: Option<InTx<'_>>,
    id: &str,
) -> Result<(Arc<Columns>, Option<Row>), StoreError> {
    let sql = |guard: &str| {
        format!(
            "SELECT * FROM {} WHERE {} = ?{guard}",
            t.quoted_table, t.quoted_id
        )
    };
    by_id(conn, t, tx, "get", id, sql).await
}

/// Runs the statement `sql` makes (given the condition to append to its `WHERE`) for
/// the row with this id, and returns the row it returns, with the table's columns.
/// Guarded while the transaction's schema is only assumed (see `sqlite_schema`).
async fn by_id(
    conn: &mut SqliteConnection,
    t: &Target,
    mut tx: Option<InTx<'_>>,
    op: &'static str,
    id: &str,
    sql: impl Fn(&str) -> String,
) -> Result<(Arc<Columns>, Option<Row>), StoreError> {
    if let Some(tx) = &mut tx
        && let Some((version, columns)) = tx.attempt(t.table)
    {
        let row = sqlx::query(AssertSqlSafe(sql(&format!(" AND {GUARD}"))))
            .bind(id)
            .bind(version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(t.db_error(op, Some(id)))?;
        if let Some(row) = row {
            tx.schema.proved();
            let row = read(&columns, &row).map_err(t.db_error(op, Some(id)))?;
            return Ok((columns, Some(row)));
        }
        if !tx
            .guard_stopped(conn, version)
            .await
            .map_err(t.db_error(op, Some(id)))?
        {
            return Ok((columns, None));
        }
    }
    let columns = resolve(conn, t, tx, op, Some(id)).await?;
    let row = sqlx::query(AssertSqlSafe(sql("")))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(t.db_error(op, Some(id)))?;
    let row = row
        .map(|r| read(&columns, &r))
        .transpose()
        .map_err(t.db_error(op, Some(id)))?;
    Ok((columns, row))
}

/// The table's columns for an unguarded statement, checking the transaction's schema
/// first if it was only assumed.
async fn resolve(
    conn: &mut SqliteConnection,
    t: &Target,
    tx: Option<InTx<'_>>,
    op: &'static str,
    id: Option<&str>,
) -> Result<Arc<Columns>, StoreError> {
    let known = match tx {
        Some(tx) => tx.known(conn).await.map_err(t.db_error(op, id))?,
        None => None,
    };
    Columns::resolve(conn, t, known).await
}

/// Only reads outside a store transaction list (`Store::list`, snapshots), so this
/// takes no guard: inside one it would check the schema first.
pub(super) async fn list(
    conn: &mut SqliteConnection,
    t: &Target,
    tx: Option<InTx<'_>>,
    limit: u32,
) -> Result<Vec<Row>, StoreError> {
    let columns = resolve(conn, t, tx, "list", None).await?;
    let sql = format!(
        "SELECT * FROM {} ORDER BY {} LIMIT ?",
        t.quoted_table, t.quoted_id
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(t.db_error("list", None))?;
    rows.iter()
        .map(|r| read(&columns, r))
        .collect::<Result<_, _>>()
        .map_err(t.db_error("list", None))
}

pub(super) async fn insert(
    conn: &mut SqliteConnection,
    t: &Target,
    mut tx: Option<InTx<'_>>,
    id: &str,
    record: &Row,
) -> Result<Row, StoreError> {
    let fields = fields(t, record)?;
    let names = fields.iter().map(|f| f.quoted.as_str()).collect::<Vec<_>>();
    let marks = vec!["?"; names.len()].join(", ");
    // `DEFAULT VALUES` takes no guard: such an insert checks the schema first.
    if let Some(tx) = &mut tx
        && !fields.is_empty()
        && let Some((version, columns)) = tx.attempt(t.table)
    {
        // `INSERT ... SELECT ... WHERE` inserts nothing when the guard fails, and an
        // insert that succeeds always returns its row.
        let sql = format!(
            "INSERT INTO {} ({}) SELECT {marks} WHERE {GUARD} RETURNING *",
            t.quoted_table,
            names.join(", ")
        );
        let row = with_fields(sql, t, &fields, &columns)?
            .bind(version)
            .fetch_optional(&mut *conn)
            .await
            .map_err(t.db_error("insert", Some(id)))?;
        if let Some(row) = row {
            tx.schema.proved();
            return read(&columns, &row).map_err(t.db_error("insert", Some(id)));
        }
    }
    let columns = resolve(conn, t, tx, "insert", Some(id)).await?;
    let sql = if fields.is_empty() {
        format!("INSERT INTO {} DEFAULT VALUES RETURNING *", t.quoted_table)
    } else {
        format!(
            "INSERT INTO {} ({}) VALUES ({marks}) RETURNING *",
            t.quoted_table,
            names.join(", ")
        )
    };
    let row = with_fields(sql, t, &fields, &columns)?
        .fetch_one(conn)
        .await
        .map_err(t.db_error("insert", Some(id)))?;
    read(&columns, &row).map_err(t.db_error("insert", Some(id)))
}

/// `sql` with every field's value bound, in order, by its column's kind.
fn with_fields<'q>(
    sql: String,
    t: &Target,
    fields: &[super::Field<'q>],
    columns: &Columns,
) -> Result<Query<'q, Sqlite, SqliteArguments>, StoreError> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for f in fields {
        query = bind(query, t, f.name, columns.require(t, f.name)?, f.value)?;
    }
    Ok(query)
}

pub(super) async fn update(
    conn: &mut SqliteConnection,
    t: &Target,
    tx: Option<InTx<'_>>,
    id: &str,
    record: &Row,
) -> Result<Option<(Row, Row)>, StoreError> {
    let fields = fields(t, record)?;
    // No row lock is needed: the transaction began IMMEDIATE, so it already holds the
    // database's write lock. Reading the row proves (or checks) the schema, so the
    // update itself needs no guard.
    let (columns, old) = locate(conn, t, tx, id).await?;
    let Some(old) = old else {
        return Ok(None);
    };
    let kinds = fields
        .iter()
        .map(|f| columns.require(t, f.name))
        .collect::<Result<Vec<_>, _>>()?;
    let changed: Vec<_> = fields
        .iter()
        .zip(kinds)
        .filter(|(f, kind)| old.get(f.name) != Some(&as_stored(*kind, f.value)))
        .collect();
    if changed.is_empty() {
        return Ok(Some((old.clone(), old)));
    }
    let assignments = changed
        .iter()
        .map(|(f, _)| format!("{} = ?", f.quoted))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE {} SET {assignments} WHERE {} = ? RETURNING *",
        t.quoted_table, t.quoted_id
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for (f, kind) in &changed {
        query = bind(query, t, f.name, *kind, f.value)?;
    }
    let row = query
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(t.db_error("update", Some(id)))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let new = read(&columns, &row).map_err(t.db_error("update", Some(id)))?;
    Ok(Some((old, new)))
}

pub(super) async fn delete(
    conn: &mut SqliteConnection,
    t: &Target,
    tx: Option<InTx<'_>>,
    id: &str,
) -> Result<Option<Row>, StoreError> {
    let sql = |guard: &str| {
        format!(
            "DELETE FROM {} WHERE {} = ?{guard} RETURNING *",
            t.quoted_table, t.quoted_id
        )
    };
    Ok(by_id(conn, t, tx, "delete", id, sql).await?.1)
}
