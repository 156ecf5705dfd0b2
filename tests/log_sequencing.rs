//! The event log: only committed writes become events; the relay numbers them in the
//! order they became visible, without gaps, even when Postgres transactions commit out
//! of id order; rows committed while no relay ran are delivered later.

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use common::{
    backend_tests,
    db::{Backend, fresh_database_url, sqlite_pool},
    server::{Ended, Extras, TestServer, seq_of},
};
use futures::{StreamExt, stream::BoxStream};
use serde_json::json;
use tidings::{
    __private::{BrokerMessage, insert_event_row_sqlite, read_log_range},
    Broadcast, Db, LogEntry, MutationId, Target,
    broker::{Broker, MemoryBroker},
    demo::Todo,
};

fn todo(id: &str, title: &str) -> Todo {
    Todo {
        id: id.into(),
        title: title.into(),
        done: false,
        owner_id: "bob".into(),
        created_at: "2026-11-24T00:00:00.000Z".into(),
    }
}

backend_tests!(
    async fn rolled_back_transactions_emit_nothing(backend: Backend) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        ann.subscribe("s", "todos:*").await;
        let store = server.realtime.store();

        let mut tx = store.begin().await.unwrap();
        tx.insert(&todo("rolled-back", "never")).await.unwrap();
        let broadcast = LogEntry::broadcast("todos", None, "never", json!(null));
        tx.record(&broadcast).await.unwrap();
        tx.rollback().await.unwrap();

        let mut dropped = store.begin().await.unwrap();
        dropped.insert(&todo("dropped", "never")).await.unwrap();
        drop(dropped);

        let mut tx = store.begin().await.unwrap();
        tx.insert(&todo("committed", "yes")).await.unwrap();
        tx.commit().await.unwrap();

        let event = ann.recv_event().await;
        assert_eq!(
            event["key"], "committed",
            "only the committed write arrives: {event}"
        );
        assert!(store.get::<Todo>("rolled-back").await.unwrap().is_none());
        // And its seq directly follows the subscription's start: no hole was left.
        server.broadcast_to("todos", "marker", json!(1)).await;
        let marker = ann.recv_event().await;
        assert_eq!(seq_of(&marker), seq_of(&event) + 1);
    }
);

#[tokio::test]
async fn postgres_commits_out_of_id_order_get_gapless_visible_order_seqs() {
    let server = TestServer::start(Backend::Postgres, |_| {}).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "todos:*").await;
    let store = server.realtime.store();

    // A takes the smaller outbox id but commits last.
    let mut a = store.begin().await.unwrap();
    a.insert(&todo("a", "first insert, last commit"))
        .await
        .unwrap();
    let mut b = store.begin().await.unwrap();
    b.insert(&todo("b", "second insert, first commit"))
        .await
        .unwrap();
    b.commit().await.unwrap();
    let first = ann.recv_event().await;
    assert_eq!(
        first["key"], "b",
        "B is visible first, so it is sequenced first"
    );
    a.commit().await.unwrap();
    let second = ann.recv_event().await;
    assert_eq!(second["key"], "a");
    assert_eq!(seq_of(&second), seq_of(&first) + 1);
}

