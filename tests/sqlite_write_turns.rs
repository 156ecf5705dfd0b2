//! A node's SQLite writers take turns in order (`src/write_turns.rs`): broadcasts,
//! store transactions and recorded events written at once all commit, each event
//! once and without a gap in the seqs; a write begun while a transaction is open
//! follows its commit; one kept waiting too long fails with a clear error.

mod common;

use std::time::Duration;

use common::{
    db::Backend,
    server::{TestServer, seq_of},
};
use serde_json::json;
use tidings::{Broadcast, LogEntry, Target, demo::Todo};

/// Bounds each wait below the 10 s a writer waits for its turn, so a turn that is
/// never given back fails the test rather than only slowing it.
const BOUND: Duration = Duration::from_secs(5);

/// A custom event to every subscriber of `todos`, written to the log.
fn todos_event(name: impl Into<String>) -> Broadcast {
    Broadcast::new(Target::Collection("todos".into()), name, json!(null))
}

fn todo(id: &str) -> Todo {
    Todo {
        id: id.into(),
        title: "turns".into(),
        done: false,
        owner_id: "bob".into(),
        created_at: "2026-12-02T00:00:00.000Z".into(),
    }
}

#[tokio::test]
async fn writers_of_one_node_at_once_commit_every_event_once_without_gaps() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 10;
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "todos:*").await;

    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let realtime = server.realtime.clone();
        writers.spawn(async move {
            let store = realtime.store();
            for round in 0..ROUNDS {
                let mut tx = store.begin().await.expect("begin");
                tx.insert(&todo(&format!("w{writer}-r{round}")))
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
                realtime
                    .broadcast(todos_event(format!("b-w{writer}-r{round}")))
                    .await
                    .expect("broadcast");
                let recorded = LogEntry::broadcast(
                    "todos",
                    None,
                    format!("r-w{writer}-r{round}"),
                    json!(null),
                );
                store.record(&recorded).await.expect("record");
            }
        });
    }
    while let Some(done) = tokio::time::timeout(BOUND * 4, writers.join_next())
        .await
        .expect("the writers finish")
    {
        done.expect("a writer panicked");
    }

    let mut seen = std::collections::HashSet::new();
    let mut last_seq = None;
    for _ in 0..WRITERS * ROUNDS * 3 {
        let event = ann.recv_event().await;
        let seq = seq_of(&event);
        if let Some(last) = last_seq {
            assert_eq!(
                seq,
                last + 1,
                "seqs follow each other without a gap: {event}"
            );
        }
        last_seq = Some(seq);
        let name = match event["action"].as_str() {
            Some("create") => event["key"].as_str().map(str::to_owned),
            _ => event["event"].as_str().map(str::to_owned),
        }
        .expect("an event names its record or its event");
        assert!(seen.insert(name.clone()), "{name} arrived twice");
    }
    assert_eq!(seen.len(), WRITERS * ROUNDS * 3);
}

#[tokio::test]
async fn a_broadcast_begun_while_a_transaction_is_open_follows_its_commit() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "todos:*").await;
    let store = server.realtime.store();

    let mut tx = store.begin().await.expect("begin");
    tx.insert(&todo("first")).await.expect("insert");
    let realtime = server.realtime.clone();
    let broadcast = tokio::spawn(async move { realtime.broadcast(todos_event("second")).await });
    tx.commit().await.expect("commit");
    tokio::time::timeout(BOUND, broadcast)
        .await
        .expect("the broadcast gets its turn after the commit")
        .expect("the broadcast task")
        .expect("the broadcast is written");

    let first = ann.recv_event().await;
    assert_eq!(first["key"], "first");
    let second = ann.recv_event().await;
    assert_eq!(second["event"], "second");
    assert_eq!(seq_of(&second), seq_of(&first) + 1);
}

#[tokio::test]
async fn a_write_whose_turn_never_comes_fails_with_a_clear_error() {
    let server = TestServer::start(Backend::Sqlite, |_| {}).await;
    let store = server.realtime.store();
    // The same task holds a transaction and then broadcasts outside it: the broadcast
    // can only wait for a turn this transaction holds until it gives up.
    let tx = store.begin().await.expect("begin");
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        server.realtime.broadcast(todos_event("never")),
    )
    .await
    .expect("the wait for a turn is bounded")
    .expect_err("the turn never came");
    let message = error.to_string();
    assert!(
        message.contains("no turn to write to SQLite within 10s"),
        "{message}"
    );
    // The transaction still works, and the turn is free once it ends.
    tx.rollback().await.expect("rollback");
    tokio::time::timeout(BOUND, server.realtime.broadcast(todos_event("after")))
        .await
        .expect("the turn is free again")
        .expect("the broadcast is written");
}
