//! The opening shared by the tests of a SQLite node's writers (`sqlite_write_turns`,
//! `sqlite_broadcast_batches`): a server and a subscriber of `todos:*`, or a node on
//! a pool the test can watch, and custom events to `todos`.

use serde_json::json;
use sqlx::SqlitePool;
use tidings::{Broadcast, Db, DbOptions, Realtime, Target, demo};

use super::{
    db::{Backend, fresh_database_url, sqlite_pool},
    server::{Client, TestServer, test_config},
};

/// A server on a fresh SQLite file, and `ann` subscribed (id `s`) to `todos:*`.
pub async fn sqlite_server_watching_todos() -> (TestServer, Client) {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "todos:*").await;
    (server, ann)
}

/// A custom event to every subscriber of `todos`, written to the log.
pub fn todos_event(name: impl Into<String>) -> Broadcast {
    Broadcast::new(Target::Collection("todos".into()), name, json!(null))
}

/// A node with the demo app on `db`.
pub async fn node_on(db: Db) -> Realtime {
    demo::migrate(&db).await.expect("demo migrations");
    demo::configure(Realtime::builder(test_config(), db))
        .build()
        .await
        .expect("build")
}

/// A node on a fresh SQLite file opened with `options`, and its pool.
pub async fn node_with(options: &DbOptions) -> (Realtime, SqlitePool) {
    let url = fresh_database_url(Backend::Sqlite).await;
    let db = Db::connect_with(&url, options).await.expect("connect");
    let pool = sqlite_pool(&db).clone();
    (node_on(db).await, pool)
}
