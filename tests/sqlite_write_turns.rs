//! A node's SQLite writers take turns in order (`src/write_turns.rs`): broadcasts,
//! store transactions and recorded events written at once all commit, each event
//! once and without a gap in the seqs; a write begun while a transaction is open
//! follows its commit; one kept waiting as long as the pool's busy timeout (set with
//! `DbOptions`, or by the app's own pool) fails with a clear error.

mod common;

use std::{str::FromStr, time::Duration};

use common::{
    db::{Backend, fresh_database_url},
    server::seq_of,
    sqlite_writes::{node_on, node_with, sqlite_server_watching_todos, todos_event},
    tasks::join_all_within,
};
use serde_json::json;
use sqlx::{SqlitePool, sqlite::SqliteConnectOptions};
use tidings::{Db, DbError, DbOptions, LogEntry, Realtime, demo::Todo};

/// Bounds each wait below the 10 s a writer waits for its turn by default, so a turn
/// that is never given back fails the test rather than only slowing it.
const BOUND: Duration = Duration::from_secs(5);

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
    let (server, mut ann) = sqlite_server_watching_todos().await;

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
    join_all_within(writers, BOUND * 4).await;

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
    let (server, mut ann) = sqlite_server_watching_todos().await;
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

/// A broadcast made while the same task holds a transaction of `realtime`'s store: it
/// can only wait for the turn that transaction holds until it gives up, and must say
/// it had no turn `within` that long. The turn is free again once the transaction ends.
async fn assert_no_turn_within(realtime: &Realtime, within: &str) {
    let tx = realtime.store().begin().await.expect("begin");
    let error = tokio::time::timeout(BOUND, realtime.broadcast(todos_event("never")))
        .await
        .expect("the wait for a turn is bounded")
        .expect_err("the turn never came");
    // The transaction still works, and the turn is free once it ends.
    tx.rollback().await.expect("rollback");
    tokio::time::timeout(BOUND, realtime.broadcast(todos_event("after")))
        .await
        .expect("the turn is free again")
        .expect("the broadcast is written");
    let message = error.to_string();
    assert!(
        message.contains(&format!("no turn to write to SQLite within {within}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_write_whose_turn_never_comes_fails_after_the_busy_timeout_with_a_clear_error() {
    let mut options = DbOptions::default();
    options.sqlite_busy_timeout = Duration::from_millis(300);
    let (realtime, pool) = node_with(&options).await;
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&pool)
        .await
        .expect("busy timeout");
    assert_eq!(
        busy, 300,
        "the pool's connections have the configured timeout"
    );
    assert_no_turn_within(&realtime, "300ms").await;
}

#[tokio::test]
async fn a_writer_waits_for_its_turn_as_long_as_the_apps_own_pool_waits_for_the_lock() {
    // An app that builds its own pool, with its own busy timeout, and hands it over.
    let url = fresh_database_url(Backend::Sqlite).await;
    let options = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .busy_timeout(Duration::from_millis(250));
    let pool = SqlitePool::connect_with(options).await.expect("connect");
    let realtime = node_on(Db::Sqlite(pool)).await;
    assert_no_turn_within(&realtime, "250ms").await;
}

#[tokio::test]
async fn database_options_out_of_range_are_refused_before_connecting() {
    let url = fresh_database_url(Backend::Sqlite).await;
    let path = url.trim_start_matches("sqlite:").to_owned();
    let mut zero_pool = DbOptions::default();
    zero_pool.max_connections = Some(0);
    let mut no_wait = DbOptions::default();
    no_wait.sqlite_busy_timeout = Duration::ZERO;
    let mut forever = DbOptions::default();
    forever.sqlite_busy_timeout = Duration::from_secs(3_600);
    for (options, says) in [
        (zero_pool, "max_connections must be 1 to 1024, not 0"),
        (no_wait, "sqlite_busy_timeout must be 1ms to 600s, not 0ns"),
        (
            forever,
            "sqlite_busy_timeout must be 1ms to 600s, not 3600s",
        ),
    ] {
        let error = Db::connect_with(&url, &options).await.expect_err("refused");
        assert!(matches!(error, DbError::InvalidOption(_)), "{error:?}");
        assert_eq!(error.to_string(), says);
    }
    assert!(
        !std::path::Path::new(&path).exists(),
        "no database file was created"
    );
}
