//! Installing capture at runtime, for quick starts and tests: the same SQL as
//! [`super::sql`], run in one transaction.

use super::{Backend, CaptureError, sql};
use crate::{db::Db, model::Model};

/// Installs (or replaces) capture on `M`'s table in `db`.
///
/// On Postgres it holds a transaction-level advisory lock, so nodes that start
/// together do not replace the shared function concurrently (which Postgres refuses).
pub async fn install<M: Model>(db: &Db) -> Result<(), CaptureError> {
    let failed = |source| CaptureError::Database {
        table: M::TABLE.to_owned(),
        source,
    };
    match db {
        Db::Postgres(pool) => {
            let script = sql::<M>(Backend::Postgres)?;
            let mut tx = pool.begin().await.map_err(failed)?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tidings.capture'))")
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(script))
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)
        }
        Db::Sqlite(pool) => {
            let script = sql::<M>(Backend::Sqlite)?;
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(script))
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)
        }
    }
}
