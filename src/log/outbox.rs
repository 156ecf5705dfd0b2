//! Writing events into `realtime_outbox`, inside the caller's transaction.

use sqlx::{PgConnection, SqliteConnection, types::Json};

use crate::event::NewEvent;

/// Inserts `event` as an unsequenced outbox row on SQLite.
pub async fn insert_sqlite(conn: &mut SqliteConnection, event: &NewEvent) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO realtime_outbox \
         (collection, record_key, action, event_name, payload, changes, acl, except_connection, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&event.collection)
    .bind(&event.key)
    .bind(event.action.as_str())
    .bind(&event.event)
    .bind(Json(&event.payload))
    .bind(event.changes.as_ref().map(Json))
    .bind(Json(&event.acl))
    .bind(&event.except)
    .bind(event.ts)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts `event` as an unsequenced outbox row on Postgres.
pub async fn insert_postgres(conn: &mut PgConnection, event: &NewEvent) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO realtime_outbox \
         (collection, record_key, action, event_name, payload, changes, acl, except_connection, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&event.collection)
    .bind(&event.key)
    .bind(event.action.as_str())
    .bind(&event.event)
    .bind(Json(&event.payload))
    .bind(event.changes.as_ref().map(Json))
    .bind(Json(&event.acl))
    .bind(&event.except)
    .bind(event.ts)
    .execute(conn)
    .await?;
    Ok(())
}
