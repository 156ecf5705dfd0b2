//! The opening shared by the tests of a SQLite node's writers (`sqlite_write_turns`,
//! `sqlite_broadcast_batches`): a server, a subscriber of `todos:*`, and custom
//! events to `todos`.

use serde_json::json;
use tidings::{Broadcast, Target};

use super::{
    db::Backend,
    server::{Client, TestServer},
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
