//! The database handle: SQLite or Postgres, chosen by URL, with the same API above it.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Connection as _, PgPool, SqlitePool,
    migrate::Migrator,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// The library's own migrations (the event log tables).
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Failure to open or migrate the database. Carries the URL's scheme, never the URL,
/// since URLs hold passwords.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres://`/`postgresql://`.
    #[error("unsupported database URL scheme {0:?}: expected sqlite: or postgres://")]
    UnsupportedScheme(String),
    /// The driver failed.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pool on one of the supported databases.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite: one writer at a time, so commit order is rowid order.
    Sqlite(SqlitePool),
    /// Postgres: many writers; the relay orders events by visibility.
    Postgres(PgPool),
}

/// How long a SQLite writer waits for the write lock before it fails with "database is
/// locked"; a node's own writers wait as long for their turn (`write_turns`).
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a pooled Postgres connection may sit idle before it is pinged on acquire.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

impl Db {
    /// Opens a pool for `url` (`sqlite:path?mode=rwc`, `sqlite::memory:`, `postgres://...`).
    /// SQLite files are created if missing and run in WAL mode.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            // An in-memory database exists once per connection: keep exactly one.
            let max = if url.contains(":memory:") || url.contains("mode=memory") {
                1
            } else {
                8
            };
            // No ping before each acquire: an embedded database has no other end that
            // could have hung up, and the ping is a round trip to the connection's
            // thread on every use of the pool (sqlx still pings once on release).
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // A ping before each acquire is a round trip on every store transaction and
            // relay batch; a connection that was in use a moment ago is as good as its
            // last statement, so only one idle long enough to have been cut off (a
            // server restart, a dropped link) is pinged first, as sqlx's docs suggest.
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_AFTER_IDLE {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect(url)
                .await?;
            Ok(Self::Postgres(pool))
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            Err(DbError::UnsupportedScheme(scheme))
        }
    }

    /// Runs the library's migrations. Other migrators (the app's) may share the
    /// `_sqlx_migrations` table: versions that are not ours are ignored.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => {
                tolerate_other_migrations(&SQLITE_MIGRATIONS)
                    .run(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                tolerate_other_migrations(&POSTGRES_MIGRATIONS)
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }
}

/// A copy of `migrator` that tolerates versions applied by other migrators.
pub fn tolerate_other_migrations(migrator: &Migrator) -> Migrator {
    let mut copy = Migrator {
        migrations: migrator.migrations.clone(),
        ..Migrator::DEFAULT
    };
    copy.set_ignore_missing(true);
    copy
}
