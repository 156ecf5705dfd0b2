//! Fresh, isolated databases for integration tests: a temporary SQLite file, or a new
//! schema on the machine's Postgres (`DATABASE_URL`).

use tidings::db::Db;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh schema on `DATABASE_URL`.
    Postgres,
}

/// The Postgres URL, or `None` when the test may be skipped (not in CI and unset).
/// In CI (`CI=true`) a missing `DATABASE_URL` is a failure, never a skip.
pub fn postgres_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but DATABASE_URL is not set: Postgres tests must run in CI")
        }
        _ => {
            eprintln!("DATABASE_URL not set: skipping the Postgres half of this test");
            None
        }
    }
}

/// A database URL for `backend` that no other test shares, or `None` to skip.
/// SQLite: a file in a fresh temporary directory. Postgres: a new schema, selected
/// through the connection's `search_path`.
pub async fn fresh_database_url(backend: Backend) -> Option<String> {
    let unique = format!(
        "tidings_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("tidings-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            Some(format!(
                "sqlite:{}",
                dir.join(format!("{unique}.db")).display()
            ))
        }
        Backend::Postgres => {
            let base = postgres_url()?;
            let admin = Db::connect(&base).await.expect("connect to DATABASE_URL");
            let Db::Postgres(pool) = &admin else {
                panic!("DATABASE_URL is not a postgres:// URL")
            };
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {unique}")))
                .execute(pool)
                .await
                .expect("create schema");
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            Some(format!("{base}{sep}options=-c%20search_path%3D{unique}"))
        }
    }
}

/// Opens and migrates a fresh database, or `None` to skip.
pub async fn fresh_db(backend: Backend) -> Option<Db> {
    let url = fresh_database_url(backend).await?;
    let db = Db::connect(&url).await.expect("connect");
    db.migrate().await.expect("migrate");
    Some(db)
}

/// Both backends, for tests that must pass on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
