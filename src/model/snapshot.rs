//! Consistent reads with their log position: [`Store::snapshot_list`] and
//! [`Store::snapshot_get`] return records together with the cursor they are at, so
//! that subscribing with `since` = that cursor yields exactly the changes after the
//! read (how the position is made exact: `src/log/snapshot.rs`).

use super::{
    Model, StoreError, event,
    sql::{Conn, Row, Target},
    store::Store,
};
use crate::{db::Db, event::Cursor, log::snapshot};

/// Records read at one log position.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<T> {
    /// What was read.
    pub data: T,
    /// The log position the read is at: every event at or before it is reflected in
    /// `data`, none after it is.
    pub cursor: Cursor,
}

/// What a snapshot reads.
enum Read<'a> {
    List(u32),
    Get(&'a str),
}

impl Store {
    /// Up to `limit` records ordered by id, and the log position they are at.
    pub async fn snapshot_list<M: Model>(
        &self,
        limit: u32,
    ) -> Result<Snapshot<Vec<M>>, StoreError> {
        let target = Target::of::<M>()?;
        let (rows, cursor) = self.read_at_position(&target, Read::List(limit)).await?;
        let data = event::from_rows(rows, target.id_field)?;
        Ok(Snapshot { data, cursor })
    }

    /// The record with this id (or `None`), and the log position the read is at.
    pub async fn snapshot_get<M: Model>(
        &self,
        id: &str,
    ) -> Result<Snapshot<Option<M>>, StoreError> {
        let target = Target::of::<M>()?;
        let (rows, cursor) = self.read_at_position(&target, Read::Get(id)).await?;
        let data = rows
            .into_iter()
            .next()
            .map(|row| event::from_row(row, id))
            .transpose()?;
        Ok(Snapshot { data, cursor })
    }

    /// Reads in one transaction that also fixes the log position, then commits (the
    /// transaction numbered rows: see `src/log/snapshot.rs`). The relay is woken, so a
    /// waiting relay on this node does not wait for its next poll.
    async fn read_at_position(
        &self,
        target: &Target,
        read: Read<'_>,
    ) -> Result<(Vec<Row>, Cursor), StoreError> {
        let op = "snapshot";
        let id = match read {
            Read::Get(id) => Some(id),
            Read::List(_) => None,
        };
        let rows = |row: Option<Row>| row.into_iter().collect::<Vec<_>>();
        let result = match self.db() {
            Db::Sqlite(pool) => {
                // Its `BEGIN IMMEDIATE` takes the write lock: a writer's turn too.
                let _turn = self.write_turn().await.map_err(target.db_error(op, id))?;
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(target.db_error(op, id))?;
                let cursor = snapshot::position_sqlite(&mut tx)
                    .await
                    .map_err(target.db_error(op, id))?;
                let data = match read {
                    Read::List(limit) => Conn::Sqlite(&mut tx, None).list(target, limit).await?,
                    Read::Get(id) => rows(Conn::Sqlite(&mut tx, None).get(target, id).await?),
                };
                tx.commit().await.map_err(target.db_error(op, id))?;
                (data, cursor)
            }
            Db::Postgres(pool) => {
                let begin = snapshot::postgres_begin(self.snapshot_timeout());
                let mut tx = pool
                    .begin_with(sqlx::AssertSqlSafe(begin))
                    .await
                    .map_err(target.db_error(op, id))?;
                let cursor = snapshot::position_postgres(&mut tx)
                    .await
                    .map_err(target.db_error(op, id))?;
                let data = match read {
                    Read::List(limit) => Conn::Postgres(&mut tx).list(target, limit).await?,
                    Read::Get(id) => rows(Conn::Postgres(&mut tx).get(target, id).await?),
                };
                tx.commit().await.map_err(target.db_error(op, id))?;
                (data, cursor)
            }
        };
        Ok(result)
    }
}
