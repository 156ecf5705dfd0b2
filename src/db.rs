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
    /// A [`DbOptions`] value is out of its range.
    #[error("{0}")]
    InvalidOption(String),
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
/// locked", unless [`DbOptions::sqlite_busy_timeout`] says otherwise.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest busy timeout [`DbOptions`] accepts: a writer kept waiting longer than
/// this by another is stuck, not slow.
const MAX_SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(600);

/// The most connections [`DbOptions`] accepts in a pool.
const MAX_POOL_CONNECTIONS: u32 = 1024;

/// Pool sizes when [`DbOptions::max_connections`] is not set.
const SQLITE_FILE_CONNECTIONS: u32 = 8;
const POSTGRES_CONNECTIONS: u32 = 16;

/// How [`Db::connect_with`] opens its pool. Start from `DbOptions::default()` and set
/// what differs; [`Db::connect`] uses the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DbOptions {
    /// The most connections the pool opens, 1 to 1024. Default: 8 on a SQLite file, 16
    /// on Postgres. An in-memory SQLite database always has exactly one, since each
    /// connection would open a database of its own.
    pub max_connections: Option<u32>,
    /// SQLite: how long a writer waits for the write lock before it fails with
    /// "database is locked". A node's own writers wait as long for their turn to write
    /// (`docs/architecture.md`, write turns). 1 ms to 10 min. Default: 10 s.
    pub sqlite_busy_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            sqlite_busy_timeout: SQLITE_BUSY_TIMEOUT,
        }
    }
}

impl DbOptions {
    /// Checks every option against its range; [`Db::connect_with`] calls it first.
    pub fn validate(&self) -> Result<(), DbError> {
        if let Some(max) = self.max_connections
            && !(1..=MAX_POOL_CONNECTIONS).contains(&max)
        {
            return Err(DbError::InvalidOption(format!(
                "max_connections must be 1 to {MAX_POOL_CONNECTIONS}, not {max}"
            )));
        }
        let busy = self.sqlite_busy_timeout;
        if busy < Duration::from_millis(1) || busy > MAX_SQLITE_BUSY_TIMEOUT {
            return Err(DbError::InvalidOption(format!(
                "sqlite_busy_timeout must be 1ms to {}s, not {busy:?}",
                MAX_SQLITE_BUSY_TIMEOUT.as_secs()
            )));
        }
        Ok(())
    }
}

/// How long a pooled Postgres connection may sit idle before it is pinged on acquire.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

impl Db {
    /// Opens a pool for `url` (`sqlite:path?mode=rwc`, `sqlite::memory:`, `postgres://...`)
    /// with the default [`DbOptions`]. SQLite files are created if missing and run in
    /// WAL mode.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, &DbOptions::default()).await
    }

    /// Like [`Db::connect`], with `options` (checked first).
    pub async fn connect_with(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        options.validate()?;
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(options.sqlite_busy_timeout)
                .foreign_keys(true);
            // An in-memory database exists once per connection: keep exactly one.
            let max = if url.contains(":memory:") || url.contains("mode=memory") {
                1
            } else {
                options.max_connections.unwrap_or(SQLITE_FILE_CONNECTIONS)
            };
            // No ping before each acquire: an embedded database has no other end that
            // could have hung up, and the ping is a round trip to the connection's
            // thread on every use of the pool (sqlx still pings once on release).
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .test_before_acquire(false)
                .connect_with(connect)
                .await?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // A ping before each acquire is a round trip on every store transaction and
            // relay batch; a connection that was in use a moment ago is as good as its
            // last statement, so only one idle long enough to have been cut off (a
            // server restart, a dropped link) is pinged first, as sqlx's docs suggest.
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.unwrap_or(POSTGRES_CONNECTIONS))
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

/// How long `pool`'s connections wait for SQLite's write lock: its busy timeout, set
/// by [`DbOptions`] or by the app that built the pool.
pub(crate) async fn sqlite_busy_timeout(pool: &SqlitePool) -> sqlx::Result<Duration> {
    let millis: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await?;
    Ok(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
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
