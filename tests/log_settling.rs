//! Postgres: the relay numbers a row without a flush to disk of its own only once the
//! row is settled (no transaction that started writing before the row's writer did is
//! still running), in (xid, id) order, which no later commit can change; rows that do
//! not settle within `log.relay_settle` are numbered with a flush, as before. A
//! transaction that writes events never commits with `synchronous_commit` off.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{
    db::{Backend, fresh_database_url, named_postgres_url},
    server::{Client, TestServer, seq_of},
};
use sqlx::PgPool;
use tidings::{Db, demo::Todo};

fn todo(id: &str) -> Todo {
    Todo {
        id: id.into(),
        title: "x".into(),
        done: false,
        owner_id: "bob".into(),
        created_at: "2026-12-01T00:00:00.000Z".into(),
    }
}

/// A server on the Postgres database at `url` with `relay_settle`, a client
/// subscribed to `todos:*`, and the server's pool.
async fn subscribed(url: &str, relay_settle: Duration) -> (TestServer, Client, PgPool) {
    let server = TestServer::start_on(url, |config| config.log.relay_settle = relay_settle).await;
    let mut ann = server.connect("ann").await;
    ann.subscribe("s", "todos:*").await;
    let Db::Postgres(pool) = server.realtime.db() else {
        unreachable!("a Postgres test")
    };
    let pool = pool.clone();
    (server, ann, pool)
}

/// A writer that began first and commits last still gets the smaller seq when it
/// commits before `log.relay_settle` is up: the relay does not number the later
/// writer's row while the earlier one runs. The test waits until the relay has run a
/// sequencing transaction after the later commit, so the earlier writer is surely
/// still open when it does.
#[tokio::test]
async fn postgres_a_row_waits_for_an_older_writer_and_then_follows_it() {
    // The relay's sessions carry a name of their own, so the test can tell when this
    // server's relay has run (the shared database holds other tests' relays too).
    let (name, url) = named_postgres_url("tidings_settle").await;
    let (server, mut ann, pool) = subscribed(&url, Duration::from_secs(1)).await;
    let store = server.realtime.store();

    let mut older = store.begin().await.unwrap();
    older.insert(&todo("older")).await.unwrap();
    let mut newer = store.begin().await.unwrap();
    newer.insert(&todo("newer")).await.unwrap();
    let before_commit: String = sqlx::query_scalar("SELECT clock_timestamp()::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    newer.commit().await.unwrap();
    // The commit wakes the relay, whose settled numbering must pass over the row.
    let relay_ran = async {
        loop {
            let ran: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid() \
                   AND state = 'idle' AND query LIKE $2 \
                   AND query_start >= $3::timestamptz)",
            )
            .bind(&name)
            // A parameter, so this probe's own text, which the server's other pooled
            // sessions show once they ran it, never matches.
            // The settled numbering (`settled_only` true).
            .bind("%realtime_number_batch(%, true)%")
            .bind(&before_commit)
            .fetch_one(&pool)
            .await
            .unwrap();
            if ran {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), relay_ran)
        .await
        .expect("the relay runs a sequencing transaction after the commit within 10 s");
    older.commit().await.unwrap();

    let first = ann.recv_event().await;
    let second = ann.recv_event().await;
    assert_eq!(
        (first["key"].as_str(), second["key"].as_str()),
        (Some("older"), Some("newer")),
        "the older writer's row sorts first once both settled"
    );
    assert_eq!(seq_of(&second), seq_of(&first) + 1);
    let flushed = &server.realtime.metrics().events_numbered_unsettled;
    assert_eq!(flushed.load(Ordering::Relaxed), 0, "both settled in time");
}

/// A long transaction elsewhere on the server (here one that holds an xid and never
/// commits) keeps every later row from settling; after `log.relay_settle` the relay
/// numbers them anyway, with a flush of its own. Rows written before the xid column
/// existed (no xid) never settle, and are numbered the same way (the second write
/// below comes after the long transaction ended, so only its missing xid holds it).
#[tokio::test]
async fn postgres_rows_a_long_transaction_holds_back_are_numbered_after_relay_settle() {
    let url = fresh_database_url(Backend::Postgres).await;
    let (server, mut ann, pool) = subscribed(&url, Duration::from_millis(50)).await;
    let store = server.realtime.store();

    let mut long = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *long)
        .await
        .unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.insert(&todo("held-back")).await.unwrap();
    tx.commit().await.unwrap();
    let event = ann.recv_event().await;
    assert_eq!(event["key"], "held-back");

    long.rollback().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.insert(&todo("no-xid")).await.unwrap();
    sqlx::query("UPDATE realtime_outbox SET xid = NULL WHERE seq IS NULL")
        .execute(tx.postgres().unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let next = ann.recv_event().await;
    assert_eq!(next["key"], "no-xid");
    assert_eq!(seq_of(&next), seq_of(&event) + 1);

    let flushed = &server.realtime.metrics().events_numbered_unsettled;
    assert_eq!(flushed.load(Ordering::Relaxed), 2);
}

/// The relay may number a settled row without a flush only because the row's own
/// commit was flushed: inserting an event raises `synchronous_commit` from off to
/// local for that transaction, and leaves any other setting alone.
#[tokio::test]
async fn postgres_a_transaction_that_writes_events_commits_with_a_flush() {
    let server = TestServer::start(Backend::Postgres, |_| {}).await;
    let store = server.realtime.store();
    let setting = "SELECT current_setting('synchronous_commit')";
    for (set, after) in [("off", "local"), ("remote_apply", "remote_apply")] {
        let mut tx = store.begin().await.unwrap();
        let conn = tx.postgres().unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL synchronous_commit = {set}"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        tx.insert(&todo(&format!("under-{set}"))).await.unwrap();
        let now: String = sqlx::query_scalar(setting)
            .fetch_one(tx.postgres().unwrap())
            .await
            .unwrap();
        assert_eq!(now, after, "SET LOCAL synchronous_commit = {set}");
        tx.rollback().await.unwrap();
    }
}