backend_tests!(
    async fn concurrent_writers_yield_every_committed_event_exactly_once_in_seq_order(
        backend: Backend,
    ) {
        let server = TestServer::start(backend, |_| {}).await;
        let mut ann = server.connect("ann").await;
        let start = ann.subscribe("s", "todos:*").await;
        let base: u64 = seq_of(&start);
        let writers = 8;
        let per_writer = 25;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = server.realtime.store();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    let mut tx = store.begin().await.unwrap();
                    tx.insert(&todo(&format!("w{w}-{i}"), "x")).await.unwrap();
                    // Every third transaction rolls back: it must leave no trace.
                    if i % 3 == 2 {
                        tx.rollback().await.unwrap();
                    } else {
                        tokio::task::yield_now().await;
                        tx.commit().await.unwrap();
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let committed: HashSet<String> = (0..writers)
            .flat_map(|w| {
                (0..per_writer)
                    .filter(|i| i % 3 != 2)
                    .map(move |i| format!("w{w}-{i}"))
            })
            .collect();
        let mut seen = HashSet::new();
        for n in 1..=committed.len() as u64 {
            let event = ann.recv_event().await;
            assert_eq!(seq_of(&event), base + n, "gapless and in order");
            let key = event["key"].as_str().unwrap().to_owned();
            assert!(committed.contains(&key), "{key} was rolled back");
            assert!(seen.insert(key), "delivered twice");
        }
        assert_eq!(seen, committed);
    }
);

backend_tests!(
    async fn rows_committed_while_no_relay_ran_are_delivered_after_restart(backend: Backend) {
        let url = fresh_database_url(backend).await;
        let first = TestServer::start_on(&url, |_| {}).await;
        let mut ann = first.connect("ann").await;
        let since = ann.subscribe("s", "todos:*").await["cursor"]
            .as_str()
            .unwrap()
            .to_owned();
        drop(ann);
        drop(first);
        // The process "died" after its commit and before relaying: write with a store
        // whose relay does not run (no Realtime at all).
        let db = tidings::Db::connect(&url).await.unwrap();
        let store = tidings::model::Store::new(db, tidings::__private::RelaySignal::default());
        let mut tx = store.begin().await.unwrap();
        tx.insert(&todo("orphan", "committed, never relayed"))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let second = TestServer::start_on(&url, |_| {}).await;
        let mut again = second.connect("ann").await;
        again
            .send(json!({"type": "subscribe", "id": "s", "pattern": "todos:*", "since": since}))
            .await;
        let subscribed = again.recv().await;
        // Depending on timing the relay has sequenced the orphan before or after the
        // subscription; either way it arrives exactly once.
        assert_eq!(subscribed["recovered"], true, "{subscribed}");
        let event = again.recv_event().await;
        assert_eq!(event["key"], "orphan");
    }
);

/// Postgres: the relay lingers after a batch with rows (`log.relay_linger`), so commits
/// that follow closely share one sequencing transaction. (SQLite's never lingers.)
#[tokio::test]
async fn postgres_commits_that_follow_closely_share_one_relay_batch() {
    let (server, mut messages) = start_watching_broker(Backend::Postgres, |config| {
        // The longest linger accepted, so the five commits below surely fall in it.
        config.log.relay_linger = Duration::from_secs(1);
    })
    .await;
    let store = server.realtime.store();
    let write = |id: String| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            tx.insert(&todo(&id, "x")).await.unwrap();
            tx.commit().await.unwrap();
        }
    };

    // After a quiet spell a commit is relayed on its own, at once.
    write("alone".into()).await;
    assert_eq!(next_batch_keys(&mut messages).await, ["alone"]);
    // Five commits right after it wait out the linger together.
    let keys: Vec<String> = (0..5).map(|n| format!("close-{n}")).collect();
    for key in &keys {
        write(key.clone()).await;
    }
    assert_eq!(next_batch_keys(&mut messages).await, keys);
}

