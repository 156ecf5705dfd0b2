//! One gateway per database: the library (no demo app, so no capture triggers on the
//! table) on a fresh database, serving its own routes on 127.0.0.1:0.

use std::{path::PathBuf, time::Duration};

use tidings::{Db, Realtime, demo};

use super::settings::Database;
use crate::common::{
    db::postgres_url,
    server::{serve_gateway, test_config},
};

/// The demo's `todos` table, created here rather than by `demo::migrate`, which would
/// also install capture triggers: a plain `INSERT` would then write an event row too,
/// and the outbox-cost baseline must not.
const TODOS: &str = "CREATE TABLE todos (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    done BOOLEAN NOT NULL,
    owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL
)";

/// A running gateway and what to clean up after it.
pub struct Node {
    pub realtime: Realtime,
    /// `ws://127.0.0.1:<port>/realtime/subscribe`.
    pub ws_url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    /// The base URL and the schema to drop.
    Schema(String, String),
}

impl Node {
    pub async fn start(database: Database, relay_linger: Option<Duration>) -> Self {
        let unique = format!(
            "tidings_write_path_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let (url, cleanup) = match database {
            Database::Sqlite => {
                let dir = std::env::temp_dir().join("tidings-write-path");
                std::fs::create_dir_all(&dir).expect("temp dir");
                let file = dir.join(format!("{unique}.db"));
                (format!("sqlite:{}", file.display()), Cleanup::File(file))
            }
            Database::Postgres => {
                let base = postgres_url();
                run(&base, &format!("CREATE SCHEMA {unique}")).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{sep}options=-c%20search_path%3D{unique}"),
                    Cleanup::Schema(base, unique),
                )
            }
        };
        let db = Db::connect(&url).await.expect("connect");
        // The demo's read rules: any authenticated user reads `todos`.
        let mut config = test_config();
        if let Some(linger) = relay_linger {
            config.log.relay_linger = linger;
        }
        let realtime = Realtime::builder(config, db)
            .rules(demo::rules())
            .build()
            .await
            .expect("build");
        run_on(realtime.db(), TODOS).await;
        let ws_url = serve_gateway(&realtime).await;
        Self {
            realtime,
            ws_url,
            cleanup,
        }
    }

    /// Waits (at most 10 s) until the relay has numbered and published every committed
    /// event, so one phase's backlog does not cost the next phase CPU.
    pub async fn quiesce(&self) {
        // The database is fresh, so the relay is done once nothing waits to be
        // numbered (Postgres; SQLite numbers at insert) and it has published as many
        // events as the log has numbered (the newest seq: nothing is deleted here).
        const SQL: &str = "SELECT (SELECT coalesce(max(seq), 0) FROM realtime_outbox), \
             (SELECT COUNT(*) FROM realtime_outbox WHERE seq IS NULL)";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let (numbered, unnumbered): (i64, i64) = match self.realtime.db() {
                Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_one(pool).await,
                Db::Postgres(pool) => sqlx::query_as(SQL).fetch_one(pool).await,
            }
            .expect("read the log's state");
            let published = self
                .realtime
                .metrics()
                .events_published
                .load(std::sync::atomic::Ordering::Relaxed);
            if unnumbered == 0 && published >= u64::try_from(numbered).unwrap_or(0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        eprintln!("write_path: the relay still had a backlog after 10 s");
    }

    /// Stops the gateway and removes its database.
    pub async fn stop(self) {
        self.realtime.shutdown().await;
        if let Db::Postgres(pool) = self.realtime.db() {
            pool.close().await;
        }
        match self.cleanup {
            Cleanup::File(file) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
            }
            Cleanup::Schema(base, schema) => {
                run(&base, &format!("DROP SCHEMA {schema} CASCADE")).await;
            }
        }
    }
}

async fn run(url: &str, sql: &str) {
    let db = Db::connect(url).await.expect("connect to Postgres");
    run_on(&db, sql).await;
    if let Db::Postgres(pool) = db {
        pool.close().await;
    }
}

async fn run_on(db: &Db, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db {
        Db::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        Db::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
    }
    .unwrap_or_else(|e| panic!("setup SQL: {e}"));
}
