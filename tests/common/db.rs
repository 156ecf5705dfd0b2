//! Fresh, isolated databases for integration tests: a temporary SQLite file, or a new
//! schema on the machine's Postgres (`DATABASE_URL`).

use std::time::Duration;

use tidings::Db;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh schema on `DATABASE_URL`.
    Postgres,
}

/// Where Postgres is when `DATABASE_URL` is unset: the default the README and
/// `scripts/test` document.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long reaching Postgres may take before the test fails instead of hanging.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Postgres the tests use: `DATABASE_URL`, or [`DEFAULT_POSTGRES_URL`].
/// Every developer and CI machine runs one, so the Postgres tests never skip.
pub fn postgres_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => DEFAULT_POSTGRES_URL.to_owned(),
    }
}

/// A database URL for `backend` that no other test shares.
/// SQLite: a file in a fresh temporary directory. Postgres: a new schema, selected
/// through the connection's `search_path`.
pub async fn fresh_database_url(backend: Backend) -> String {
    let unique = format!(
        "tidings_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("tidings-tests");
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!("sqlite:{}", dir.join(format!("{unique}.db")).display())
        }
        Backend::Postgres => {
            let base = postgres_url();
            let admin = connect_to_postgres(&base).await;
            let Db::Postgres(pool) = &admin else {
                panic!("DATABASE_URL is not a postgres:// URL: {base}")
            };
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {unique}")))
                .execute(pool)
                .await
                .expect("create schema");
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{unique}")
        }
    }
}

/// A fresh Postgres URL (see [`fresh_database_url`]) whose sessions carry an
/// `application_name` of their own, starting with `prefix`, so a test can find them in
/// `pg_stat_activity` among the other tests' sessions. Returns the name and the URL.
pub async fn named_postgres_url(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    // A fresh Postgres URL always has a query: the schema's `options`.
    let url = format!(
        "{}&application_name={name}",
        fresh_database_url(Backend::Postgres).await
    );
    (name, url)
}

/// Connects to the tests' Postgres, or fails the test saying where it looked.
async fn connect_to_postgres(url: &str) -> Db {
    let unreachable = |cause: &dyn std::fmt::Display| -> ! {
        panic!(
            "cannot reach Postgres at {url} ({cause}); the Postgres tests need it: \
             start Postgres there, or set DATABASE_URL to one that runs"
        )
    };
    match tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, Db::connect(url)).await {
        Ok(Ok(db)) => db,
        Ok(Err(error)) => unreachable(&error),
        Err(_) => unreachable(&format!(
            "no connection within {POSTGRES_CONNECT_TIMEOUT:?}"
        )),
    }
}

/// Opens and migrates a fresh database.
pub async fn fresh_db(backend: Backend) -> Db {
    let url = fresh_database_url(backend).await;
    let db = Db::connect(&url).await.expect("connect");
    db.migrate().await.expect("migrate");
    db
}

/// The SQLite pool of `db`, for SQL a test runs beside the node; panics on Postgres,
/// which a SQLite test never has.
pub fn sqlite_pool(db: &Db) -> &sqlx::SqlitePool {
    match db {
        Db::Sqlite(pool) => pool,
        Db::Postgres(_) => panic!("a SQLite test got a Postgres database"),
    }
}