/// Postgres: what the relay publishes for the rows it numbered, through the broker's
/// encoding, is what a read of the log (a resume, a gap fill) returns for them:
/// timestamps, floats, text, changes, previous values and mutation ids alike, every
/// seq once and in order.
#[tokio::test]
async fn postgres_relay_publishes_events_as_the_log_holds_them() {
    let (server, mut messages) = start_watching_broker(Backend::Postgres, |_| {}).await;
    let realtime = &server.realtime;
    let store = realtime.store();

    let mut tx = store.begin().await.unwrap();
    tx.set_mutation(MutationId::new("m-1").unwrap());
    tx.insert(&todo("t1", "caf\u{e9} \u{2615} \"quoted\""))
        .await
        .unwrap();
    tx.record(&LogEntry::broadcast(
        "todos",
        Some("t1".into()),
        "measured",
        json!({
            "pi": std::f64::consts::PI,
            "sum": 0.1_f64 + 0.2,
            "third": 1.0_f64 / 3.0,
            "big": u64::MAX,
            "nested": {"list": [1, "two", null, true]},
        }),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.update(&Todo {
        done: true,
        ..todo("t1", "renamed")
    })
    .await
    .unwrap();
    tx.delete::<Todo>("t1").await.unwrap();
    tx.commit().await.unwrap();

    let published = next_events(&mut messages, 4).await;
    let seqs: Vec<u64> = published.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let logged = read_log_range(realtime.db(), 0, 4, 100)
        .await
        .expect("read the log");
    assert_eq!(published, logged);
    let update = &logged[2].1;
    assert!(
        update.previous.is_some() && update.changes.is_some(),
        "the update carries what it changed: {update:?}"
    );
}

/// SQLite: the store and broadcasts hand their committed events to the relay, which
/// publishes them as they are, without reading them back, and exactly as the log holds
/// them (a resume reads them from there). A row its writer did not hand off (a capture
/// trigger's) makes the relay read the log, so every event still goes out once, in
/// seq order.
#[tokio::test]
async fn sqlite_relay_publishes_what_writers_hand_it_as_the_log_holds_it() {
    let (server, mut messages) = start_watching_broker(Backend::Sqlite, |_| {}).await;
    let realtime = &server.realtime;
    let store = realtime.store();
    store.install_capture::<Todo>().await.expect("capture");
    let read_back = || realtime.metrics().events_read_back.load(Ordering::Relaxed);
    // The relay's first read, at start, finds nothing.
    let before = read_back();

    // A model write with a mutation id, a recorded event whose floats and text must
    // survive the trip exactly, and a broadcast.
    let mut tx = store.begin().await.unwrap();
    tx.set_mutation(MutationId::new("m-1").unwrap());
    tx.insert(&todo("t1", "caf\u{e9} \u{2615}")).await.unwrap();
    let data = json!({
        "pi": std::f64::consts::PI,
        "tiny": 5e-324_f64,
        "sum": 0.1_f64 + 0.2,
        "third": 1.0_f64 / 3.0,
        "big": u64::MAX,
    });
    tx.record(&LogEntry::broadcast(
        "todos",
        Some("t1".into()),
        "measured",
        data,
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    realtime
        .broadcast(Broadcast::new(
            Target::Collection("todos".into()),
            "ping",
            json!({"b": 1, "a": [0.1, 0.2]}),
        ))
        .await
        .unwrap();
    let mut published = next_events(&mut messages, 3).await;
    assert_eq!(read_back(), before, "handed off, not read back");

    // A plain SQL write, captured by a trigger, is not handed off: the next store
    // write's event does not follow on from the last published, so the relay reads.
    sqlx::query(
        "INSERT INTO todos (id, title, done, owner_id, created_at) \
         VALUES ('t2', 'sql', 0, 'bob', '2026-11-24T00:00:00.000Z')",
    )
    .execute(sqlite_pool(realtime.db()))
    .await
    .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert(&todo("t3", "after")).await.unwrap();
    tx.commit().await.unwrap();
    published.extend(next_events(&mut messages, 2).await);
    assert_eq!(read_back(), before + 2, "both read from the log");

    let seqs: Vec<u64> = published.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let logged = read_log_range(realtime.db(), 0, 5, 100)
        .await
        .expect("read the log");
    assert_eq!(published, logged);
    let keys: Vec<_> = logged.iter().map(|(_, e)| e.key.as_deref()).collect();
    assert_eq!(keys, [Some("t1"), Some("t1"), None, Some("t2"), Some("t3")]);
}

/// SQLite: a transaction with more events than the relay takes in one batch
/// (`log.relay_batch`) hands none off but has the relay read them all from the log, in
/// full batches one after the other, without waiting for a poll.
#[tokio::test]
async fn sqlite_a_transaction_larger_than_a_relay_batch_is_read_from_the_log() {
    let (server, mut messages) = start_watching_broker(Backend::Sqlite, |config| {
        config.log.relay_batch = 3;
    })
    .await;
    let store = server.realtime.store();
    let mut tx = store.begin().await.unwrap();
    for n in 0..7 {
        tx.insert(&todo(&format!("big-{n}"), "x")).await.unwrap();
    }
    tx.commit().await.unwrap();
    let published = next_events(&mut messages, 7).await;
    let seqs: Vec<u64> = published.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
    let read_back = &server.realtime.metrics().events_read_back;
    assert_eq!(read_back.load(Ordering::Relaxed), 7);
}

/// SQLite: a log reset under a running node (its rows gone and its position lowered,
/// as when an older file is restored in place, with a new epoch) closes every
/// connection with 4010, so clients resume, and later events reach new subscribers
/// under the new epoch, though their seqs are ones the node delivered before (from
/// the node's poll of the log while the relay still holds the old position).
#[tokio::test]
async fn sqlite_a_log_reset_under_a_running_node_closes_4010_and_events_go_on() {
    let server = TestServer::start(Backend::Sqlite, |config| {
        config.log.poll_interval = Duration::from_millis(50);
    })
    .await;
    let store = server.realtime.store();
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "todos:*").await;
    for n in 0..3 {
        let mut tx = store.begin().await.unwrap();
        tx.insert(&todo(&format!("before-{n}"), "x")).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(seq_of(&ann.recv_event().await), n + 1);
    }

    // The floor trigger raises `last_seq` as rows are deleted: lower it afterwards.
    sqlx::raw_sql(
        "DELETE FROM realtime_outbox; \
         UPDATE realtime_meta SET epoch = 'restored', last_seq = 0 WHERE id = 1;",
    )
    .execute(sqlite_pool(server.realtime.db()))
    .await
    .unwrap();
    assert!(
        matches!(ann.ended().await, Ended::Code(4010)),
        "the reset closes with continuity lost"
    );

    let mut bob = server.connect("bob").await;
    bob.subscribe("s", "todos:*").await;
    let mut tx = store.begin().await.unwrap();
    tx.insert(&todo("after", "x")).await.unwrap();
    tx.commit().await.unwrap();
    let event = bob.recv_event().await;
    assert_eq!(event["key"], "after", "{event}");
    let cursor = event["cursor"].as_str().expect("a cursor");
    assert!(cursor.starts_with("restored:"), "the new epoch: {cursor}");
}

/// A server whose node broker this test also subscribes to, to see what the relay
/// publishes and in which messages. No poll falls within the test's bounds, so only
/// commits wake the relay.
async fn start_watching_broker(
    backend: Backend,
    configure: impl FnOnce(&mut tidings::Config),
) -> (TestServer, BoxStream<'static, Bytes>) {
    let broker = Arc::new(MemoryBroker::new(1024));
    let messages = broker.subscribe().await.expect("subscribe");
    let node_broker: Arc<dyn Broker> = broker;
    let extras = Extras {
        builder: Some(Box::new(move |builder| builder.broker(node_broker))),
        ..Extras::default()
    };
    let server = TestServer::start_with(
        backend,
        |config| {
            config.log.poll_interval = Duration::from_secs(600);
            configure(config);
        },
        extras,
    )
    .await;
    (server, messages)
}

/// The events the next broker message carrying any holds, with their seqs (skipping
/// heartbeats and the like); within 10 s, however many other messages come first.
async fn next_relay_message(messages: &mut BoxStream<'static, Bytes>) -> Vec<(u64, LogEntry)> {
    let next = async {
        loop {
            let bytes = messages.next().await.expect("the broker stream stays open");
            match BrokerMessage::decode(&bytes) {
                Some(BrokerMessage::Logged { seq, event, .. }) => return vec![(seq, event)],
                Some(BrokerMessage::Batch { events, .. }) => return events,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("a relay message on the broker within 10 s")
}

/// The next `count` events on the broker, with their seqs, across messages.
async fn next_events(
    messages: &mut BoxStream<'static, Bytes>,
    count: usize,
) -> Vec<(u64, LogEntry)> {
    let mut events = Vec::new();
    while events.len() < count {
        events.extend(next_relay_message(messages).await);
    }
    events
}

/// The record keys of the next relay message on the broker, in seq order.
async fn next_batch_keys(messages: &mut BoxStream<'static, Bytes>) -> Vec<String> {
    let events = next_relay_message(messages).await;
    events
        .into_iter()
        .filter_map(|(_, event)| event.key)
        .collect()
}

/// SQLite numbers each outbox row in the statement that inserts it, so the relay never
/// writes: the row has its seq inside the writing transaction, a rollback takes the
/// number back (no gap), and rows an older version left for its relay to number get
/// their seqs, in id order, when the database is migrated. The seq is the row id since
/// a later migration, which keeps the rows and the capture triggers written before it.
#[tokio::test]
async fn sqlite_numbers_rows_as_they_are_inserted_and_migrates_unnumbered_ones() {
    let url = fresh_database_url(Backend::Sqlite).await;
    let Db::Sqlite(pool) = Db::connect(&url).await.expect("connect") else {
        unreachable!("a sqlite: URL opens SQLite")
    };
    let migrator = sqlx::migrate!("./migrations/sqlite");
    // The schema as the version before numbering at insert left it, with a capture-style
    // trigger that names the outbox table in its body.
    migrator
        .run_to(20_261_130_000_010, &pool)
        .await
        .expect("older migrations");
    let insert = "INSERT INTO realtime_outbox (seq, collection, action, payload, created_at) \
                  VALUES (?, 'todos', 'create', '{}', '2026-11-30T00:00:00Z')";
    for seq in [Some(1), Some(2), None, None, None] {
        sqlx::query(insert).bind(seq).execute(&pool).await.unwrap();
    }
    sqlx::raw_sql(
        "UPDATE realtime_meta SET last_seq = 2; \
         CREATE TABLE notes (id TEXT PRIMARY KEY); \
         CREATE TRIGGER notes_capture AFTER INSERT ON notes BEGIN \
           INSERT INTO realtime_outbox (collection, record_key, action, payload, created_at) \
           VALUES ('notes', NEW.id, 'create', '{}', '2026-11-30T00:00:00Z'); \
         END;",
    )
    .execute(&pool)
    .await
    .unwrap();

    migrator.run(&pool).await.expect("migrate");
    let seqs = |pool: &sqlx::SqlitePool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM realtime_outbox ORDER BY seq")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(seqs(&pool).await, [1, 2, 3, 4, 5]);
    // The log's position as the node reads it: the newest seq, or the floor that
    // deletions leave in `last_seq` when higher.
    let position = |pool: &sqlx::SqlitePool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT max(last_seq, coalesce((SELECT max(seq) FROM realtime_outbox), 0)) \
                 FROM realtime_meta WHERE id = 1",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(position(&pool).await, 5);

    // Numbered inside the transaction, before any commit or relay.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind(None::<i64>)
        .execute(&mut *tx)
        .await
        .unwrap();
    let seq: i64 = sqlx::query_scalar("SELECT max(seq) FROM realtime_outbox")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seq, 6);
    tx.rollback().await.unwrap();
    assert_eq!(position(&pool).await, 5, "a rollback takes its number back");

    // The trigger written before the rebuild writes into the new table, next in line.
    sqlx::query("INSERT INTO notes (id) VALUES ('n1')")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(seqs(&pool).await, [1, 2, 3, 4, 5, 6], "no gap");

    // Deleting the newest rows, or all of them, never hands their seqs out again.
    sqlx::query("DELETE FROM realtime_outbox WHERE seq >= 5")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(position(&pool).await, 6);
    sqlx::query("INSERT INTO notes (id) VALUES ('n2')")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(seqs(&pool).await, [1, 2, 3, 4, 7]);
    sqlx::query("DELETE FROM realtime_outbox")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO notes (id) VALUES ('n3')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(insert)
        .bind(None::<i64>)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(seqs(&pool).await, [8, 9]);
    // The store's own insert names its seq above both, and says which it took.
    sqlx::query("DELETE FROM realtime_outbox")
        .execute(&pool)
        .await
        .unwrap();
    let event = LogEntry::broadcast("todos", None, "ping", json!({}));
    let mut conn = pool.acquire().await.unwrap();
    let seq = insert_event_row_sqlite(&mut conn, &event).await.unwrap();
    assert_eq!((seq, seqs(&pool).await), (10, vec![10]));
    assert_eq!(position(&pool).await, 10);
}
